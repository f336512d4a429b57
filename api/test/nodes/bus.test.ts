import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Logger } from '@hearth/server-common';
import { InMemoryClusterBus, RedisClusterBus, type ClusterBus } from '../../src/cluster/bus';
import { startRedis, type TestRedis } from '../support/redis';
import { capturingLogger, waitUntil } from './helpers';

let redis: TestRedis;
let prefixes = 0;

beforeAll(async () => {
  redis = await startRedis();
});

afterAll(async () => {
  await redis?.stop();
});

/** Buses of two api instances of one cluster. */
interface Cluster {
  readonly a: ClusterBus;
  readonly b: ClusterBus;
  close(): Promise<void>;
}

describe.each([
  {
    name: 'in-memory',
    // One process has one in-memory bus, which all its services share.
    cluster: (logger: Logger): Cluster => {
      const bus = new InMemoryClusterBus(logger);
      return { a: bus, b: bus, close: () => bus.close() };
    },
  },
  {
    name: 'redis',
    cluster: (logger: Logger): Cluster => {
      const channelPrefix = `hearth:bus${++prefixes}:`;
      const a = new RedisClusterBus({ url: redis.url, logger, channelPrefix });
      const b = new RedisClusterBus({ url: redis.url, logger, channelPrefix });
      return {
        a,
        b,
        close: async () => {
          await a.close();
          await b.close();
        },
      };
    },
  },
])('$name bus', ({ cluster }) => {
  let current: Cluster | undefined;

  afterEach(async () => {
    await current?.close();
    current = undefined;
  });

  function start() {
    const { logger, logs } = capturingLogger();
    current = cluster(logger);
    return { ...current, logs };
  }

  it('publish() reaches subscribers on every instance, the publisher included', async () => {
    const { a, b } = start();
    const onA: unknown[] = [];
    const onB: unknown[] = [];
    await a.subscribe('placement', (message) => void onA.push(message));
    await b.subscribe('placement', (message) => void onB.push(message));
    await a.publish('placement', { type: 'nodeDown', nodeId: 'n1', channels: ['x'] });
    await waitUntil(() => onA.length === 1 && onB.length === 1, 'both deliveries');
    expect(onA).toEqual([{ type: 'nodeDown', nodeId: 'n1', channels: ['x'] }]);
    expect(onB).toEqual(onA);
  });

  it('delivers JSON copies: dates become strings, and handlers do not share objects', async () => {
    const { a, b } = start();
    const received: Array<{ at: unknown; list: number[] }> = [];
    const record = (message: unknown) => {
      const copy = message as { at: unknown; list: number[] };
      copy.list.push(99);
      received.push(copy);
    };
    await a.subscribe('t', (message) => record(message));
    await b.subscribe('t', (message) => record(message));
    await a.publish('t', { at: new Date(Date.UTC(2025, 0, 1)), list: [1] });
    await waitUntil(() => received.length === 2, 'two deliveries');
    for (const message of received) {
      expect(message).toEqual({ at: '2025-01-01T00:00:00.000Z', list: [1, 99] });
    }
  });

  it('keeps the order of one publisher', async () => {
    const { a, b } = start();
    const received: unknown[] = [];
    await b.subscribe('ordered', (message) => void received.push(message));
    for (let index = 0; index < 50; index++) await a.publish('ordered', index);
    await waitUntil(() => received.length === 50, 'fifty messages');
    expect(received).toEqual(Array.from({ length: 50 }, (_, index) => index));
  });

  it('delivers only to the topic subscribed', async () => {
    const { a, b } = start();
    const received: unknown[] = [];
    await b.subscribe('node:one', (message) => void received.push(['one', message]));
    await b.subscribe('node:two', (message) => void received.push(['two', message]));
    await a.publish('node:two', 'hello');
    await waitUntil(() => received.length === 1, 'one delivery');
    expect(received).toEqual([['two', 'hello']]);
  });

  it('the function subscribe() returns stops delivery to that handler only', async () => {
    const { a, b } = start();
    const first: unknown[] = [];
    const second: unknown[] = [];
    const unsubscribe = await b.subscribe('t', (message) => void first.push(message));
    await b.subscribe('t', (message) => void second.push(message));
    await unsubscribe();
    await unsubscribe();
    await a.publish('t', 1);
    await a.publish('t', 2);
    await waitUntil(() => second.length === 2, 'the remaining handler');
    expect(first).toEqual([]);
  });

  it('a throwing or rejecting handler is logged and spares the other handlers', async () => {
    const { a, b, logs } = start();
    const received: unknown[] = [];
    await b.subscribe('t', () => {
      throw new Error('boom');
    });
    await b.subscribe('t', async () => {
      throw new Error('async boom');
    });
    await b.subscribe('t', (message) => void received.push(message));
    await a.publish('t', 'still delivered');
    await waitUntil(() => received.length === 1, 'the healthy handler');
    await waitUntil(
      () => logs.filter((line) => line.message === 'cluster bus: a subscriber failed').length === 2,
      'two logged failures',
    );
  });

  it('refuses an invalid topic and a message that is not JSON', async () => {
    const { a } = start();
    await expect(a.publish('has space', 1)).rejects.toThrow(TypeError);
    await expect(a.subscribe('', () => undefined)).rejects.toThrow(/invalid bus topic/);
    await expect(a.publish('t', undefined)).rejects.toThrow('a bus message must be a JSON value');
    await expect(a.publish('t', { big: 1n })).rejects.toThrow(TypeError);
  });

  it('after close() publish and subscribe reject, and close() is idempotent', async () => {
    const { a } = start();
    await a.close();
    await a.close();
    await expect(a.publish('t', 1)).rejects.toThrow('the cluster bus is closed');
    await expect(a.subscribe('t', () => undefined)).rejects.toThrow('the cluster bus is closed');
  });
});

describe('RedisClusterBus', () => {
  it('drops a raw message that is not JSON, logs it, and keeps delivering', async () => {
    const { logger, logs } = capturingLogger();
    const bus = new RedisClusterBus({ url: redis.url, logger, channelPrefix: 'hearth:raw:' });
    const raw = new Redis(redis.url);
    try {
      const received: unknown[] = [];
      await bus.subscribe('t', (message) => void received.push(message));
      await raw.publish('hearth:raw:t', '{not json');
      await raw.publish('hearth:raw:t', '{"ok":true}');
      await waitUntil(() => received.length === 1, 'the valid message');
      expect(received).toEqual([{ ok: true }]);
      expect(logs.map((line) => line.message)).toContain(
        'cluster bus: dropped a message that is not JSON',
      );
    } finally {
      await raw.quit();
      await bus.close();
    }
  });

  it('uses Redis channels under "hearth:bus:" by default', async () => {
    const { logger } = capturingLogger();
    const bus = new RedisClusterBus({ url: redis.url, logger });
    const raw = new Redis(redis.url);
    try {
      await bus.subscribe('placement', () => undefined);
      expect(await raw.pubsub('CHANNELS', 'hearth:bus:*')).toEqual(['hearth:bus:placement']);
    } finally {
      await raw.quit();
      await bus.close();
    }
  });
});
