import { afterEach, describe, expect, it } from 'vitest';
import { fuzzSeed } from '../../stream-ingest/test/support/rtmp-fuzz';
import { startTestApi, type TestApi } from './support/server';
import { floodSignaling, killCoreWorker } from './support/voice-faults';

// Short forms of two `npm run bench:faults` scenarios, so that a regression fails CI.

let api: TestApi | undefined;

afterEach(async () => {
  await api?.close();
  api = undefined;
});

describe('10,000 malformed signaling messages from one client', () => {
  it('with the rate limit lifted, every frame is answered with an error, the attacker stays connected, and the other clients are answered with nothing stray', async () => {
    api = await startTestApi({
      voice: { signalingRatePerSecond: 10_000, signalingBurst: 10_000 },
    });
    const seed = fuzzSeed();
    const result = await floodSignaling(api, {
      messages: 10_000,
      bystanders: 3,
      seed,
      channel: 'flooded',
    });
    const context = `seed ${seed}: ${JSON.stringify(result)}`;
    expect(result.sent, context).toBe(10_000);
    expect(result.refused, context).toBe(10_000);
    expect(result.rateLimited, context).toBe(0);
    expect(result.attackerCloseCode, context).toBeNull();
    expect(result.bystanderFailures, context).toBe(0);
    expect(result.strayMessages, context).toBe(0);
    expect(result.during.count, context).toBeGreaterThan(0);
    // Requests share one process with the flood here; a second is far beyond a parse queue.
    expect(result.during.max, context).toBeLessThan(1000);
    expect(result.lateJoinOk, context).toBe(true);
  }, 60_000);

  it('with the default rate limit, the attacker is cut off with 1008 long before 10,000 frames and the other clients are answered', async () => {
    api = await startTestApi();
    const seed = fuzzSeed();
    const result = await floodSignaling(api, {
      messages: 10_000,
      bystanders: 3,
      seed,
      channel: 'flooded',
    });
    const context = `seed ${seed}: ${JSON.stringify(result)}`;
    expect(result.attackerCloseCode, context).toBe(1008);
    expect(result.sent, context).toBeLessThan(10_000);
    expect(result.rateLimited, context).toBeGreaterThanOrEqual(200);
    expect(result.bystanderFailures, context).toBe(0);
    expect(result.strayMessages, context).toBe(0);
    expect(result.during.count, context).toBeGreaterThan(0);
    expect(result.lateJoinOk, context).toBe(true);
  }, 60_000);
});

describe('a mediasoup worker killed', () => {
  it("SIGKILL of the core's worker: every client is told to reconnect and joins again within 5 s, and the pool is whole again", async () => {
    api = await startTestApi({ voice: { numWorkers: 2 } });
    const result = await killCoreWorker(api, { clients: 4, channel: 'doomed' });
    const context = JSON.stringify(result);
    expect(result.told, context).toBe(4);
    expect(result.rejoined, context).toBe(4);
    expect(result.rejoinMs.max, context).toBeLessThan(5000);
    expect(result.replacedMs, context).toBeLessThan(5000);
    expect(result.workers, context).toBe(2);
  }, 60_000);
});
