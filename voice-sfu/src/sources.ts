import type { types } from 'mediasoup';
import {
  mediaSourceSchema,
  shareBitrateCap,
  sharePreset,
  type MediaSource,
  type RtpParameters,
  type SharePresetId,
} from '@hearth/protocol';
import { AppError } from '@hearth/server-common';

/**
 * What a producer sends, from its appData: every producer is opened with its source, and one
 * without (older peers) is a microphone when audio and a screen share when video.
 */
export function sourceOf(producer: types.Producer): MediaSource {
  const parsed = mediaSourceSchema.safeParse(producer.appData.source);
  if (parsed.success) return parsed.data;
  return producer.kind === 'video' ? 'screen' : 'microphone';
}

/** Bitrate assumed for a share encoding that names none, in bit/s. */
export const DEFAULT_SHARE_ENCODING_BITRATE = 3_000_000;

/** Headroom for the audio a sharer also sends (microphone and shared audio), in bit/s. */
const AUDIO_HEADROOM_BITRATE = 300_000;

/**
 * The incoming bitrate a sharer's send transport must allow: its layers' top bitrates plus audio,
 * so bandwidth estimation never clamps a share below what it was configured to send.
 */
export function shareIncomingBitrate(rtpParameters: types.RtpParameters): number {
  const encodings = rtpParameters.encodings ?? [{}];
  const layers = encodings.reduce(
    (sum, encoding) => sum + (encoding.maxBitrate ?? DEFAULT_SHARE_ENCODING_BITRATE),
    0,
  );
  return layers + AUDIO_HEADROOM_BITRATE;
}

/**
 * Refuses a share whose layers together may send more than a channel capped at `cap` allows,
 * as `forbidden` naming the cap.
 */
export function checkShareBitrate(rtpParameters: RtpParameters, cap: SharePresetId): void {
  const declared = (rtpParameters.encodings ?? [{}]).reduce(
    (sum, encoding) => sum + (encoding.maxBitrate ?? DEFAULT_SHARE_ENCODING_BITRATE),
    0,
  );
  const allowed = shareBitrateCap(cap);
  if (declared > allowed) {
    throw new AppError(
      'forbidden',
      `this channel allows screen shares up to ${sharePreset(cap).label} ` +
        `(${allowed / 1e6} Mbit/s for all layers); pick a lighter preset`,
    );
  }
}
