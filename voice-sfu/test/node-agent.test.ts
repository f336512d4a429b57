import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import {
  REPLAY_BATCH_SIZE,
  nodeToApiMessageSchema,
  serverMessageSchema,
  type JoinTokenClaimsInput,
  type NodeToApiMessage,
  type ReplayedSession,
  type ServerMessage,
} from '@hearth/protocol';
import { JoinTokenIssuer, JoinTokenVerifier } from '@hearth/server-common';
import { voiceConfig } from '../src/config';
import { NodeAgent } from '../src/node-agent';
import { VoiceNode } from '../src/voice-node';
import { RecordingSink, quietLogger, testIdentity } from './support/plain-peers';

let node: VoiceNode | undefined;
let agent: NodeAgent | undefined;
let server: WebSocketServer | undefined;
const clients: WebSocket[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.terminate();
  if (server) await new Promise((resolve) => server!.close(resolve));
  server = undefined;
  agent?.close();
  agent = undefined;
  node?.close();
  node = undefined;
});

async function start(): Promise<{ node: VoiceNode; agent: NodeAgent }> {
  node = await VoiceNode.start(voiceConfig({ numWorkers: 1, rtcBasePort: 0 }), quietLogger);
  // The agent exists before any channel opens, as in a node process, so it hears every join.
  agent = new NodeAgent({
    node,
    nodeId: 'node-t',
    tokens: new JoinTokenVerifier(),
    limits: {},
    // Heartbeats are beside the point here; the first one goes out at attach, no second one.
    heartbeatMs: 3_600_000,
  });
  return { node, agent };
}

/** Attaches a recording connection; every message is checked against the wire schema. */
function attach(on: NodeAgent): NodeToApiMessage[] {
  const sent: NodeToApiMessage[] = [];
  on.attach((message) => sent.push(nodeToApiMessageSchema.parse(message)));
  return sent;
}

function replayed(sent: NodeToApiMessage[]): { batches: number; sessions: ReplayedSession[] } {
  const replays = sent.flatMap((message) => (message.type === 'replay' ? [message] : []));
  expect(replays.at(-1)?.done).toBe(true);
  expect(replays.slice(0, -1).every((message) => !message.done)).toBe(true);
  return { batches: replays.length, sessions: replays.flatMap((message) => message.sessions) };
}

const byName = (a: ReplayedSession, b: ReplayedSession) =>
  a.participant.displayName.localeCompare(b.participant.displayName);

describe('NodeAgent replay', () => {
  it('attach() registers, then replays every local session with its state', async () => {
    const { node, agent } = await start();
    const join = (channel: string, name: string) =>
      node.channels.join(
        channel,
        testIdentity(name),
        node.routerRtpCapabilities,
        new RecordingSink(),
      );
    const ada = await join('lobby', 'Ada');
    const bo = await join('lobby', 'Bo');
    const cy = await join('games', 'Cy');
    await bo.channel.setDeafened(bo.peer.id, true);

    const sent = attach(agent);
    expect(sent.map((message) => message.type).slice(0, 2)).toEqual(['register', 'replay']);
    expect(replayed(sent).sessions.sort(byName)).toEqual([
      {
        peerId: ada.peer.id,
        channel: 'lobby',
        userId: 'test:Ada',
        participant: {
          id: ada.peer.id,
          displayName: 'Ada',
          muted: false,
          deafened: false,
          serverMuted: false,
          guest: true,
          rank: 2,
          sharing: false,
        },
      },
      {
        peerId: bo.peer.id,
        channel: 'lobby',
        userId: 'test:Bo',
        participant: {
          id: bo.peer.id,
          displayName: 'Bo',
          muted: false,
          deafened: true,
          serverMuted: false,
          guest: true,
          rank: 2,
          sharing: false,
        },
      },
      {
        peerId: cy.peer.id,
        channel: 'games',
        userId: 'test:Cy',
        participant: {
          id: cy.peer.id,
          displayName: 'Cy',
          muted: false,
          deafened: false,
          serverMuted: false,
          guest: true,
          rank: 2,
          sharing: false,
        },
      },
    ]);

    // A peer leaves; told to register again, the node replays who is left.
    ada.channel.leave(ada.peer.id);
    sent.length = 0;
    agent.receive({ type: 'registerAgain' });
    expect(sent.map((message) => message.type).slice(0, 2)).toEqual(['register', 'replay']);
    expect(
      replayed(sent)
        .sessions.map((session) => session.participant.displayName)
        .sort(),
    ).toEqual(['Bo', 'Cy']);
    expect(agent.liveSessions()).toHaveLength(2);
  });

  it('a node with nobody on it replays one empty batch; a large one replays in batches', async () => {
    const { node, agent } = await start();
    expect(replayed(attach(agent))).toEqual({ batches: 1, sessions: [] });

    const count = REPLAY_BATCH_SIZE + 1;
    for (let index = 0; index < count; index++) {
      await node.channels.join(
        `room-${index % 3}`,
        testIdentity(`peer-${index}`),
        node.routerRtpCapabilities,
        new RecordingSink(),
      );
    }
    const { batches, sessions } = replayed(attach(agent));
    expect(batches).toBe(2);
    expect(new Set(sessions.map((session) => session.peerId)).size).toBe(count);
  });
});

// The api's signing key (the node only ever sees its public half) and the claims of a token for
// this node.
const issuer = new JoinTokenIssuer('node-agent-test-api-secret-0123456789abcdef');
const claims: Omit<JoinTokenClaimsInput, 'jti'> = {
  sub: 'guest:ada',
  name: 'Ada',
  guest: true,
  channel: 'lobby',
  node: 'node-t',
  grants: ['join', 'speak'],
  core: 'node-t',
  rank: 0,
  serverMuted: false,
};

/** A signaling client on a WebSocket the agent took with `acceptWithToken`. */
interface TokenClient {
  socket: WebSocket;
  messages: ServerMessage[];
  closed: Promise<{ code: number; reason: string }>;
}

// Serves `/?token=` on a loopback port the way the node's signaling server does.
async function serveSignaling(on: NodeAgent): Promise<(token: string) => Promise<TokenClient>> {
  server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  server.on('connection', (socket, request) => {
    const token = new URL(request.url ?? '/', 'ws://localhost').searchParams.get('token');
    on.acceptWithToken(socket, token ?? undefined);
  });
  await new Promise((resolve) => server!.once('listening', resolve));
  const { port } = server.address() as AddressInfo;
  return async (token) => {
    const socket = new WebSocket(`ws://127.0.0.1:${port}/?token=${encodeURIComponent(token)}`);
    clients.push(socket);
    const messages: ServerMessage[] = [];
    socket.on('message', (raw) =>
      messages.push(serverMessageSchema.parse(JSON.parse(String(raw)))),
    );
    const closed = new Promise<{ code: number; reason: string }>((resolve) =>
      socket.once('close', (code, reason) => resolve({ code, reason: String(reason) })),
    );
    await new Promise((resolve, reject) => {
      socket.once('open', resolve);
      socket.once('error', reject);
    });
    return { socket, messages, closed };
  };
}

async function request(client: TokenClient, id: number, method: string): Promise<ServerMessage> {
  client.socket.send(JSON.stringify({ kind: 'request', id, method, data: {} }));
  const deadline = Date.now() + 5000;
  for (;;) {
    const found = client.messages.find((m) => m.kind === 'response' && m.id === id);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no answer to ${method}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('NodeAgent join tokens', () => {
  it('admits no token before the api told it its key (1013), then only tokens signed with that key', async () => {
    const { agent } = await start();
    const connect = await serveSignaling(agent);
    const early = await connect(issuer.sign(claims).token);
    expect(await early.closed).toEqual({ code: 1013, reason: 'this node has not registered yet' });

    agent.receive({ type: 'registered', nodeId: 'node-t', joinTokenKey: issuer.publicKey });
    const admitted = await connect(issuer.sign(claims).token);
    expect(await request(admitted, 1, 'getRouterRtpCapabilities')).toMatchObject({ ok: true });

    // Same claims, signed by a key that is not the api's: a node cannot be fooled into them.
    const other = new JoinTokenIssuer('another-api-secret-0123456789abcdef0123456789');
    const forged = await connect(other.sign({ ...claims, rank: 5 }).token);
    expect((await forged.closed).code).toBe(4401);
    const garbled = await connect('not.a.token');
    expect((await garbled.closed).code).toBe(4401);
    const elsewhere = await connect(issuer.sign({ ...claims, node: 'node-u' }).token);
    expect(await elsewhere.closed).toEqual({
      code: 4403,
      reason: 'the join token is for another node',
    });
  });

  it('a join token opens one session: replaying it is refused with 4401 and a clear reason', async () => {
    const { agent } = await start();
    const sent = attach(agent);
    agent.receive({ type: 'registered', nodeId: 'node-t', joinTokenKey: issuer.publicKey });
    const connect = await serveSignaling(agent);
    const issued = issuer.sign(claims);
    const first = await connect(issued.token);
    expect(await request(first, 1, 'getRouterRtpCapabilities')).toMatchObject({ ok: true });

    const replay = await connect(issued.token);
    expect(await replay.closed).toEqual({
      code: 4401,
      reason: 'join token already used; ask the api for a new one',
    });
    // The first session is unharmed, and once it is gone the token still opens nothing.
    expect(await request(first, 2, 'getRouterRtpCapabilities')).toMatchObject({ ok: true });
    first.socket.close();
    const later = await connect(issued.token);
    expect((await later.closed).code).toBe(4401);

    // A session a token admitted reports the token's id, so the api settles the seat it held.
    const fresh = issuer.sign(claims);
    const joiner = await connect(fresh.token);
    const caps = (await request(joiner, 1, 'getRouterRtpCapabilities')) as {
      data: { rtpCapabilities: unknown };
    };
    joiner.socket.send(
      JSON.stringify({
        kind: 'request',
        id: 2,
        method: 'join',
        data: { channel: 'lobby', rtpCapabilities: caps.data.rtpCapabilities },
      }),
    );
    await expect
      .poll(() => sent.find((message) => message.type === 'sessionOpened'))
      .toMatchObject({ userId: 'guest:ada', displayName: 'Ada', tokenId: fresh.id });
  });
});
