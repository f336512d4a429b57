import type { types } from 'mediasoup';

/**
 * Codecs every router offers. Opus runs with in-band FEC so a lost packet can be rebuilt from
 * the next one, and DTX so silent participants send almost nothing.
 */
export const routerMediaCodecs: types.RtpCodecCapability[] = [
  {
    kind: 'audio',
    mimeType: 'audio/opus',
    clockRate: 48000,
    channels: 2,
    parameters: { useinbandfec: 1, usedtx: 1 },
  },
];
