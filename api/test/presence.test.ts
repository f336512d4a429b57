import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Participant } from '@hearth/protocol';
import {
  InMemoryPresenceStore,
  LINKS_TTL_MS,
  RedisPresenceStore,
  type PresenceStore,
} from '../src/voice/presence';
import { startRedis, type TestRedis } from './support/redis';

let redis: TestRedis;
let prefixes = 0;

beforeAll(async () => {
  redis = await startRedis();
});

afterAll(async () => {
  await redis?.stop();
});

function participant(id: string, changes: Partial<Participant> = {}): Participant {
  return {
    id,
    displayName: id,
    muted: false,
    deafened: false,
    serverMuted: false,
    guest: true,
    rank: 0,
    sharing: false,
    ...changes,
  };
}

const byId = (a: Participant, b: Participant) => a.id.localeCompare(b.id);

describe.each([
  { name: 'in-memory', create: (): PresenceStore => new InMemoryPresenceStore() },
  {
    name: 'redis',
    create: (): PresenceStore =>
      new RedisPresenceStore({ url: redis.url, prefix: `hearth:presence${++prefixes}:` }),
  },
])('$name presence', ({ create }) => {
  let store: PresenceStore;

  afterEach(async () => {
    await store.close();
  });

  it('lists the participants of a channel across nodes, with their latest state', async () => {
    store = create();
    await store.upsert('node-a', 'lobby', participant('p1'));
    await store.upsert('node-b', 'lobby', participant('p2'));
    await store.upsert('node-b', 'games', participant('p3'));
    await store.upsert('node-a', 'lobby', participant('p1', { muted: true }));
    expect((await store.list('lobby')).sort(byId)).toEqual([
      participant('p1', { muted: true }),
      participant('p2'),
    ]);
    expect(await store.list('games')).toEqual([participant('p3')]);
    expect(await store.list('empty')).toEqual([]);
  });

  it('remove() takes one participant out; removeNode() everyone a node served', async () => {
    store = create();
    await store.upsert('node-a', 'lobby', participant('p1'));
    await store.upsert('node-b', 'lobby', participant('p2'));
    await store.upsert('node-b', 'games', participant('p3'));
    await store.remove('node-a', 'p1');
    await store.remove('node-a', 'unknown');
    expect(await store.list('lobby')).toEqual([participant('p2')]);
    await store.removeNode('node-b');
    expect(await store.list('lobby')).toEqual([]);
    expect(await store.list('games')).toEqual([]);
    await store.upsert('node-b', 'games', participant('p4'));
    expect(await store.list('games')).toEqual([participant('p4')]);
  });

  it('replaceNode() makes a node list exactly what it replays, leaving other nodes alone', async () => {
    store = create();
    await store.upsert('node-a', 'lobby', participant('p1'));
    await store.upsert('node-a', 'games', participant('p2'));
    await store.upsert('node-b', 'lobby', participant('p3'));
    await store.replaceNode('node-a', [
      { channel: 'lobby', participant: participant('p1', { muted: true }) },
      { channel: 'lobby', participant: participant('p4') },
    ]);
    expect((await store.list('lobby')).sort(byId)).toEqual([
      participant('p1', { muted: true }),
      participant('p3'),
      participant('p4'),
    ]);
    expect(await store.list('games')).toEqual([]);
    await store.replaceNode('node-a', []);
    expect(await store.list('lobby')).toEqual([participant('p3')]);
    // What was replaced is the node's now: removing the node removes it.
    await store.replaceNode('node-b', [{ channel: 'games', participant: participant('p5') }]);
    await store.removeNode('node-b');
    expect(await store.list('lobby')).toEqual([]);
    expect(await store.list('games')).toEqual([]);
  });

  it('keeps each node’s last report of its links for a channel, merged across nodes', async () => {
    store = create();
    const link = (peerId: string, quality: 'good' | 'poor', measuredAt = new Date()) => ({
      peerId,
      displayName: peerId,
      quality,
      lossPercent: quality === 'poor' ? 15 : 0,
      concealedPercent: quality === 'poor' ? 12 : 0,
      jitterMs: 5,
      rttMs: 40,
      outboundKbps: 32,
      measuredAt: measuredAt.toISOString(),
    });
    await store.putLinks('node-a', 'lobby', [link('ada', 'good'), link('bo', 'poor')]);
    await store.putLinks('node-b', 'lobby', [link('cy', 'good')]);
    // A node's next report replaces its last one.
    await store.putLinks('node-a', 'lobby', [link('ada', 'poor')]);
    expect((await store.links('lobby')).map((l) => `${l.peerId}:${l.quality}`).sort()).toEqual([
      'ada:poor',
      'cy:good',
    ]);
    expect(await store.links('games')).toEqual([]);
  });

  it('a report older than the links TTL is no longer read', async () => {
    store = create();
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      await store.putLinks('node-a', 'lobby', [
        {
          peerId: 'ada',
          displayName: 'ada',
          quality: 'good',
          lossPercent: 0,
          concealedPercent: 0,
          jitterMs: 5,
          rttMs: 40,
          outboundKbps: 32,
          measuredAt: new Date().toISOString(),
        },
      ]);
      expect(await store.links('lobby')).toHaveLength(1);
      vi.setSystemTime(Date.now() + LINKS_TTL_MS + 1);
      expect(await store.links('lobby')).toEqual([]);
    } finally {
      vi.useRealTimers();
    }
  });
});
