import { afterEach, describe, expect, it } from 'vitest';
import { ServiceUnavailableError } from '@hearth/server-common';
import type { NodeDownMessage } from '../../src/nodes/placement-events';
import type { PlacementService } from '../../src/nodes/placement-service';
import { createPlacementService } from '../../src/nodes/placement-service';
import { channelSchema, nodeListSchema } from '@hearth/protocol';
import { guestSession, operator } from '../support/accounts';
import { startRedis, type TestRedis } from '../support/redis';
import { TestSignalingClient, startTestApi } from '../support/server';
import { capturingLogger, sleep, waitUntil } from './helpers';

// The production ratios (3 s timeout, 1 s heartbeats, 1 s sweeps) scaled down; the sweep runs
// often so that one runs right after Redis is back, before the next heartbeat.
const NODE_TIMEOUT_MS = 1000;
const SWEEP_MS = 100;
const HEARTBEAT_MS = 300;
// Longer than the node timeout: every heartbeat of that long is lost.
const OUTAGE_MS = 3000;

const { logger } = capturingLogger();

let redis: TestRedis | undefined;
let cleanup: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const step of cleanup.reverse()) await step();
  cleanup = [];
  await redis?.stop();
  redis = undefined;
});

const voice = (id: string) => ({
  id,
  kind: 'voice' as const,
  signalingUrl: `wss://${id}.example/ws`,
  limits: {},
});

/**
 * Two api instances on one Redis with three nodes: `live-a` and `live-b` heartbeat throughout,
 * `dead-c` stops when the outage starts. Returns what each instance heard as nodeDown.
 */
async function cluster() {
  redis = await startRedis({ persistent: true });
  const services = [0, 1].map(() =>
    createPlacementService({
      redisUrl: redis!.url,
      logger,
      nodeTimeoutMs: NODE_TIMEOUT_MS,
      sweepIntervalMs: SWEEP_MS,
      // On a loaded machine one instance's client has taken over 7 s longer than the other's to
      // reconnect; until it has, the other waits for its vouch (production: 30 s).
      instanceGoneMs: 30_000,
    }),
  ) as [PlacementService, PlacementService];
  for (const service of services) {
    cleanup.push(() => service.stop());
    await service.start();
  }
  const heard = services.map((service) => {
    const nodeDown: NodeDownMessage[] = [];
    service.events.on('nodeDown', (event) => nodeDown.push(event));
    return nodeDown;
  });
  const [one, two] = services;
  await one.register(voice('live-a'));
  await two.register(voice('live-b'));
  await one.register(voice('dead-c'));
  const beating = new Set(['live-a', 'live-b', 'dead-c']);
  // Like the node hub: a heartbeat that cannot be written is lost, and the node sends the next.
  const beat = setInterval(() => {
    for (const id of beating) {
      const via = id === 'live-b' ? two : one;
      via.heartbeat(id, { participants: 0 }).catch(() => undefined);
    }
  }, HEARTBEAT_MS);
  cleanup.push(() => clearInterval(beat));
  // Several heartbeats and sweeps with Redis up: nobody is marked down.
  await sleep(2 * NODE_TIMEOUT_MS);
  expect(heard).toEqual([[], []]);
  return { one, two, heard, stopHeartbeats: (id: string) => beating.delete(id) };
}

/** After the outage: only the node that really stopped is marked down, and placement works. */
async function expectRecovered(
  { one, two, heard }: Awaited<ReturnType<typeof cluster>>,
  backAt: number,
): Promise<void> {
  const statusOf = async (service: PlacementService, id: string) =>
    (await service.nodes().catch(() => [])).find((node) => node.id === id)?.status;
  await waitUntil(
    async () =>
      heard.some((events) => events.length > 0) &&
      (await statusOf(one, 'dead-c')) === 'down' &&
      (await statusOf(two, 'dead-c')) === 'down',
    'the silent node marked down',
    // Generous: on a loaded machine the clients' reconnection to the restarted Redis alone has
    // taken over 7 s. Only the order of events is checked here, not how fast it is.
    20_000,
  );
  const detectedAfterMs = performance.now() - backAt;
  // Another sweep or two: the live nodes still stand. An instance whose bus subscriber was
  // still reconnecting when the node was marked down does not hear it (Redis pub/sub keeps
  // nothing for a client away); it reads the registry instead.
  await sleep(NODE_TIMEOUT_MS);
  for (const events of heard) {
    expect(events.filter((event) => event.nodeId !== 'dead-c')).toEqual([]);
    expect(events.length).toBeLessThanOrEqual(1);
  }
  // The grace period is a full node timeout from when Redis answered again.
  expect(detectedAfterMs).toBeGreaterThanOrEqual(NODE_TIMEOUT_MS);
  expect(
    (await one.nodes())
      .map((node) => [node.id, node.status])
      .sort(([a], [b]) => a!.localeCompare(b!)),
  ).toEqual([
    ['dead-c', 'down'],
    ['live-a', 'up'],
    ['live-b', 'up'],
  ]);
  const placed = await two.placeParticipant('after-outage');
  expect(['live-a', 'live-b']).toContain(placed.nodeId);
  expect(one.detecting && two.detecting).toBe(true);
}

describe('the failure detector while Redis is out', () => {
  it('Redis killed for longer than the node timeout: no heartbeating node is marked down, and placement works once it is back', async () => {
    const state = await cluster();
    state.stopHeartbeats('dead-c');
    await redis!.kill();
    // Placement needs the registry: it fails as unavailable (503), it does not hang.
    const refused: unknown = await state.one.placeParticipant('during').catch((error) => error);
    expect(refused).toBeInstanceOf(ServiceUnavailableError);
    await sleep(OUTAGE_MS);
    expect(state.one.detecting || state.two.detecting).toBe(false);
    await redis!.restart();
    await expectRecovered(state, performance.now());
  }, 60_000);

  it('Redis hung with SIGSTOP for longer than the node timeout: no heartbeating node is marked down after SIGCONT', async () => {
    const state = await cluster();
    state.stopHeartbeats('dead-c');
    redis!.pause();
    const started = performance.now();
    const refused: unknown = await state.one.placeParticipant('during').catch((error) => error);
    expect(refused).toBeInstanceOf(ServiceUnavailableError);
    // Bounded by the command timeout (half the node timeout here), not by the outage.
    expect(performance.now() - started).toBeLessThan(NODE_TIMEOUT_MS + 1000);
    await sleep(OUTAGE_MS);
    expect(state.one.detecting || state.two.detecting).toBe(false);
    redis!.resume();
    await expectRecovered(state, performance.now());
  }, 60_000);
});

describe('the api while Redis is out', () => {
  it('Redis restarted empty: the voice call goes on, the node registers again and replays, and GET /api/channels lists it again', async () => {
    redis = await startRedis();
    const api = await startTestApi({
      api: {
        redisUrl: redis.url,
        nodeTimeoutMs: String(NODE_TIMEOUT_MS),
        sweepIntervalMs: String(SWEEP_MS),
      },
    });
    cleanup.push(() => api.close());
    const client = await TestSignalingClient.connect(api.baseUrl, 'Ada', { channel: 'lobby' });
    cleanup.push(() => client.close());
    const caps = (await client.request('getRouterRtpCapabilities')) as {
      data: { rtpCapabilities: unknown };
    };
    expect(
      await client.request('join', {
        channel: 'lobby',
        rtpCapabilities: caps.data.rtpCapabilities,
      }),
    ).toMatchObject({ ok: true });
    const listed = async () => {
      const response = await fetch(`${api.baseUrl}/api/channels/lobby`, { headers: operator() });
      if (response.status !== 200) return [`(${response.status})`];
      return channelSchema.parse(await response.json()).participants.map((p) => p.displayName);
    };
    const openRows = async () =>
      api.database.query(
        `SELECT id, display_name FROM session_history WHERE left_at IS NULL ORDER BY display_name`,
      );
    await expect.poll(listed).toEqual(['Ada']);
    await expect.poll(async () => (await openRows()).length).toBe(1);
    const [adasRow] = await openRows();

    // Bo's guest session is a signed token: starting it needs no store.
    const bosSession = await guestSession(api.baseUrl, 'Bo');
    await redis.kill();
    // Joins need Redis (presence for a guest's name check, then the registry): they answer 503
    // while it is out.
    const refused = await fetch(`${api.baseUrl}/api/voice/join`, {
      method: 'POST',
      headers: { ...bosSession, 'content-type': 'application/json' },
      body: JSON.stringify({ channel: 'lobby' }),
    });
    expect(refused.status).toBe(503);
    expect(await refused.json()).toEqual({
      error: {
        code: 'unavailable',
        message: expect.stringMatching(/^(presence|node registry) unavailable$/),
      },
    });
    await sleep(OUTAGE_MS);
    // The call itself goes on: the node still answers its client.
    expect(await client.request('getRouterRtpCapabilities')).toMatchObject({ ok: true });

    // Redis comes back without its data: the node's next heartbeat finds it unknown, so it
    // registers again and replays its session.
    await redis.restart();
    const nodes = async () => {
      const response = await fetch(`${api.baseUrl}/api/nodes`, {
        headers: operator(),
      });
      if (response.status !== 200) return [`(${response.status})`];
      return nodeListSchema.parse(await response.json()).nodes.map((n) => n.status);
    };
    await expect.poll(nodes, { timeout: 10_000 }).toEqual(['up']);
    await expect.poll(listed, { timeout: 5000 }).toEqual(['Ada']);
    // Her session never ended: the same row is open.
    expect(await openRows()).toEqual([adasRow]);
    // Each Redis client of the api reconnects on its own backoff (2 s at most), so a join may
    // still find one of them out for a moment; it gets through within a few seconds.
    const bo = await retryFor(5000, () =>
      TestSignalingClient.connect(api.baseUrl, 'Bo', { channel: 'lobby' }),
    );
    cleanup.push(() => bo.close());
    expect(client.socket.readyState).toBe(client.socket.OPEN);
  });
});

async function retryFor<T>(timeoutMs: number, attempt: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(200);
    }
  }
}
