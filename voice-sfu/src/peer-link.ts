import type { types } from 'mediasoup';
import {
  linkQualityOf,
  type ClientStats,
  type LinkQuality,
  type ParticipantLink,
} from '@hearth/protocol';

// RTCP's fraction lost is out of 256 (RFC 3550 6.4.1).
const FRACTION_LOST_SCALE = 256;
// Reports in a row that must find a link better before its level rises: one good window after a
// bad one is not enough to call it recovered, while a worse one shows at once.
const REPORTS_TO_IMPROVE = 2;
// The longest round trip the protocol carries.
const MAX_RTT_MS = 60_000;

/** What mediasoup saw of a peer's uplink: the loss and round trip of its microphone. */
export interface UplinkStats {
  /** Loss of the peer's audio on its way to the SFU, in percent, if it sends audio. */
  readonly lossPercent: number | null;
  /** Round trip mediasoup measured to the peer, in milliseconds, if known. */
  readonly rttMs: number | null;
}

/** What a peer's last report and mediasoup's view of it make of its link. */
export interface LinkFigures {
  /** Audio lost on the way in or out, whichever is worse, in percent. */
  readonly lossPercent: number;
  /** Inbound audio jitter, in milliseconds. */
  readonly jitterMs: number;
  /** Round trip to the SFU, in milliseconds, if known. */
  readonly rttMs: number | null;
  /** Estimated one-way voice latency: half the round trip plus the jitter buffer, in milliseconds. */
  readonly latencyMs: number;
  /** Share of inbound samples concealed, 0..1. */
  readonly concealedRatio: number;
  /** Audio the peer sends, in kbit/s. */
  readonly outboundKbps: number;
  /** When it was measured, epoch milliseconds. */
  readonly measuredAt: number;
}

/**
 * A peer's link as the node judges it, report after report: its figures, and its quality level,
 * which falls as soon as a report is worse and rises only after two better ones in a row.
 */
export class PeerLink {
  #quality: LinkQuality | undefined;
  #figures: LinkFigures | undefined;
  #betterReports = 0;

  /** The current level; undefined until the first report. */
  get quality(): LinkQuality | undefined {
    return this.#quality;
  }

  /** The figures of the last report; undefined until the first. */
  get figures(): LinkFigures | undefined {
    return this.#figures;
  }

  /** Folds in a report and mediasoup's view; returns true when the quality level changed. */
  update(report: ClientStats, uplink: UplinkStats, now: number): boolean {
    const expected = report.packetsReceived + report.packetsLost;
    const inboundLoss = expected > 0 ? (100 * report.packetsLost) / expected : 0;
    const rttMs = report.rttMs ?? uplink.rttMs;
    this.#figures = {
      lossPercent: Math.max(inboundLoss, uplink.lossPercent ?? 0),
      jitterMs: report.jitterMs,
      rttMs,
      latencyMs: (rttMs ?? 0) / 2 + report.jitterBufferDelayMs,
      concealedRatio: report.concealedRatio,
      outboundKbps: report.outboundKbps,
      measuredAt: now,
    };
    const measured = linkQualityOf(this.#figures);
    const previous = this.#quality;
    if (previous === undefined || rankOf(measured) > rankOf(previous)) {
      this.#quality = measured;
      this.#betterReports = 0;
    } else if (rankOf(measured) < rankOf(previous)) {
      this.#betterReports += 1;
      if (this.#betterReports >= REPORTS_TO_IMPROVE) {
        this.#quality = measured;
        this.#betterReports = 0;
      }
    } else {
      this.#betterReports = 0;
    }
    return this.#quality !== previous;
  }

  /** The link as moderators read it, with the participant's id and name. */
  describe(peerId: string, displayName: string): ParticipantLink | undefined {
    const figures = this.#figures;
    if (!figures || !this.#quality) return undefined;
    return {
      peerId,
      displayName,
      quality: this.#quality,
      lossPercent: Math.min(100, figures.lossPercent),
      concealedPercent: 100 * figures.concealedRatio,
      jitterMs: figures.jitterMs,
      rttMs: figures.rttMs === null ? null : Math.min(MAX_RTT_MS, figures.rttMs),
      outboundKbps: figures.outboundKbps,
      measuredAt: new Date(figures.measuredAt).toISOString(),
    };
  }
}

/** mediasoup's view of a peer's uplink, from the receive statistics of its microphone. */
export async function uplinkOf(microphone: types.Producer | undefined): Promise<UplinkStats> {
  if (!microphone || microphone.closed) return { lossPercent: null, rttMs: null };
  const inbound = (await microphone.getStats()).find((stat) => stat.type === 'inbound-rtp');
  if (!inbound) return { lossPercent: null, rttMs: null };
  return {
    lossPercent: (100 * inbound.fractionLost) / FRACTION_LOST_SCALE,
    rttMs: inbound.roundTripTime ?? null,
  };
}

function rankOf(quality: LinkQuality): number {
  return quality === 'good' ? 0 : quality === 'fair' ? 1 : 2;
}
