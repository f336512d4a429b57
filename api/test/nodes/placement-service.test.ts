import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { NodeLimits } from '@hearth/protocol';
import { AppError } from '@hearth/server-common';
import { InMemoryClusterBus, RedisClusterBus, type ClusterBus } from '../../src/cluster/bus';
import type {
  AssignmentChangedMessage,
  NodeDownMessage,
  ReleasedMessage,
} from '../../src/nodes/placement-events';
import {
  PlacementService,
  createPlacementService,
  type PlacementServiceOptions,
} from '../../src/nodes/placement-service';
import {
  InMemoryNodeRegistry,
  NodeNotRegisteredError,
  RedisNodeRegistry,
  type NodeRegistry,
} from '../../src/nodes/registry';
import { startRedis, type TestRedis } from '../support/redis';
import { capturingLogger, sleep, waitUntil } from './helpers';

let redis: TestRedis;
let prefixes = 0;

beforeAll(async () => {
  redis = await startRedis();
});

afterAll(async () => {
  await redis?.stop();
});

const { logger } = capturingLogger();

/** Stores of `count` api instances sharing one cluster. */
type StoresFactory = (count: number) => {
  stores: Array<{ registry: NodeRegistry; bus: ClusterBus }>;
  close(): Promise<void>;
};

const inMemoryStores: StoresFactory = (count) => {
  const registry = new InMemoryNodeRegistry();
  const bus = new InMemoryClusterBus(logger);
  return {
    stores: Array.from({ length: count }, () => ({ registry, bus })),
    close: () => bus.close(),
  };
};

const redisStores: StoresFactory = (count) => {
  const prefix = `hearth:svc${++prefixes}:`;
  const stores = Array.from({ length: count }, () => ({
    registry: new RedisNodeRegistry({ url: redis.url, logger, keyPrefix: prefix }),
    bus: new RedisClusterBus({ url: redis.url, logger, channelPrefix: `${prefix}bus:` }),
  }));
  return {
    stores,
    close: async () => {
      for (const { registry, bus } of stores) {
        await registry.close();
        await bus.close();
      }
    },
  };
};

/** What one instance heard on its `events`. */
interface Heard {
  nodeDown: NodeDownMessage[];
  assignmentChanged: AssignmentChangedMessage[];
  released: ReleasedMessage[];
}

function listen(service: PlacementService): Heard {
  const heard: Heard = { nodeDown: [], assignmentChanged: [], released: [] };
  service.events.on('nodeDown', (event) => heard.nodeDown.push(event));
  service.events.on('assignmentChanged', (event) => heard.assignmentChanged.push(event));
  service.events.on('released', (event) => heard.released.push(event));
  return heard;
}

const voice = (id: string, limits: NodeLimits = {}) => ({
  id,
  kind: 'voice' as const,
  signalingUrl: `wss://${id}.example/ws`,
  limits,
});

describe.each([
  { name: 'in-memory', makeStores: inMemoryStores },
  { name: 'redis', makeStores: redisStores },
])('PlacementService on $name stores', ({ makeStores }) => {
  let cleanup: Array<() => Promise<void>> = [];

  afterEach(async () => {
    for (const step of cleanup.reverse()) await step();
    cleanup = [];
  });

  /** Two started instances sharing stores, with a clock the test moves. */
  async function cluster(options: Partial<PlacementServiceOptions> = {}) {
    const clock = { now: 1_000_000 };
    const { stores, close } = makeStores(2);
    const services = stores.map(
      ({ registry, bus }) =>
        new PlacementService({
          registry,
          bus,
          logger,
          clock: () => clock.now,
          nodeTimeoutMs: 3000,
          // Sweeps run by hand in these tests.
          sweepIntervalMs: 3_600_000,
          ...options,
        }),
    );
    cleanup.push(close);
    for (const service of services) {
      cleanup.push(() => service.stop());
      await service.start();
    }
    const [one, two] = services as [PlacementService, PlacementService];
    return { one, two, heardOne: listen(one), heardTwo: listen(two), clock };
  }

  it('register() and heartbeat() show in nodes() on every instance', async () => {
    const { one, two, clock } = await cluster();
    const info = await one.register(voice('a', { maxParticipants: 10 }));
    expect(info).toMatchObject({ id: 'a', status: 'up', limits: { maxParticipants: 10 } });
    clock.now += 500;
    await two.heartbeat('a', { cpu: 0.5, participants: 2 });
    const [listed] = await two.nodes();
    expect(listed).toMatchObject({
      id: 'a',
      load: { cpu: 0.5, participants: 2, consumers: 0 },
      lastHeartbeatAt: new Date(clock.now).toISOString(),
    });
    expect(await one.node('a')).toEqual(listed);
  });

  it('register() and heartbeat() refuse invalid input with bad_request', async () => {
    const { one } = await cluster();
    await expect(one.register({ id: 'bad id', kind: 'voice' })).rejects.toMatchObject({
      code: 'bad_request',
      message: expect.stringContaining('invalid node registration: id'),
    });
    await expect(
      one.register({ id: 'a', kind: 'voice', signalingUrl: 'http://a.example' }),
    ).rejects.toMatchObject({ code: 'bad_request' });
    await one.register(voice('a'));
    await expect(one.heartbeat('a', { cpu: 2 })).rejects.toMatchObject({
      code: 'bad_request',
      message: expect.stringContaining('invalid node load: cpu'),
    });
  });

  it('heartbeat() of an unknown node throws NodeNotRegisteredError', async () => {
    const { one } = await cluster();
    await expect(one.heartbeat('ghost', {})).rejects.toBeInstanceOf(NodeNotRegisteredError);
  });

  it('placeParticipant() opens the channel, announces it once, and counts pending', async () => {
    const { one, two, heardOne, heardTwo } = await cluster();
    await one.register(voice('a'));
    await one.register(voice('b'));
    const first = await one.placeParticipant('room');
    expect(first).toMatchObject({
      nodeId: 'a',
      role: 'core',
      assignment: { channel: 'room', core: 'a', edges: [], version: 1 },
      node: { id: 'a', signalingUrl: 'wss://a.example/ws' },
    });
    const second = await two.placeParticipant('room');
    expect(second.assignment).toEqual(first.assignment);
    const expected = { type: 'assignmentChanged', channel: 'room', assignment: first.assignment };
    // A marker sent after both placements: Redis delivers in the order it took the publishes, so
    // once the marker arrives any second announcement would have arrived too.
    await two.bus.publish('placement', { type: 'released', channel: 'marker', reason: 'empty' });
    await waitUntil(
      () => heardOne.released.length === 1 && heardTwo.released.length === 1,
      'the marker on both instances',
    );
    expect(heardOne.assignmentChanged).toEqual([expected]);
    expect(heardTwo.assignmentChanged).toEqual([expected]);
    expect((await one.registry.get('a'))?.pending).toBe(2);
    expect(await two.assignment('room')).toEqual(first.assignment);
    expect(await one.channelsOnNode('a')).toEqual(['room']);
  });

  it('placeParticipant() opens an edge when pending participants fill the core', async () => {
    const { one, two } = await cluster();
    await one.register(voice('a', { maxParticipants: 2 }));
    await one.register(voice('b', { maxParticipants: 2 }));
    const nodes = [];
    for (const service of [one, two, one])
      nodes.push((await service.placeParticipant('room')).nodeId);
    expect(nodes).toEqual(['a', 'a', 'b']);
    expect(await one.assignment('room')).toEqual({
      channel: 'room',
      core: 'a',
      edges: ['b'],
      version: 2,
    });
  });

  it('placeParticipant() honours the avoid hint', async () => {
    const { one } = await cluster();
    await one.register(voice('a'));
    await one.register(voice('b'));
    await one.placeParticipant('room');
    const placement = await one.placeParticipant('room', { avoid: ['a'] });
    expect(placement).toMatchObject({ nodeId: 'b', role: 'edge' });
  });

  it('placeParticipant() throws unavailable without capacity and bad_request on a bad name', async () => {
    const { one } = await cluster();
    await expect(one.placeParticipant('room')).rejects.toMatchObject({
      code: 'unavailable',
      message: 'no voice node is up for channel room',
    });
    await one.register(voice('a', { maxParticipants: 1 }));
    await one.placeParticipant('room');
    await expect(one.placeParticipant('room')).rejects.toMatchObject({ code: 'unavailable' });
    await expect(one.placeParticipant('no/slash')).rejects.toMatchObject({
      code: 'bad_request',
    });
  });

  it('concurrent placements on two instances agree on one core', async () => {
    const { one, two } = await cluster();
    for (const id of ['a', 'b', 'c']) await one.register(voice(id, { maxParticipants: 4 }));
    const placements = await Promise.all(
      Array.from({ length: 10 }, (_, index) => (index % 2 ? one : two).placeParticipant('room')),
    );
    const final = await one.assignment('room');
    expect(final).toBeDefined();
    expect(new Set(placements.map((placement) => placement.assignment.core))).toEqual(
      new Set([final!.core]),
    );
    const members = new Set([final!.core, ...final!.edges]);
    for (const placement of placements) expect(members.has(placement.nodeId)).toBe(true);
    // Pending placements keep every node within its limit of 4.
    const perNode = new Map<string, number>();
    for (const { nodeId } of placements) perNode.set(nodeId, (perNode.get(nodeId) ?? 0) + 1);
    expect(Math.max(...perNode.values())).toBeLessThanOrEqual(4);
  });

  it('allocate() places a core once; release() deletes it and announces it', async () => {
    const { one, two, heardTwo } = await cluster();
    await one.register(voice('a'));
    const allocated = await one.allocate('room');
    expect(allocated).toEqual({ channel: 'room', core: 'a', edges: [], version: 1 });
    expect(await two.allocate('room')).toEqual(allocated);
    expect(await two.release('room')).toBe(true);
    expect(await one.release('room')).toBe(false);
    expect(await one.assignment('room')).toBeUndefined();
    await waitUntil(() => heardTwo.released.length === 1, 'the release');
    expect(heardTwo.released).toEqual([{ type: 'released', channel: 'room', reason: 'requested' }]);
    expect(heardTwo.assignmentChanged.map((event) => event.assignment)).toEqual([allocated]);
  });

  it('allocate() throws unavailable when no voice node is up', async () => {
    const { one } = await cluster();
    await one.register({ id: 'ingest-1', kind: 'ingest' });
    await expect(one.allocate('room')).rejects.toMatchObject({ code: 'unavailable' });
  });

  it('sweep() on two instances marks a silent node down once and moves its channels', async () => {
    const { one, two, heardOne, heardTwo, clock } = await cluster();
    await one.register(voice('a'));
    await one.register(voice('b'));
    await one.placeParticipant('room');
    await one.placeParticipant('hall');
    clock.now += 2000;
    await one.heartbeat('b', {});
    expect(await one.sweep()).toEqual({ markedDown: [], reassigned: [], removed: [] });

    clock.now += 1500;
    const reports = await Promise.all([one.sweep(), two.sweep(), one.sweep()]);
    expect(reports.flatMap((report) => report.markedDown)).toEqual(['a']);
    expect(reports.flatMap((report) => report.reassigned).sort()).toEqual(['hall', 'room']);
    expect(await one.assignment('room')).toEqual({
      channel: 'room',
      core: 'b',
      edges: [],
      version: 2,
    });
    expect(await two.channelsOnNode('a')).toEqual([]);
    expect((await two.node('a'))?.status).toBe('down');
    await expect(one.heartbeat('a', {})).rejects.toMatchObject({ reason: 'down' });

    for (const heard of [heardOne, heardTwo]) {
      await waitUntil(
        () => heard.nodeDown.length === 1 && heard.assignmentChanged.length === 4,
        'the failure announcements',
      );
      expect(heard.nodeDown).toEqual([
        { type: 'nodeDown', nodeId: 'a', channels: ['hall', 'room'], at: clock.now },
      ]);
      expect(heard.assignmentChanged.slice(2).map((event) => event.assignment?.core)).toEqual([
        'b',
        'b',
      ]);
    }
  });

  it('sweep() judges silence only up to the last vouch of every instance, and drops an instance gone for instanceGoneMs', async () => {
    const { one, two, heardTwo, clock } = await cluster({ instanceGoneMs: 30_000 });
    await one.register(voice('a'));
    await one.sweep();
    // `one` stops sweeping, as an instance cut off from the store would: it vouches no more.
    clock.now += 5000;
    expect((await two.sweep()).markedDown).toEqual([]);
    clock.now += 20_000;
    expect((await two.sweep()).markedDown).toEqual([]);
    // Back, `one` vouches: `a` has been silent for longer than the node timeout since.
    clock.now += 1000;
    await one.sweep();
    await waitUntil(() => heardTwo.nodeDown.length === 1, 'nodeDown of a');
    expect(heardTwo.nodeDown.map((event) => event.nodeId)).toEqual(['a']);

    await one.register(voice('b'));
    await one.sweep();
    // `one` never vouches again: once it has been silent for 30 s, `two` judges `b` alone.
    clock.now += 29_000;
    expect((await two.sweep()).markedDown).toEqual([]);
    clock.now += 2000;
    expect((await two.sweep()).markedDown).toEqual(['b']);
  });

  it('sweep() stops waiting for an instance that stopped', async () => {
    const { one, two, clock } = await cluster();
    await one.register(voice('a'));
    await one.sweep();
    await one.stop();
    clock.now += 5000;
    expect((await two.sweep()).markedDown).toEqual(['a']);
  });

  it('sweep() spreads a failed node’s channels over the nodes with room', async () => {
    const { one, clock } = await cluster();
    await one.register(voice('a', { maxChannels: 10 }));
    for (let index = 0; index < 6; index++) await one.allocate(`room-${index}`);
    await one.register(voice('b', { maxChannels: 10 }));
    await one.register(voice('c', { maxChannels: 10 }));
    clock.now += 3500;
    await one.heartbeat('b', {});
    await one.heartbeat('c', {});
    const report = await one.sweep();
    expect(report.reassigned).toHaveLength(6);
    const cores = (await one.registry.assignments()).map((assignment) => assignment.core);
    expect(cores.filter((core) => core === 'b')).toHaveLength(3);
    expect(cores.filter((core) => core === 'c')).toHaveLength(3);
  });

  it('sweep() with no voice node left deletes the assignment and announces it released', async () => {
    const { one, heardOne, clock } = await cluster();
    await one.register(voice('a'));
    await one.allocate('room');
    clock.now += 3500;
    expect(await one.sweep()).toEqual({ markedDown: ['a'], reassigned: ['room'], removed: [] });
    expect(await one.assignment('room')).toBeUndefined();
    await waitUntil(() => heardOne.released.length === 1, 'the release');
    expect(heardOne.released).toEqual([
      { type: 'released', channel: 'room', reason: 'noVoiceNode' },
    ]);
    expect(heardOne.assignmentChanged).toHaveLength(1);
  });

  it('leaveChannel() drops an edge, hands a leaving core to an edge, and ends an empty channel', async () => {
    const { one, two, heardTwo } = await cluster();
    await one.register(voice('a', { maxParticipants: 1 }));
    await one.register(voice('b', { maxParticipants: 1 }));
    await one.register(voice('c', { maxParticipants: 1 }));
    for (let index = 0; index < 3; index++) await one.placeParticipant('room');
    expect(await one.assignment('room')).toMatchObject({
      core: 'a',
      edges: ['b', 'c'],
      version: 3,
    });

    await two.leaveChannel('room', 'b');
    expect(await one.assignment('room')).toMatchObject({ core: 'a', edges: ['c'], version: 4 });
    await two.leaveChannel('room', 'b');
    expect((await one.assignment('room'))?.version).toBe(4);
    await two.leaveChannel('room', 'a');
    expect(await one.assignment('room')).toMatchObject({ core: 'c', edges: [], version: 5 });
    await two.leaveChannel('room', 'c');
    expect(await one.assignment('room')).toBeUndefined();
    await two.leaveChannel('room', 'c');

    await waitUntil(() => heardTwo.released.length === 1, 'the release');
    expect(heardTwo.released).toEqual([{ type: 'released', channel: 'room', reason: 'empty' }]);
    expect(heardTwo.assignmentChanged.map((event) => event.assignment.version)).toEqual([
      1, 2, 3, 4, 5,
    ]);
  });

  it('sweep() forgets a down node once its retention time has passed', async () => {
    const { one, clock } = await cluster({ downRetentionMs: 10_000 });
    await one.register(voice('a'));
    clock.now += 3500;
    expect((await one.sweep()).markedDown).toEqual(['a']);
    clock.now += 5000;
    expect((await one.sweep()).removed).toEqual([]);
    expect((await one.node('a'))?.status).toBe('down');
    clock.now += 5000;
    expect((await one.sweep()).removed).toEqual(['a']);
    expect(await one.nodes()).toEqual([]);
  });

  it('stop() is idempotent and every later call fails with unavailable', async () => {
    const { one } = await cluster();
    await one.stop();
    await one.stop();
    const error = await one.nodes().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AppError);
    expect(error).toMatchObject({
      code: 'unavailable',
      message: 'the placement service is closed',
    });
    await expect(one.placeParticipant('room')).rejects.toMatchObject({ code: 'unavailable' });
    await expect(one.start()).rejects.toMatchObject({ code: 'unavailable' });
  });

  it('an invalid message on the placement topic is logged and dropped', async () => {
    const captured = capturingLogger();
    const { stores, close } = makeStores(1);
    cleanup.push(close);
    const service = new PlacementService({ ...stores[0]!, logger: captured.logger });
    cleanup.push(() => service.stop());
    await service.start();
    const heard = listen(service);
    await stores[0]!.bus.publish('placement', { type: 'nodeDown', nodeId: 'bad id' });
    await stores[0]!.bus.publish('placement', {
      type: 'released',
      channel: 'room',
      reason: 'empty',
    });
    await waitUntil(() => heard.released.length === 1, 'the valid message');
    expect(heard.nodeDown).toEqual([]);
    expect(captured.logs.map((line) => line.message)).toContain(
      'placement: dropped an invalid bus message',
    );
  });
});

describe('PlacementService failure detector in real time', () => {
  it('two instances on one Redis both hear nodeDown once a node stops heartbeating', async () => {
    const timeoutMs = 300;
    const sweepMs = 100;
    const services = [0, 1].map(() =>
      createPlacementService({
        redisUrl: redis.url,
        logger,
        nodeTimeoutMs: timeoutMs,
        sweepIntervalMs: sweepMs,
      }),
    );
    const [one, two] = services as [PlacementService, PlacementService];
    let beating = new Set(['rt-a', 'rt-b']);
    const beat = setInterval(() => {
      for (const id of beating) void one.heartbeat(id, {}).catch(() => undefined);
    }, 50);
    try {
      for (const service of services) await service.start();
      const heard = services.map(listen);
      await one.register(voice('rt-a'));
      await two.register(voice('rt-b'));
      const placement = await two.placeParticipant('rt-room');
      expect(placement.nodeId).toBe('rt-a');

      beating = new Set(['rt-b']);
      await waitUntil(
        () => heard.every((h) => h.nodeDown.length === 1),
        'nodeDown on both instances',
      );
      const heardAt = Date.now();
      const lastHeartbeatAt = Date.parse((await one.node('rt-a'))!.lastHeartbeatAt);
      const detectedAfter = heardAt - lastHeartbeatAt;
      await waitUntil(
        () =>
          heard.every((h) =>
            h.assignmentChanged.some((event) => event.assignment?.core === 'rt-b'),
          ),
        'the channel moved on both instances',
      );
      // Several sweeps later, still one announcement per instance.
      await sleep(4 * sweepMs);
      for (const h of heard) {
        expect(h.nodeDown).toEqual([
          { type: 'nodeDown', nodeId: 'rt-a', channels: ['rt-room'], at: expect.any(Number) },
        ]);
      }
      // Never before the timeout; the upper bound only catches a detector that does not run.
      expect(detectedAfter).toBeGreaterThanOrEqual(timeoutMs);
      expect(detectedAfter).toBeLessThan(timeoutMs + sweepMs + 2000);
      expect((await one.assignment('rt-room'))?.core).toBe('rt-b');
    } finally {
      clearInterval(beat);
      for (const service of services) await service.stop();
    }
  });

  it('createPlacementService() picks Redis stores with a URL and in-process ones without', async () => {
    const withRedis = createPlacementService({ redisUrl: redis.url, logger });
    const inProcess = createPlacementService({ logger });
    try {
      expect(withRedis.registry).toBeInstanceOf(RedisNodeRegistry);
      expect(withRedis.bus).toBeInstanceOf(RedisClusterBus);
      expect(inProcess.registry).toBeInstanceOf(InMemoryNodeRegistry);
      expect(inProcess.bus).toBeInstanceOf(InMemoryClusterBus);
    } finally {
      await withRedis.stop();
      await inProcess.stop();
    }
  });
});
