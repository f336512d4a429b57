import type { ClientStats } from '@hearth/protocol';

/** Running totals read from the transports' `getStats()` at one moment. */
export interface StatsSample {
  /** When it was read, in milliseconds (`performance.now()`). */
  readonly at: number;
  /** Inbound audio packets received, over every stream heard. */
  readonly packetsReceived: number;
  /** Inbound audio packets lost. */
  readonly packetsLost: number;
  /** Inbound audio jitter, mean over the streams, in seconds. */
  readonly jitterSeconds: number;
  /** Time samples spent in the jitter buffer, summed, in seconds. */
  readonly jitterBufferDelaySeconds: number;
  /** Samples that left the jitter buffer. */
  readonly jitterBufferEmitted: number;
  /** Samples made up for lost or late audio, except silence made up while nothing was sent. */
  readonly concealedSamples: number;
  /** Samples received. */
  readonly totalSamples: number;
  /** Round trip on the selected candidate pair, in seconds, if known. */
  readonly rttSeconds: number | null;
  /** Audio bytes sent. */
  readonly bytesSent: number;
}

/** Totals of the given stats reports: the receive transport's and the send transport's. */
export function sampleOf(reports: readonly RTCStatsReport[], at: number): StatsSample {
  let packetsReceived = 0;
  let packetsLost = 0;
  let jitterSum = 0;
  let streams = 0;
  let jitterBufferDelaySeconds = 0;
  let jitterBufferEmitted = 0;
  let concealedSamples = 0;
  let totalSamples = 0;
  let rttSeconds: number | null = null;
  let bytesSent = 0;
  for (const report of reports) {
    report.forEach((stat: RTCStats) => {
      if (isAudio(stat, 'inbound-rtp')) {
        const inbound = stat as RTCInboundRtpStreamStats;
        packetsReceived += inbound.packetsReceived ?? 0;
        packetsLost += Math.max(0, inbound.packetsLost ?? 0);
        jitterSum += inbound.jitter ?? 0;
        streams += 1;
        jitterBufferDelaySeconds += inbound.jitterBufferDelay ?? 0;
        jitterBufferEmitted += inbound.jitterBufferEmittedCount ?? 0;
        // A muted or paused speaker sends nothing, and the silence made up meanwhile is not
        // a fault of the link.
        concealedSamples += Math.max(
          0,
          (inbound.concealedSamples ?? 0) - (inbound.silentConcealedSamples ?? 0),
        );
        totalSamples += inbound.totalSamplesReceived ?? 0;
      } else if (isAudio(stat, 'outbound-rtp')) {
        bytesSent += (stat as RTCOutboundRtpStreamStats).bytesSent ?? 0;
      } else if (stat.type === 'candidate-pair') {
        const pair = stat as RTCIceCandidatePairStats;
        if (pair.nominated && pair.state === 'succeeded' && pair.currentRoundTripTime != null) {
          rttSeconds = Math.max(rttSeconds ?? 0, pair.currentRoundTripTime);
        }
      }
    });
  }
  return {
    at,
    packetsReceived,
    packetsLost,
    jitterSeconds: streams === 0 ? 0 : jitterSum / streams,
    jitterBufferDelaySeconds,
    jitterBufferEmitted,
    concealedSamples,
    totalSamples,
    rttSeconds,
    bytesSent,
  };
}

/**
 * What the client reports for the window between two samples: the differences of the totals
 * (a counter that went back, as when a stream ends, counts as zero), and the current jitter and
 * round trip. Every figure stays within what the protocol accepts.
 */
export function clientStatsBetween(previous: StatsSample, current: StatsSample): ClientStats {
  const windowMs = Math.min(60_000, Math.max(500, Math.round(current.at - previous.at)));
  const delta = (key: keyof Omit<StatsSample, 'rttSeconds'>) =>
    Math.max(0, current[key] - previous[key]);
  const emitted = delta('jitterBufferEmitted');
  const samples = delta('totalSamples');
  return {
    windowMs,
    packetsReceived: Math.min(1_000_000, Math.round(delta('packetsReceived'))),
    packetsLost: Math.min(1_000_000, Math.round(delta('packetsLost'))),
    jitterMs: Math.min(10_000, current.jitterSeconds * 1000),
    jitterBufferDelayMs:
      emitted === 0 ? 0 : Math.min(10_000, (1000 * delta('jitterBufferDelaySeconds')) / emitted),
    concealedRatio: samples === 0 ? 0 : Math.min(1, delta('concealedSamples') / samples),
    rttMs: current.rttSeconds === null ? null : Math.min(60_000, current.rttSeconds * 1000),
    outboundKbps: Math.min(100_000, (8 * delta('bytesSent')) / windowMs),
  };
}

function isAudio(stat: RTCStats, type: 'inbound-rtp' | 'outbound-rtp'): boolean {
  return stat.type === type && (stat as RTCInboundRtpStreamStats).kind === 'audio';
}
