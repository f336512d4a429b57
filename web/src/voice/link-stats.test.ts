import { clientStatsSchema } from '@hearth/protocol';
import { describe, expect, it } from 'vitest';
import { clientStatsBetween, sampleOf, type StatsSample } from './link-stats';

// A stats report as Chromium gives one: a map of stats by id.
function report(stats: Array<Record<string, unknown>>): RTCStatsReport {
  return new Map(stats.map((stat, index) => [String(index), stat])) as unknown as RTCStatsReport;
}

const inbound = (packetsReceived: number, packetsLost: number, extra = {}) => ({
  type: 'inbound-rtp',
  kind: 'audio',
  packetsReceived,
  packetsLost,
  jitter: 0.01,
  jitterBufferDelay: 0,
  jitterBufferEmittedCount: 0,
  concealedSamples: 0,
  totalSamplesReceived: 0,
  ...extra,
});

describe('link statistics of the client', () => {
  it('sums the audio it hears, over every stream, and reads the round trip of the selected pair only', () => {
    const sample = sampleOf(
      [
        report([
          inbound(100, 5, { jitter: 0.01, concealedSamples: 900, silentConcealedSamples: 700 }),
          inbound(50, 1, { jitter: 0.03, concealedSamples: 30 }),
          { type: 'inbound-rtp', kind: 'video', packetsReceived: 9999, packetsLost: 99 },
          { type: 'candidate-pair', nominated: false, state: 'succeeded', currentRoundTripTime: 9 },
          {
            type: 'candidate-pair',
            nominated: true,
            state: 'succeeded',
            currentRoundTripTime: 0.08,
          },
        ]),
        report([
          { type: 'outbound-rtp', kind: 'audio', bytesSent: 4000 },
          { type: 'outbound-rtp', kind: 'video', bytesSent: 1e9 },
        ]),
      ],
      1000,
    );
    expect(sample).toMatchObject({
      packetsReceived: 150,
      packetsLost: 6,
      jitterSeconds: 0.02,
      concealedSamples: 230,
      rttSeconds: 0.08,
      bytesSent: 4000,
    });
  });

  it('reports the window between two samples within the protocol bounds', () => {
    const before: StatsSample = {
      at: 0,
      packetsReceived: 1000,
      packetsLost: 10,
      jitterSeconds: 0.01,
      jitterBufferDelaySeconds: 10,
      jitterBufferEmitted: 100_000,
      concealedSamples: 500,
      totalSamples: 100_000,
      rttSeconds: 0.05,
      bytesSent: 100_000,
    };
    const after: StatsSample = {
      ...before,
      at: 5000,
      packetsReceived: 1225,
      packetsLost: 35,
      jitterSeconds: 0.025,
      jitterBufferDelaySeconds: 10 + 0.06 * 240_000,
      jitterBufferEmitted: 340_000,
      concealedSamples: 500 + 24_000,
      totalSamples: 340_000,
      rttSeconds: 0.12,
      bytesSent: 120_000,
    };
    const stats = clientStatsBetween(before, after);
    expect(stats).toEqual({
      windowMs: 5000,
      packetsReceived: 225,
      packetsLost: 25,
      jitterMs: 25,
      jitterBufferDelayMs: 60,
      concealedRatio: 0.1,
      rttMs: 120,
      outboundKbps: 32,
    });
    expect(clientStatsSchema.safeParse(stats).success).toBe(true);

    // A stream that ended takes its counters with it: nothing goes negative.
    const shrunk = clientStatsBetween(after, { ...before, at: 10_000, rttSeconds: null });
    expect(shrunk).toMatchObject({ packetsReceived: 0, packetsLost: 0, rttMs: null });
    expect(clientStatsSchema.safeParse(shrunk).success).toBe(true);
  });
});
