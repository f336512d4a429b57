import type { types } from 'mediasoup';

/**
 * Codecs every router offers. Opus runs with in-band FEC so a lost packet can be rebuilt from
 * the next one, and DTX so silent participants send almost nothing. Screen shares are VP8, the
 * codec whose simulcast every browser sends; mediasoup adds NACK, PLI/FIR and transport-cc.
 */
export const routerMediaCodecs: types.RtpCodecCapability[] = [
  {
    kind: 'audio',
    mimeType: 'audio/opus',
    clockRate: 48000,
    channels: 2,
    parameters: { useinbandfec: 1, usedtx: 1 },
  },
  { kind: 'video', mimeType: 'video/VP8', clockRate: 90000 },
];
