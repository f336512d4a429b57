import { z } from 'zod';

/** A screen share's captured size and frame rate, as the sharer's browser reports them. */
export const shareCaptureSchema = z
  .object({
    width: z.number().int().min(16).max(7680),
    height: z.number().int().min(16).max(4320),
    fps: z.number().min(1).max(120),
  })
  .strict();

/** A screen share's captured size and frame rate. */
export type ShareCapture = z.infer<typeof shareCaptureSchema>;

/** Names of the quality presets a sharer picks from, lightest first. */
export const SHARE_PRESET_IDS = [
  '720p30',
  '1080p30',
  '1080p60',
  '1440p30',
  '2160p30',
  'source',
] as const;

/** One of the quality presets a sharer picks from. */
export const sharePresetIdSchema = z.enum(SHARE_PRESET_IDS);

/** One of the quality presets a sharer picks from. */
export type SharePresetId = z.infer<typeof sharePresetIdSchema>;

/** What a quality preset captures and how fast its top layer may send. */
export interface SharePreset {
  /** Name of the preset. */
  id: SharePresetId;
  /** Name shown in the picker. */
  label: string;
  /** Captured height in pixels (the width follows at 16:9), or null for the source's own. */
  height: number | null;
  /** Captured frames per second, or null for the source's own (up to 60). */
  frameRate: number | null;
  /** Top bitrate of the full-size layer in bit/s, or null to derive it from the captured size. */
  maxBitrate: number | null;
}

/** The presets, from the lightest to the heaviest; "source" keeps the screen's own size. */
export const SHARE_PRESETS: readonly SharePreset[] = [
  { id: '720p30', label: '720p 30 fps', height: 720, frameRate: 30, maxBitrate: 2_500_000 },
  { id: '1080p30', label: '1080p 30 fps', height: 1080, frameRate: 30, maxBitrate: 4_500_000 },
  { id: '1080p60', label: '1080p 60 fps', height: 1080, frameRate: 60, maxBitrate: 6_000_000 },
  { id: '1440p30', label: '1440p 30 fps', height: 1440, frameRate: 30, maxBitrate: 9_000_000 },
  { id: '2160p30', label: '2160p 30 fps', height: 2160, frameRate: 30, maxBitrate: 16_000_000 },
  { id: 'source', label: 'Source', height: null, frameRate: null, maxBitrate: null },
];

/** The preset of a share started without a choice, and of `?share=1`. */
export const DEFAULT_SHARE_PRESET: SharePresetId = '1080p30';

/** The low simulcast layer's top bitrate: low enough to fit the weakest viewer's downlink. */
export const SHARE_LOW_LAYER_MAX_BITRATE = 600_000;

/** Tells whether a preset name is one of `SHARE_PRESET_IDS`. */
export function isSharePresetId(value: unknown): value is SharePresetId {
  return (SHARE_PRESET_IDS as readonly unknown[]).includes(value);
}

/** The preset named `id`. */
export function sharePreset(id: SharePresetId): SharePreset {
  return SHARE_PRESETS.find((preset) => preset.id === id)!;
}

/** The presets a channel capped at `cap` allows: `cap` and every lighter one. */
export function sharePresetsUpTo(cap: SharePresetId): SharePreset[] {
  return SHARE_PRESETS.slice(0, SHARE_PRESET_IDS.indexOf(cap) + 1);
}

// Width of a 16:9 picture `height` pixels tall.
function widthOf(height: number): number {
  return Math.round((height * 16) / 9);
}

/**
 * Top bitrate of a capture of `width`x`height` at `frameRate` under `preset`: the preset's own,
 * or for "source" that of the lightest fixed preset covering as many pixels per second (the
 * heaviest one's beyond them all).
 */
export function topBitrateOf(
  preset: SharePreset,
  width: number,
  height: number,
  frameRate: number,
): number {
  if (preset.maxBitrate !== null) return preset.maxBitrate;
  const fixed = SHARE_PRESETS.filter((candidate) => candidate.maxBitrate !== null);
  const pixelRate = width * height * frameRate;
  const covering = fixed.find(
    (candidate) =>
      pixelRate <= widthOf(candidate.height!) * candidate.height! * candidate.frameRate!,
  );
  return (covering ?? fixed[fixed.length - 1]!).maxBitrate!;
}

/**
 * The most a share may send under a channel capped at `cap`, in bit/s, all layers together: the
 * cap's top layer ("source" sends at most as the heaviest fixed preset) plus a low layer and a
 * middle one at the low layer's rate.
 */
export function shareBitrateCap(cap: SharePresetId): number {
  const heaviest = SHARE_PRESETS.reduce((top, preset) => Math.max(top, preset.maxBitrate ?? 0), 0);
  const top = sharePreset(cap).maxBitrate ?? heaviest;
  return top + 2 * SHARE_LOW_LAYER_MAX_BITRATE;
}
