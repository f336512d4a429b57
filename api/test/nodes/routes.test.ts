import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import Koa from 'koa';
import { afterEach, describe, expect, it } from 'vitest';
import {
  channelAssignmentSchema,
  channelNodeSchema,
  channelSfuStatusSchema,
  errorBodySchema,
  grantSchema,
  nodeListSchema,
} from '@hearth/protocol';
import { AppError } from '@hearth/server-common';
import { clientAddress, trustedProxies } from '../../src/client-address';
import { InMemoryClusterBus } from '../../src/cluster/bus';
import { errorHandler, requestContext } from '../../src/middleware';
import { PlacementService } from '../../src/nodes/placement-service';
import { InMemoryNodeRegistry } from '../../src/nodes/registry';
import {
  createPrincipal,
  type Authenticator,
  type Credentials,
  type Principal,
} from '../../src/auth';
import { apiConfig } from '../../src/config';
import { mountRoutes } from '../../src/routes/mount';
import { nodeRoutes } from '../../src/routes/nodes';
import type { RouteDeps } from '../../src/routes/route';
import { capturingLogger } from './helpers';

const { logger } = capturingLogger();

// Stub authentication: `Authorization: Test <grant,grant>` signs in as a member holding those
// grants server-wide.
const authenticator = {
  async authenticate(credentials: Credentials): Promise<Principal> {
    const match = credentials.authorization?.match(/^Test (.*)$/);
    if (!match) throw new AppError('unauthorized', 'credentials required');
    const grants = match[1]!
      .split(',')
      .filter(Boolean)
      .map((grant) => grantSchema.parse(grant));
    return createPrincipal({
      userId: 'tester',
      displayName: 'Tester',
      baseRole: 'member',
      serverGrants: grants,
    });
  },
} as Authenticator;

const moderator = { authorization: 'Test moderate' };

interface Running {
  baseUrl: string;
  placement: PlacementService;
  close(): Promise<void>;
}

let running: Running | undefined;

afterEach(async () => {
  await running?.close();
  running = undefined;
});

async function start(): Promise<Running> {
  const placement = new PlacementService({
    registry: new InMemoryNodeRegistry(),
    bus: new InMemoryClusterBus(logger),
    logger,
    ownsStores: true,
  });
  await placement.start();
  const router = mountRoutes(nodeRoutes, {
    config: apiConfig({ restRatePerSecond: '1000' }),
    placement,
    authenticator,
  } as unknown as RouteDeps);
  const app = new Koa();
  // As in the app: rate limits key on the client address this resolves.
  app.use(clientAddress(trustedProxies([])));
  app.use(requestContext(logger));
  app.use(errorHandler());
  app.use(router.routes() as Koa.Middleware);
  const server: Server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', resolve));
  const { port } = server.address() as AddressInfo;
  running = {
    baseUrl: `http://127.0.0.1:${port}`,
    placement,
    async close() {
      await placement.stop();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return running;
}

async function call(
  method: string,
  path: string,
  headers: Record<string, string> = moderator,
): Promise<Response> {
  return fetch(`${running!.baseUrl}${path}`, { method, headers });
}

async function expectError(response: Response, status: number, code: string): Promise<string> {
  expect(response.status).toBe(status);
  const body = errorBodySchema.parse(await response.json());
  expect(body.error.code).toBe(code);
  return body.error.message;
}

describe('node routes', () => {
  it.each(nodeRoutes.map((route) => [route.method, route.path] as const))(
    '%s %s answers 401 without credentials and 403 without the moderate grant',
    async (method, path) => {
      await start();
      const concrete = path.replace(':name', 'room');
      await expectError(await call(method, concrete, {}), 401, 'unauthorized');
      const message = await expectError(
        await call(method, concrete, { authorization: 'Test join,speak' }),
        403,
        'forbidden',
      );
      expect(message).toBe('missing the "moderate" grant server-wide');
    },
  );

  it('GET /api/nodes lists nodes with load and status', async () => {
    const { placement } = await start();
    await placement.register({ id: 'v1', kind: 'voice', signalingUrl: 'wss://v1.example/ws' });
    await placement.register({ id: 'i1', kind: 'ingest', rtmpUrl: 'rtmp://i1.example/live' });
    await placement.heartbeat('v1', { cpu: 0.3, participants: 4 });
    const response = await call('GET', '/api/nodes');
    expect(response.status).toBe(200);
    const body = nodeListSchema.parse(await response.json());
    expect(body.nodes.map((node) => [node.id, node.kind, node.status])).toEqual([
      ['i1', 'ingest', 'up'],
      ['v1', 'voice', 'up'],
    ]);
    expect(body.nodes[1]!.load).toMatchObject({ cpu: 0.3, participants: 4 });
  });

  it('POST /api/channels/:name/sfu places the core and answers 201 with the assignment', async () => {
    const { placement } = await start();
    await placement.register({ id: 'v1', kind: 'voice' });
    const response = await call('POST', '/api/channels/room/sfu');
    expect(response.status).toBe(201);
    expect(channelAssignmentSchema.parse(await response.json())).toEqual({
      channel: 'room',
      core: 'v1',
      edges: [],
      version: 1,
    });
    expect((await placement.assignment('room'))?.core).toBe('v1');
  });

  it('POST /api/channels/:name/sfu answers 503 when no voice node is up', async () => {
    await start();
    const message = await expectError(
      await call('POST', '/api/channels/room/sfu'),
      503,
      'unavailable',
    );
    expect(message).toBe('no voice node is up for channel room');
  });

  it('routes with :name answer 400 for an invalid channel name', async () => {
    await start();
    for (const [method, path] of [
      ['POST', '/api/channels/-bad/sfu'],
      ['GET', '/api/channels/-bad/sfu'],
      ['DELETE', '/api/channels/-bad/sfu'],
      ['GET', '/api/channels/-bad/node'],
    ] as const) {
      const message = await expectError(await call(method, path), 400, 'bad_request');
      expect(message).toMatch(/^invalid channel name/);
    }
  });

  it('GET /api/channels/:name/sfu shows the assignment and its nodes, 404 when unallocated', async () => {
    const { placement } = await start();
    await expectError(await call('GET', '/api/channels/room/sfu'), 404, 'not_found');
    await placement.register({ id: 'v1', kind: 'voice', limits: { maxParticipants: 1 } });
    await placement.register({ id: 'v2', kind: 'voice' });
    await placement.placeParticipant('room');
    await placement.placeParticipant('room');
    const response = await call('GET', '/api/channels/room/sfu');
    expect(response.status).toBe(200);
    const body = channelSfuStatusSchema.parse(await response.json());
    expect(body.assignment).toEqual({ channel: 'room', core: 'v1', edges: ['v2'], version: 2 });
    expect(body.nodes.map((node) => node.id)).toEqual(['v1', 'v2']);
  });

  it('GET /api/channels/:name/node names the core and its signaling URL, 404 when unallocated', async () => {
    const { placement } = await start();
    await expectError(await call('GET', '/api/channels/room/node'), 404, 'not_found');
    await placement.register({ id: 'v1', kind: 'voice', signalingUrl: 'wss://v1.example/ws' });
    await placement.allocate('room');
    const response = await call('GET', '/api/channels/room/node');
    expect(response.status).toBe(200);
    expect(channelNodeSchema.parse(await response.json())).toEqual({
      channel: 'room',
      nodeId: 'v1',
      signalingUrl: 'wss://v1.example/ws',
    });
  });

  it('GET /api/channels/:name/node leaves out the URL of a node that registered none', async () => {
    const { placement } = await start();
    await placement.register({ id: 'v1', kind: 'voice' });
    await placement.allocate('room');
    expect(await (await call('GET', '/api/channels/room/node')).json()).toEqual({
      channel: 'room',
      nodeId: 'v1',
    });
  });

  it('DELETE /api/channels/:name/sfu releases with 204, then answers 404', async () => {
    const { placement } = await start();
    await placement.register({ id: 'v1', kind: 'voice' });
    await placement.allocate('room');
    const response = await call('DELETE', '/api/channels/room/sfu');
    expect(response.status).toBe(204);
    expect(await placement.assignment('room')).toBeUndefined();
    await expectError(await call('DELETE', '/api/channels/room/sfu'), 404, 'not_found');
  });

  it('nodeRoutes need moderate server-wide, and document a schema unless 204', () => {
    for (const operation of nodeRoutes) {
      expect(operation.auth).toEqual({ grant: 'moderate', serverWide: true });
      if (operation.success.status === 204) expect(operation.success.schema).toBeUndefined();
      else expect(operation.success.schema).toBeDefined();
    }
  });
});
