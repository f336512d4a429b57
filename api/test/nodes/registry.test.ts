import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { nodeLoadSchema, type ChannelAssignment, type NodeRegistration } from '@hearth/protocol';
import {
  InMemoryNodeRegistry,
  NodeNotRegisteredError,
  PENDING_TTL_MS,
  RedisNodeRegistry,
  toNodeInfo,
  type NodeRegistry,
} from '../../src/nodes/registry';
import { startRedis, type TestRedis } from '../support/redis';
import { capturingLogger } from './helpers';

let redis: TestRedis;
let prefixes = 0;

beforeAll(async () => {
  redis = await startRedis();
});

afterAll(async () => {
  await redis?.stop();
});

const { logger } = capturingLogger();

function voice(id: string, limits: NodeRegistration['limits'] = {}): NodeRegistration {
  return { id, kind: 'voice', signalingUrl: `wss://${id}.example/ws`, limits };
}

function assignment(
  channel: string,
  core: string,
  edges: string[] = [],
  version = 1,
): ChannelAssignment {
  return { channel, core, edges, version };
}

const load = nodeLoadSchema.parse({ cpu: 0.25, participants: 3, consumers: 6, channels: 1 });

describe.each([
  { name: 'in-memory', create: (): NodeRegistry => new InMemoryNodeRegistry() },
  {
    name: 'redis',
    create: (): NodeRegistry =>
      new RedisNodeRegistry({ url: redis.url, logger, keyPrefix: `hearth:t${++prefixes}:` }),
  },
])('$name registry', ({ create }) => {
  let registry: NodeRegistry;

  beforeEach(() => {
    registry = create();
  });

  afterEach(async () => {
    await registry.close();
  });

  it('register() adds an up node with zero load, shown by get() and list() by id', async () => {
    const record = await registry.register(voice('b', { maxParticipants: 50 }), 1000);
    await registry.register(voice('a'), 1001);
    expect(record).toEqual({
      registration: voice('b', { maxParticipants: 50 }),
      load: nodeLoadSchema.parse({}),
      status: 'up',
      pending: 0,
      pendingSince: 0,
      lastHeartbeatAt: 1000,
      registeredAt: 1000,
    });
    expect(await registry.get('b')).toEqual(record);
    expect((await registry.list()).map((node) => node.registration.id)).toEqual(['a', 'b']);
    expect(await registry.get('missing')).toBeUndefined();
  });

  it('heartbeat() stores the load and time, and leaves reservations to their own settlement', async () => {
    await registry.register(voice('a'), 1000);
    await registry.addPending('a', 1, 1100);
    await registry.addPending('a', 1, 1200);
    await registry.addPending('a', 1, 1300);
    expect((await registry.get('a'))?.pending).toBe(3);
    // A report taken before any of them joined settles none.
    await registry.heartbeat('a', nodeLoadSchema.parse({ participants: 0 }), 1400);
    expect((await registry.get('a'))?.pending).toBe(3);
    // Participants that joined settle their own reservation (addPending -1, when their token is
    // admitted), so the heartbeat that shows them does not take them off a second time.
    const twoJoined = nodeLoadSchema.parse({ cpu: 0.25, participants: 2, consumers: 2 });
    await registry.heartbeat('a', twoJoined, 2000);
    expect(await registry.get('a')).toMatchObject({
      load: twoJoined,
      lastHeartbeatAt: 2000,
      registeredAt: 1000,
      pending: 3,
      pendingSince: 1300,
      status: 'up',
    });
  });

  it('heartbeat() drops reservations whose participants never came', async () => {
    await registry.register(voice('a'), 1000);
    await registry.addPending('a', 1, 1000);
    await registry.heartbeat('a', nodeLoadSchema.parse({}), 1000 + PENDING_TTL_MS);
    expect((await registry.get('a'))?.pending).toBe(1);
    await registry.heartbeat('a', nodeLoadSchema.parse({}), 1001 + PENDING_TTL_MS);
    expect((await registry.get('a'))?.pending).toBe(0);
  });

  it('heartbeat() of an unknown node throws NodeNotRegisteredError "unknown"', async () => {
    const error = await registry.heartbeat('ghost', load, 1000).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NodeNotRegisteredError);
    expect(error).toMatchObject({ reason: 'unknown', code: 'not_found' });
    expect(await registry.get('ghost')).toBeUndefined();
  });

  it('heartbeat() of a down node throws "down" until the node registers again', async () => {
    await registry.register(voice('a'), 1000);
    await registry.markDown('a');
    await expect(registry.heartbeat('a', load, 2000)).rejects.toMatchObject({ reason: 'down' });
    await registry.register(voice('a'), 3000);
    await registry.heartbeat('a', load, 3100);
    expect(await registry.get('a')).toMatchObject({ status: 'up', lastHeartbeatAt: 3100 });
  });

  it('register() of a known id resets it: up, zero load, fresh times', async () => {
    await registry.register(voice('a'), 1000);
    await registry.heartbeat('a', load, 1500);
    await registry.addPending('a');
    await registry.register(voice('a', { maxChannels: 3 }), 2000);
    expect(await registry.get('a')).toEqual({
      registration: voice('a', { maxChannels: 3 }),
      load: nodeLoadSchema.parse({}),
      status: 'up',
      pending: 0,
      pendingSince: 0,
      lastHeartbeatAt: 2000,
      registeredAt: 2000,
    });
  });

  it('markDown() is true only for the call that changed the status', async () => {
    await registry.register(voice('a'), 1000);
    expect(await registry.markDown('a')).toBe(true);
    expect(await registry.markDown('a')).toBe(false);
    expect(await registry.markDown('ghost')).toBe(false);
    expect((await registry.get('a'))?.status).toBe('down');
  });

  it('markDown() with lastHeartbeatBefore spares a node that heartbeated since', async () => {
    await registry.register(voice('a'), 1000);
    await registry.heartbeat('a', load, 5000);
    expect(await registry.markDown('a', { lastHeartbeatBefore: 5000 })).toBe(false);
    expect((await registry.get('a'))?.status).toBe('up');
    expect(await registry.markDown('a', { lastHeartbeatBefore: 5001 })).toBe(true);
  });

  it('markDown() called concurrently succeeds exactly once', async () => {
    await registry.register(voice('a'), 1000);
    const results = await Promise.all(Array.from({ length: 10 }, () => registry.markDown('a')));
    expect(results.filter(Boolean)).toHaveLength(1);
  });

  it('addPending() resolves the new count, takes placements back, and stops at 0', async () => {
    await registry.register(voice('a'), 1000);
    expect(await registry.addPending('a')).toBe(1);
    expect(await registry.addPending('a')).toBe(2);
    expect(await registry.addPending('a', -1)).toBe(1);
    expect(await registry.addPending('a', -5)).toBe(0);
    expect((await registry.get('a'))?.pending).toBe(0);
    expect(await registry.addPending('ghost')).toBeUndefined();
  });

  it('addPending() called concurrently counts every call', async () => {
    await registry.register(voice('a'), 1000);
    const counts = await Promise.all(Array.from({ length: 20 }, () => registry.addPending('a')));
    expect([...counts].sort((x, y) => x! - y!)).toEqual(
      Array.from({ length: 20 }, (_, i) => i + 1),
    );
  });

  it('remove() forgets a node once; addPending() does not bring it back', async () => {
    await registry.register(voice('a'), 1000);
    expect(await registry.remove('a')).toBe(true);
    expect(await registry.remove('a')).toBe(false);
    await registry.addPending('a');
    expect(await registry.get('a')).toBeUndefined();
    expect(await registry.list()).toEqual([]);
  });

  it('compareAndSetAssignment() creates only when none exists', async () => {
    expect(await registry.compareAndSetAssignment('room', undefined, assignment('room', 'a'))).toBe(
      true,
    );
    expect(await registry.compareAndSetAssignment('room', undefined, assignment('room', 'b'))).toBe(
      false,
    );
    expect(await registry.assignment('room')).toEqual(assignment('room', 'a'));
    expect(await registry.assignment('other')).toBeUndefined();
  });

  it('compareAndSetAssignment() updates and deletes only at the expected version', async () => {
    await registry.compareAndSetAssignment('room', undefined, assignment('room', 'a'));
    const next = assignment('room', 'a', ['b'], 2);
    expect(await registry.compareAndSetAssignment('room', 2, next)).toBe(false);
    expect(await registry.compareAndSetAssignment('room', 1, next)).toBe(true);
    expect(await registry.assignment('room')).toEqual(next);
    expect(await registry.compareAndSetAssignment('room', 1, undefined)).toBe(false);
    expect(await registry.compareAndSetAssignment('room', 2, undefined)).toBe(true);
    expect(await registry.assignment('room')).toBeUndefined();
    expect(await registry.compareAndSetAssignment('room', 2, undefined)).toBe(false);
  });

  it('compareAndSetAssignment() at an unchanged version matches only an equal assignment', async () => {
    await registry.compareAndSetAssignment('room', undefined, assignment('room', 'a', ['b']));
    expect(await registry.compareAndSetAssignment('room', 1, assignment('room', 'a', ['b']))).toBe(
      true,
    );
    // What a placement read before a release and a new allocation at version 1 would write.
    expect(await registry.compareAndSetAssignment('room', 1, assignment('room', 'c'))).toBe(false);
    expect(await registry.assignment('room')).toEqual(assignment('room', 'a', ['b']));
    expect(await registry.channelsOnNode('b')).toEqual(['room']);
  });

  it('compareAndSetAssignment() called concurrently at one version lets one writer win', async () => {
    await registry.compareAndSetAssignment('room', undefined, assignment('room', 'a'));
    const results = await Promise.all(
      ['b', 'c', 'd', 'e', 'f', 'g'].map((id) =>
        registry.compareAndSetAssignment('room', 1, assignment('room', 'a', [id], 2)),
      ),
    );
    expect(results.filter(Boolean)).toHaveLength(1);
    expect((await registry.assignment('room'))?.version).toBe(2);
  });

  it('compareAndSetAssignment() refuses an invalid assignment or another channel', async () => {
    await expect(
      registry.compareAndSetAssignment('room', undefined, assignment('room', 'a', [], 0)),
    ).rejects.toThrow(/version/);
    await expect(
      registry.compareAndSetAssignment('room', undefined, assignment('hall', 'a')),
    ).rejects.toThrow('assignment of channel hall written under channel room');
    expect(await registry.assignment('room')).toBeUndefined();
  });

  it('assignments() lists every assignment by channel', async () => {
    await registry.compareAndSetAssignment('b-room', undefined, assignment('b-room', 'x'));
    await registry.compareAndSetAssignment('a-room', undefined, assignment('a-room', 'y', ['x']));
    expect(await registry.assignments()).toEqual([
      assignment('a-room', 'y', ['x']),
      assignment('b-room', 'x'),
    ]);
  });

  it('channelsOnNode() follows cores and edges through changes and deletes', async () => {
    await registry.compareAndSetAssignment('one', undefined, assignment('one', 'a', ['b']));
    await registry.compareAndSetAssignment('two', undefined, assignment('two', 'b'));
    expect(await registry.channelsOnNode('a')).toEqual(['one']);
    expect(await registry.channelsOnNode('b')).toEqual(['one', 'two']);
    await registry.compareAndSetAssignment('one', 1, assignment('one', 'c', [], 2));
    expect(await registry.channelsOnNode('a')).toEqual([]);
    expect(await registry.channelsOnNode('b')).toEqual(['two']);
    expect(await registry.channelsOnNode('c')).toEqual(['one']);
    await registry.compareAndSetAssignment('two', 1, undefined);
    expect(await registry.channelsOnNode('b')).toEqual([]);
  });

  it('toNodeInfo() shows times as ISO 8601', async () => {
    const record = await registry.register(voice('a'), Date.UTC(2025, 0, 2, 3, 4, 5));
    expect(toNodeInfo(record)).toMatchObject({
      id: 'a',
      kind: 'voice',
      status: 'up',
      lastHeartbeatAt: '2025-01-02T03:04:05.000Z',
      registeredAt: '2025-01-02T03:04:05.000Z',
    });
  });
});

describe('RedisNodeRegistry', () => {
  let raw: Redis;

  beforeAll(() => {
    raw = new Redis(redis.url);
  });

  afterAll(async () => {
    await raw.quit();
  });

  it('keeps its keys under "hearth:" by default', async () => {
    const registry = new RedisNodeRegistry({ url: redis.url, logger });
    try {
      await registry.register(voice('prefixed'), 1000);
      await registry.compareAndSetAssignment('prefixed', undefined, assignment('prefixed', 'x'));
      expect((await raw.keys('*prefixed*')).sort()).toEqual([
        'hearth:assignment:prefixed',
        'hearth:node:prefixed',
      ]);
      expect(await raw.sismember('hearth:nodes', 'prefixed')).toBe(1);
      expect(await raw.smembers('hearth:node-channels:x')).toEqual(['prefixed']);
    } finally {
      await registry.compareAndSetAssignment('prefixed', 1, undefined);
      await registry.remove('prefixed');
      await registry.close();
    }
  });

  it('rejects a node record that does not match its schema', async () => {
    const registry = new RedisNodeRegistry({ url: redis.url, logger, keyPrefix: 'hearth:bad:' });
    try {
      await registry.register(voice('a'), 1000);
      await raw.hset('hearth:bad:node:a', 'load', '{"cpu":7}');
      await expect(registry.list()).rejects.toThrow(/invalid node record a in Redis: .*cpu/);
      await raw.hset('hearth:bad:node:a', 'load', 'not json');
      await expect(registry.get('a')).rejects.toThrow(/load: not valid JSON/);
    } finally {
      await registry.close();
    }
  });

  it('rejects an assignment that does not match its schema', async () => {
    const registry = new RedisNodeRegistry({ url: redis.url, logger, keyPrefix: 'hearth:bad2:' });
    try {
      await raw.set('hearth:bad2:assignment:room', '{"channel":"room","core":"a"}');
      await raw.sadd('hearth:bad2:assignments', 'room');
      await expect(registry.assignment('room')).rejects.toThrow(
        /invalid assignment of channel room in Redis: edges/,
      );
      await expect(registry.assignments()).rejects.toThrow(/invalid assignment of channel room/);
    } finally {
      await registry.close();
    }
  });
});
