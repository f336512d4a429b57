import { z } from 'zod';
import { channelNameSchema, linkQualitySchema, type LinkQuality } from './common';

/**
 * What a client measured of its own connection over the last few seconds (WebRTC `getStats`),
 * as it reports it over signaling: the audio it receives, its round trip to the SFU, and what it
 * sends. Every figure is bounded; a client that measured nothing yet reports zeros and no RTT.
 */
export const clientStatsSchema = z
  .object({
    /** The window the figures cover, in milliseconds. */
    windowMs: z.number().int().min(500).max(60_000),
    /** Inbound audio packets received in the window, over everything it hears. */
    packetsReceived: z.number().int().min(0).max(1_000_000),
    /** Inbound audio packets lost in the window. */
    packetsLost: z.number().int().min(0).max(1_000_000),
    /** Mean interarrival jitter of inbound audio, in milliseconds. */
    jitterMs: z.number().min(0).max(10_000),
    /** Mean jitter-buffer delay of inbound audio, in milliseconds. */
    jitterBufferDelayMs: z.number().min(0).max(10_000),
    /**
     * Share of inbound audio samples concealed (made up for lost or late audio), 0..1; silence
     * made up while a speaker sends nothing does not count.
     */
    concealedRatio: z.number().min(0).max(1),
    /** Round trip to the SFU on the selected candidate pair, in milliseconds, if known. */
    rttMs: z.number().min(0).max(60_000).nullable(),
    /** Audio bitrate the client sends, in kbit/s. */
    outboundKbps: z.number().min(0).max(100_000),
  })
  .strict();

/** What a client measured of its own connection over the last few seconds. */
export type ClientStats = z.infer<typeof clientStatsSchema>;

/** One participant's link as the voice node last judged it, from its reports and mediasoup's. */
export const participantLinkSchema = z.object({
  peerId: z.string().max(64),
  displayName: z.string().max(100),
  quality: linkQualitySchema,
  /** Audio lost on the way in or out, whichever is worse, in percent. */
  lossPercent: z.number().min(0).max(100),
  /** Inbound audio the participant's browser made up for lost or late packets, in percent. */
  concealedPercent: z.number().min(0).max(100),
  /** Inbound audio jitter, in milliseconds. */
  jitterMs: z.number().min(0).max(10_000),
  /** Round trip to the SFU, in milliseconds, if known. */
  rttMs: z.number().min(0).max(60_000).nullable(),
  /** Audio the participant sends, in kbit/s. */
  outboundKbps: z.number().min(0).max(100_000),
  /** When it was judged, ISO 8601. */
  measuredAt: z.iso.datetime(),
});

/** Links a voice node reports per channel at most: the worst first. */
export const MAX_REPORTED_LINKS = 1000;

/** One participant's link as the voice node last judged it. */
export type ParticipantLink = z.infer<typeof participantLinkSchema>;

/** Response of `GET /api/channels/:name/links`: each participant's link, for moderators. */
export const channelLinksSchema = z.object({
  channel: channelNameSchema,
  links: z.array(participantLinkSchema),
});

/** Response of `GET /api/channels/:name/links`. */
export type ChannelLinks = z.infer<typeof channelLinksSchema>;

/** Loss, in percent, from which a link is fair, and poor. */
export const LOSS_PERCENT_THRESHOLDS = { fair: 2, poor: 10 } as const;
/**
 * Concealed audio, in percent, from which a link is fair, and poor. With NACK on the downlink a
 * listener's loss figure counts only packets never repaired, and some repairs come too late for
 * the jitter buffer: concealment is what the listener actually hears.
 */
export const CONCEALED_PERCENT_THRESHOLDS = { fair: 3, poor: 10 } as const;
/** Jitter, in milliseconds, from which a link is fair, and poor. */
export const JITTER_MS_THRESHOLDS = { fair: 30, poor: 80 } as const;
/** Round trip, in milliseconds, from which a link is fair, and poor. */
export const RTT_MS_THRESHOLDS = { fair: 300, poor: 600 } as const;

/**
 * The quality of a link from its loss, concealment, jitter and round trip: the worst of the four,
 * each against its thresholds (loss above 10 % is where Opus with in-band FEC starts to drop
 * words).
 */
export function linkQualityOf(link: {
  lossPercent: number;
  concealedRatio: number;
  jitterMs: number;
  rttMs: number | null;
}): LinkQuality {
  const rtt = link.rttMs ?? 0;
  const concealedPercent = 100 * link.concealedRatio;
  if (
    link.lossPercent >= LOSS_PERCENT_THRESHOLDS.poor ||
    concealedPercent >= CONCEALED_PERCENT_THRESHOLDS.poor ||
    link.jitterMs >= JITTER_MS_THRESHOLDS.poor ||
    rtt >= RTT_MS_THRESHOLDS.poor
  ) {
    return 'poor';
  }
  if (
    link.lossPercent >= LOSS_PERCENT_THRESHOLDS.fair ||
    concealedPercent >= CONCEALED_PERCENT_THRESHOLDS.fair ||
    link.jitterMs >= JITTER_MS_THRESHOLDS.fair ||
    rtt >= RTT_MS_THRESHOLDS.fair
  ) {
    return 'fair';
  }
  return 'good';
}

const QUALITY_RANKS: Record<LinkQuality, number> = { good: 0, fair: 1, poor: 2 };

/** Orders links worst first: by quality, then by loss. */
export function compareLinksWorstFirst(a: ParticipantLink, b: ParticipantLink): number {
  return QUALITY_RANKS[b.quality] - QUALITY_RANKS[a.quality] || b.lossPercent - a.lossPercent;
}
