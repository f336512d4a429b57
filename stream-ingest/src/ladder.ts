import type { Rendition } from './hls-types';

/** What the ladder needs to know about the published stream. */
export interface SourceInfo {
  /** Coded width in pixels. */
  readonly width: number;
  /** Coded height in pixels. */
  readonly height: number;
  /** Frame rate, e.g. 30, 29.97 or 59.94. */
  readonly fps: number;
  /** Video bitrate of the source in kbit/s, when the publisher announced it. */
  readonly videoBitrateKbps?: number;
}

/** Options of `selectLadder`. */
export interface LadderOptions {
  /** Adds a `source` rendition whose video is copied from the publisher instead of encoded. */
  readonly passthrough?: boolean;
  /** Keeps at most this many renditions, the highest ones first. */
  readonly maxRungs?: number;
}

/** One row of the ladder table. */
interface RungSpec {
  /** Height of a 16:9 landscape rung; for other shapes, the length of the short side. */
  readonly height: number;
  /** Highest frame rate of the rung; a slower source keeps its own rate. */
  readonly fps: number;
  /** Video bitrate in kbit/s at 16:9 and the full frame rate. */
  readonly videoBitrateKbps: number;
  /** AAC bitrate in kbit/s. */
  readonly audioBitrateKbps: number;
  /** When true, the rung is only used if no higher rung was selected. */
  readonly topOnly?: boolean;
}

/** The encoding ladder, highest first; bitrates are the targets (ingest issue text). */
export const LADDER: readonly RungSpec[] = [
  // 6-8 Mbit/s for 1080p60 in the issue; 7 Mbit/s leaves room for superfast's weaker compression.
  { height: 1080, fps: 60, videoBitrateKbps: 7000, audioBitrateKbps: 160 },
  // ~4 Mbit/s for 1080p30 in the issue.
  { height: 1080, fps: 30, videoBitrateKbps: 4000, audioBitrateKbps: 160 },
  // A 720p60 source (very common for game streams) would otherwise lose its motion; the row is
  // skipped when a 1080p rung exists, so a 1080p60 source keeps the four encodes of the issue.
  { height: 720, fps: 60, videoBitrateKbps: 3500, audioBitrateKbps: 128, topOnly: true },
  // ~2 Mbit/s for 720p30 in the issue.
  { height: 720, fps: 30, videoBitrateKbps: 2000, audioBitrateKbps: 128 },
  // ~1 Mbit/s for 480p30 in the issue.
  { height: 480, fps: 30, videoBitrateKbps: 1000, audioBitrateKbps: 128 },
];

/** x264 presets the ladder uses, slowest first. */
export const PRESET_STEPS = ['veryfast', 'superfast', 'ultrafast'] as const;

/** An x264 preset the ladder may use. */
export type X264Preset = (typeof PRESET_STEPS)[number];

/**
 * VBV peak as a multiple of the target bitrate: 10 % headroom keeps the rate nearly constant, so
 * segment sizes stay predictable for players' bandwidth estimates.
 */
export const MAXRATE_FACTOR = 1.1;

/** Audio codec of every rung: AAC-LC, as produced by ffmpeg's native `aac` encoder. */
export const AUDIO_CODEC = 'mp4a.40.2';

// Frame rates within 5 % of a rung's rate count as that rate, so 59.94 and 60.0003 sources keep
// their 60 fps rung and 29.97 counts as 30.
const FPS_TOLERANCE = 1.05;

// Sources above this rate are high frame rate and may feed the 60 fps rungs.
const STANDARD_FPS = 30;

// Bits needed grow slower than the pixel rate (larger frames hold more redundancy for the encoder
// to exploit); scaling by the pixel-rate ratio to the power 0.75 is a common rule of thumb and keeps
// smaller or slower rungs from being starved.
const BITRATE_EXPONENT = 0.75;

// Bitrates are rounded to this step in kbit/s so ladders read cleanly in logs and playlists.
const BITRATE_STEP_KBPS = 50;

// H.264 levels (ITU-T H.264 Table A-1): max macroblocks per second, max frame size in
// macroblocks, and max video bitrate in kbit/s for Main (High allows 1.25 times more, Table A-2).
// Level 3.0 is the floor every HLS device supports.
const H264_LEVELS = [
  { idc: 30, maxMbps: 40_500, maxFs: 1_620, maxBrKbps: 10_000 },
  { idc: 31, maxMbps: 108_000, maxFs: 3_600, maxBrKbps: 14_000 },
  { idc: 32, maxMbps: 216_000, maxFs: 5_120, maxBrKbps: 20_000 },
  { idc: 40, maxMbps: 245_760, maxFs: 8_192, maxBrKbps: 20_000 },
  { idc: 41, maxMbps: 245_760, maxFs: 8_192, maxBrKbps: 50_000 },
  { idc: 42, maxMbps: 522_240, maxFs: 8_704, maxBrKbps: 50_000 },
  { idc: 50, maxMbps: 589_824, maxFs: 22_080, maxBrKbps: 135_000 },
  { idc: 51, maxMbps: 983_040, maxFs: 36_864, maxBrKbps: 240_000 },
  { idc: 52, maxMbps: 2_073_600, maxFs: 36_864, maxBrKbps: 240_000 },
  { idc: 60, maxMbps: 4_177_920, maxFs: 139_264, maxBrKbps: 240_000 },
  { idc: 61, maxMbps: 8_355_840, maxFs: 139_264, maxBrKbps: 480_000 },
  { idc: 62, maxMbps: 16_711_680, maxFs: 139_264, maxBrKbps: 800_000 },
] as const;

// High profile's bitrate allowance over Main (H.264 Table A-2, cpbBrNalFactor 1500 vs 1200).
const HIGH_PROFILE_BR_FACTOR = 1.25;

/** Picks the renditions for a source: never above its size or frame rate, highest first. */
export function selectLadder(source: SourceInfo, options: LadderOptions = {}): Rendition[] {
  validateSource(source);
  const { passthrough = false, maxRungs } = options;
  if (maxRungs !== undefined && (!Number.isInteger(maxRungs) || maxRungs < 1)) {
    throw new RangeError(`maxRungs must be a positive integer, got ${maxRungs}`);
  }
  const shortSide = Math.min(source.width, source.height);
  const encoded: Rendition[] = [];
  for (const spec of LADDER) {
    if (spec.height > shortSide) continue;
    if (spec.topOnly && encoded.length > 0) continue;
    // A high frame rate rung would only duplicate the frames of a standard-rate source.
    if (spec.fps > STANDARD_FPS && source.fps <= STANDARD_FPS * FPS_TOLERANCE) continue;
    encoded.push(encodedRung(source, spec, spec.height));
  }
  if (encoded.length === 0) {
    // Smaller than the lowest rung: one rung at the source's own size, shaped like the lowest row.
    const lowest = LADDER[LADDER.length - 1]!;
    encoded.push(encodedRung(source, lowest, evenFloor(shortSide)));
  }
  const renditions = passthrough ? [sourceRendition(source, encoded[0]!), ...encoded] : encoded;
  return maxRungs === undefined ? renditions : renditions.slice(0, maxRungs);
}

/**
 * x264 preset for a ladder on a host with `cores` CPU cores: veryfast unless a 1080p60-class rung
 * is encoded, then superfast, or ultrafast on two cores or fewer.
 */
export function choosePreset(renditions: readonly Rendition[], cores: number): X264Preset {
  // Measured on the 2-core hosts (bench:stream and ENVIRONMENT.md): the 1080p30 ladder runs at
  // 1.4-1.6x with veryfast; 1080p60+1080p30+720p30+480p30 runs at 0.79x with veryfast, 0.74-1.2x
  // with superfast depending on load, and 1.47x with ultrafast. Only ultrafast is safely real
  // time there; with more cores superfast is.
  const hasHighRate1080 = renditions.some(
    (r) => !r.passthrough && Math.min(r.width, r.height) >= 1080 && r.fps > STANDARD_FPS,
  );
  if (!hasHighRate1080) return 'veryfast';
  return cores <= 2 ? 'ultrafast' : 'superfast';
}

/** What the transcoder currently encodes. */
export interface EncodingPlan {
  /** x264 preset of every encoded rung. */
  readonly preset: X264Preset;
  /** Renditions, highest first. */
  readonly renditions: readonly Rendition[];
}

/** A cheaper plan, with a sentence saying what changed. */
export interface Adaptation extends EncodingPlan {
  /** What changed, e.g. `preset veryfast -> superfast` or `dropped rung 1080p60`. */
  readonly change: string;
}

/**
 * The next cheaper plan when ffmpeg cannot keep up, or null when nothing is left to give up.
 * Order: veryfast -> superfast -> ultrafast (a quality cost on every rung), then drop the
 * costliest encoded rung while more than one remains.
 */
export function nextAdaptation(plan: EncodingPlan): Adaptation | null {
  if (plan.preset === 'veryfast') {
    return { ...plan, preset: 'superfast', change: 'preset veryfast -> superfast' };
  }
  if (plan.preset === 'superfast') {
    return { ...plan, preset: 'ultrafast', change: 'preset superfast -> ultrafast' };
  }
  // Dropping a rung comes last: viewers already on it lose their level, while a faster preset
  // only costs some quality on every level.
  const costliest = costliestRung(plan.renditions);
  const encodedCount = plan.renditions.filter((r) => !r.passthrough).length;
  if (costliest && encodedCount > 1) {
    return {
      preset: plan.preset,
      renditions: plan.renditions.filter((r) => r !== costliest),
      change: `dropped rung ${costliest.name}`,
    };
  }
  return null;
}

/** The encoded rung with the most pixels per second, the one whose removal saves the most CPU. */
export function costliestRung(renditions: readonly Rendition[]): Rendition | undefined {
  let costliest: Rendition | undefined;
  for (const r of renditions) {
    if (r.passthrough) continue;
    if (!costliest || pixelRate(r) > pixelRate(costliest)) costliest = r;
  }
  return costliest;
}

/** Peak video bitrate in kbit/s the encoder is allowed (its VBV maxrate). */
export function maxrateKbps(rendition: Rendition): number {
  return Math.round(rendition.videoBitrateKbps * MAXRATE_FACTOR);
}

/** H.264 level_idc (e.g. 31 for 3.1) a stream of this size, rate and peak bitrate needs. */
export function h264LevelIdc(width: number, height: number, fps: number, peakKbps: number): number {
  const widthMbs = Math.ceil(width / 16);
  const heightMbs = Math.ceil(height / 16);
  const frameMbs = widthMbs * heightMbs;
  const level = H264_LEVELS.find(
    (l) =>
      frameMbs <= l.maxFs &&
      // Neither side may exceed sqrt(8 * MaxFS) macroblocks (H.264 section A.3.1).
      Math.max(widthMbs, heightMbs) <= Math.sqrt(8 * l.maxFs) &&
      frameMbs * fps <= l.maxMbps &&
      peakKbps <= l.maxBrKbps * HIGH_PROFILE_BR_FACTOR,
  );
  // Beyond level 6.2 nothing fits; the highest level is the closest answer.
  return (level ?? H264_LEVELS[H264_LEVELS.length - 1]!).idc;
}

/** RFC 6381 codecs string of an H.264 High profile rung with AAC-LC audio. */
export function codecsString(levelIdc: number): string {
  // avc1.PPCCLL: profile_idc 100 (High) = 0x64, no constraint flags, then level_idc in hex.
  return `avc1.6400${levelIdc.toString(16).padStart(2, '0')},${AUDIO_CODEC}`;
}

function encodedRung(source: SourceInfo, spec: RungSpec, shortSide: number): Rendition {
  const { width, height } = scaledSize(source, shortSide);
  const fps = rungFps(source.fps, spec.fps);
  // The table's bitrates are for a 16:9 frame at the rung's full rate; other shapes and slower
  // sources get a share that follows their pixel rate.
  const nominalPixelRate = ((spec.height * 16) / 9) * spec.height * spec.fps;
  const scale = ((width * height * fps) / nominalPixelRate) ** BITRATE_EXPONENT;
  let videoBitrateKbps = roundBitrate(spec.videoBitrateKbps * scale);
  // Spending more bits than the publisher sent cannot restore detail it never had.
  if (source.videoBitrateKbps !== undefined) {
    videoBitrateKbps = Math.min(videoBitrateKbps, roundBitrate(source.videoBitrateKbps));
  }
  const peak = Math.round(videoBitrateKbps * MAXRATE_FACTOR);
  return {
    name: `${shortSide}p${Math.round(fps)}`,
    width,
    height,
    fps,
    videoBitrateKbps,
    audioBitrateKbps: spec.audioBitrateKbps,
    codecs: codecsString(h264LevelIdc(width, height, fps, peak)),
    passthrough: false,
  };
}

function sourceRendition(source: SourceInfo, top: Rendition): Rendition {
  // Without an announced bitrate, assume the publisher sends about what our top rung would.
  const videoBitrateKbps = roundBitrate(source.videoBitrateKbps ?? top.videoBitrateKbps);
  const peak = Math.round(videoBitrateKbps * MAXRATE_FACTOR);
  return {
    name: 'source',
    width: source.width,
    height: source.height,
    fps: source.fps,
    videoBitrateKbps,
    audioBitrateKbps: top.audioBitrateKbps,
    // The publisher's real profile is unknown here; High at the level its size and rate need is
    // what OBS and most encoders send, and overstating the profile only narrows device support.
    codecs: codecsString(h264LevelIdc(source.width, source.height, source.fps, peak)),
    passthrough: true,
  };
}

// Output size with the source's aspect ratio and `shortSide` on the short side, even on both
// sides because 4:2:0 chroma needs even dimensions.
function scaledSize(source: SourceInfo, shortSide: number): { width: number; height: number } {
  if (source.width >= source.height) {
    return { width: evenRound((source.width * shortSide) / source.height), height: shortSide };
  }
  return { width: shortSide, height: evenRound((source.height * shortSide) / source.width) };
}

// The source rate divided by the smallest whole number that brings it to the rung's rate, so
// frames are dropped on a regular cadence (59.94 -> 29.97, 50 -> 25, 120 -> 30, 24 stays 24).
function rungFps(sourceFps: number, maxFps: number): number {
  const divisor = Math.max(1, Math.ceil(sourceFps / (maxFps * FPS_TOLERANCE)));
  return Math.round((sourceFps / divisor) * 1000) / 1000;
}

function pixelRate(r: Rendition): number {
  return r.width * r.height * r.fps;
}

function evenRound(value: number): number {
  return Math.max(2, Math.round(value / 2) * 2);
}

function evenFloor(value: number): number {
  return Math.max(2, Math.floor(value / 2) * 2);
}

function roundBitrate(kbps: number): number {
  return Math.max(BITRATE_STEP_KBPS, Math.round(kbps / BITRATE_STEP_KBPS) * BITRATE_STEP_KBPS);
}

function validateSource(source: SourceInfo): void {
  for (const key of ['width', 'height', 'fps'] as const) {
    const value = source[key];
    if (!Number.isFinite(value) || value <= 0) {
      throw new RangeError(`source ${key} must be a positive number, got ${value}`);
    }
  }
  if (
    source.videoBitrateKbps !== undefined &&
    (!Number.isFinite(source.videoBitrateKbps) || source.videoBitrateKbps <= 0)
  ) {
    throw new RangeError(
      `source videoBitrateKbps must be a positive number, got ${source.videoBitrateKbps}`,
    );
  }
}
