import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  InMemoryLiveStreamStore,
  RedisLiveStreamStore,
  type LiveStreamStore,
  type StreamRecord,
} from '../../src/streams/live-stream-store';
import { capturingLogger } from '../nodes/helpers';
import { startRedis, type TestRedis } from '../support/redis';

let redis: TestRedis;
let prefixes = 0;
const { logger } = capturingLogger();

beforeAll(async () => {
  redis = await startRedis();
});

afterAll(async () => {
  await redis?.stop();
});

function record(channel: string, nodeId = 'ingest-a', seenAt = new Date()): StreamRecord {
  const id = randomUUID();
  return {
    stream: {
      id,
      channel,
      state: 'starting',
      startedAt: seenAt.toISOString(),
      endedAt: null,
      playbackUrl: `http://edge/live/${channel}/master.m3u8`,
      renditions: [],
    },
    keyId: `key-${channel}`,
    nodeId,
    seenAt: seenAt.toISOString(),
  };
}

describe.each([
  { name: 'in-memory', create: (): LiveStreamStore => new InMemoryLiveStreamStore() },
  {
    name: 'redis',
    create: (): LiveStreamStore =>
      new RedisLiveStreamStore({ url: redis.url, logger, keyPrefix: `hearth:s${++prefixes}:` }),
  },
])('$name live stream store', ({ create }) => {
  let store: LiveStreamStore;
  afterEach(async () => {
    await store?.close();
  });

  it('claim() takes a free channel once; a second stream of it is refused until the first ends', async () => {
    store = create();
    const first = record('show');
    const second = record('show');
    expect(await store.claim(first)).toBe(true);
    expect(await store.claim(second)).toBe(false);
    expect(await store.claim(record('other'))).toBe(true);
    expect((await store.live()).map((r) => r.stream.channel).sort()).toEqual(['other', 'show']);
    const ended = await store.end(first.stream.id, new Date('2026-01-01T00:00:00Z'));
    expect(ended?.stream).toMatchObject({ state: 'ended', endedAt: '2026-01-01T00:00:00.000Z' });
    // The ended stream stays readable for players, and no longer blocks its channel.
    expect((await store.ofChannel('show'))?.stream.id).toBe(first.stream.id);
    expect(await store.claim(second)).toBe(true);
    expect((await store.ofChannel('show'))?.stream.id).toBe(second.stream.id);
    expect((await store.live()).map((r) => r.stream.id)).not.toContain(first.stream.id);
  });

  it('concurrent claims of one channel: exactly one wins', async () => {
    store = create();
    const results = await Promise.all(Array.from({ length: 8 }, () => store.claim(record('race'))));
    expect(results.filter(Boolean)).toHaveLength(1);
  });

  it('update() changes a stream that has not ended; an ended one stays as it ended', async () => {
    store = create();
    const live = record('tv');
    await store.claim(live);
    const renditions = [{ name: '720p30', width: 1280, height: 720, fps: 30, bitrateKbps: 2128 }];
    expect(await store.update(live.stream.id, { renditions })).toMatchObject({
      stream: { state: 'starting', renditions },
    });
    expect((await store.update(live.stream.id, { state: 'live' }))?.stream.state).toBe('live');
    await store.end(live.stream.id, new Date());
    expect(await store.update(live.stream.id, { state: 'live' })).toBeUndefined();
    expect(await store.end(live.stream.id, new Date())).toBeUndefined();
    expect(await store.update(randomUUID(), { state: 'live' })).toBeUndefined();
  });

  it('end() with seenBefore spares a stream its node vouched for since', async () => {
    store = create();
    const cut = new Date();
    const vouched = record('kept', 'ingest-a', new Date(cut.getTime() - 5000));
    const stale = record('gone', 'ingest-a', new Date(cut.getTime() - 5000));
    await store.claim(vouched);
    await store.claim(stale);
    await store.update(vouched.stream.id, { seenAt: new Date(cut.getTime() + 1).toISOString() });
    expect(await store.end(vouched.stream.id, new Date(), cut)).toBeUndefined();
    expect((await store.end(stale.stream.id, new Date(), cut))?.stream.state).toBe('ended');
    expect((await store.live()).map((r) => r.stream.id)).toEqual([vouched.stream.id]);
  });

  it('addViewers() counts per channel and never below 0', async () => {
    store = create();
    expect(await store.addViewers('a', 1)).toBe(1);
    expect(await store.addViewers('a', 1)).toBe(2);
    expect(await store.addViewers('b', 1)).toBe(1);
    expect(await store.addViewers('a', -1)).toBe(1);
    expect(await store.addViewers('b', -2)).toBe(0);
    expect(await store.viewers(['a', 'b', 'c'])).toEqual(
      new Map([
        ['a', 1],
        ['b', 0],
        ['c', 0],
      ]),
    );
  });
});

describe('the Redis live stream store across api instances', () => {
  it('two stores on one Redis share claims, ends and viewers', async () => {
    const prefix = `hearth:shared${++prefixes}:`;
    const one = new RedisLiveStreamStore({ url: redis.url, logger, keyPrefix: prefix });
    const two = new RedisLiveStreamStore({ url: redis.url, logger, keyPrefix: prefix });
    try {
      const stream = record('shared');
      expect(await one.claim(stream)).toBe(true);
      expect(await two.claim(record('shared'))).toBe(false);
      expect((await two.live()).map((r) => r.stream.id)).toEqual([stream.stream.id]);
      await one.addViewers('shared', 1);
      await two.addViewers('shared', 1);
      expect((await one.viewers(['shared'])).get('shared')).toBe(2);
      await two.end(stream.stream.id, new Date());
      expect((await one.ofChannel('shared'))?.stream.state).toBe('ended');
    } finally {
      await one.close();
      await two.close();
    }
  });
});
