/** What one ffmpeg progress line (`frame= ... fps= ... time= ... speed=1.23x`) reports. */
export interface FfmpegProgress {
  /** Frames output so far (of the first video output). */
  readonly frame: number;
  /** Frames per second ffmpeg is currently producing. */
  readonly fps: number;
  /** Output position in seconds; null while ffmpeg has no timestamp yet. */
  readonly timeSec: number | null;
  /** ffmpeg's speed figure; null while it prints N/A. Averaged since ffmpeg started. */
  readonly speed: number | null;
}

/** How much an ffmpeg stderr line matters, from the level tag `-loglevel level+info` adds. */
export type StderrSeverity = 'progress' | 'info' | 'warning' | 'error';

const PROGRESS = /\bframe=\s*(\d+)\s+fps=\s*([\d.]+)/;
// ffmpeg 5.1 prints a huge negative time (e.g. -577014:32:22.77) before the first timestamp.
const TIME = /\btime=\s*(-?)(\d+):(\d{2}):(\d{2}(?:\.\d+)?)/;
// %4.3g formatting can switch to exponent notation for very fast runs (1.2e+03x).
const SPEED = /\bspeed=\s*(\d+(?:\.\d+)?(?:e[+-]?\d+)?)x/;
// "[info] text" or "[libx264 @ 0x55d1c5a0b880] [warning] text".
const LEVEL_TAG = /^(?:\[[^\]]* @ 0x[0-9a-f]+\] )?\[(\w+)\]/;

/** Parses an ffmpeg progress line, or returns null for any other line. */
export function parseProgressLine(line: string): FfmpegProgress | null {
  const progress = PROGRESS.exec(line);
  if (!progress) return null;
  const time = TIME.exec(line);
  const speed = SPEED.exec(line);
  let timeSec: number | null = null;
  if (time && time[1] !== '-') {
    timeSec = Number(time[2]) * 3600 + Number(time[3]) * 60 + Number(time[4]);
  }
  return {
    frame: Number(progress[1]),
    fps: Number(progress[2]),
    timeSec,
    speed: speed ? Number(speed[1]) : null,
  };
}

// What ffmpeg 5.1 prints when it lost input it cannot decode without a new key frame: its RTP
// reorder queue gave up on a packet, its VP8 depacketizer dropped a broken frame, or the decoder
// met a frame it cannot use.
const INPUT_DAMAGE =
  /RTP: missed \d+ packets|Missing packets; dropping frame|without a start chunk|Received no start marker|Discarding interframe without a prior keyframe|Error while decoding stream/;

/** Whether an ffmpeg stderr line says the input was damaged: the decoder needs a key frame. */
export function isInputDamage(line: string): boolean {
  return INPUT_DAMAGE.test(line);
}

/** Severity of an ffmpeg stderr line, so the logger can route it. */
export function stderrSeverity(line: string): StderrSeverity {
  if (PROGRESS.test(line)) return 'progress';
  switch (LEVEL_TAG.exec(line)?.[1]) {
    case 'warning':
      return 'warning';
    case 'error':
    case 'fatal':
    case 'panic':
      return 'error';
    default:
      return 'info';
  }
}

/** When ffmpeg counts as falling behind the live input. */
export interface SpeedPolicy {
  /** Speed below which ffmpeg is behind; 0.95 leaves room for measurement jitter. */
  readonly minSpeed: number;
  /** Wall time the speed is averaged over, in milliseconds. */
  readonly windowMs: number;
  /** Time after ffmpeg starts during which speed is ignored (input probing, encoder warm-up). */
  readonly warmupMs: number;
}

/** The policy: below 0.95x averaged over 10 s, after a 10 s warm-up. */
export const DEFAULT_SPEED_POLICY: SpeedPolicy = {
  minSpeed: 0.95,
  windowMs: 10_000,
  warmupMs: 10_000,
};

// Two progress lines (ffmpeg prints one every 0.5 s) are too few for a meaningful figure.
const MIN_SPAN_MS = 1_000;

/**
 * Speed over a sliding wall-clock window: output seconds advanced per wall second.
 * ffmpeg's own `speed=` is averaged since it started, so after an hour a slowdown barely moves
 * it; the difference of `time=` between samples shows the current pace.
 */
export class SpeedWindow {
  readonly #policy: SpeedPolicy;
  readonly #startedAtMs: number;
  #samples: { timeSec: number; atMs: number }[] = [];

  constructor(policy: SpeedPolicy, startedAtMs: number) {
    this.#policy = policy;
    this.#startedAtMs = startedAtMs;
  }

  /** Records the output position `timeSec` seen at wall time `atMs`; warm-up samples are skipped. */
  add(timeSec: number, atMs: number): void {
    if (atMs < this.#startedAtMs + this.#policy.warmupMs) return;
    const last = this.#samples[this.#samples.length - 1];
    if (last && (atMs <= last.atMs || timeSec < last.timeSec)) return;
    this.#samples.push({ timeSec, atMs });
    // Keep one sample at or before the window's start, so the span can reach the full window.
    const windowStart = atMs - this.#policy.windowMs;
    while (this.#samples.length > 2 && this.#samples[1]!.atMs <= windowStart) this.#samples.shift();
  }

  /** Wall milliseconds between the oldest and newest sample kept. */
  get spanMs(): number {
    const first = this.#samples[0];
    const last = this.#samples[this.#samples.length - 1];
    return first && last ? last.atMs - first.atMs : 0;
  }

  /** Current speed, or undefined until the window spans at least a second. */
  speed(): number | undefined {
    const first = this.#samples[0];
    const last = this.#samples[this.#samples.length - 1];
    if (!first || !last || this.spanMs < MIN_SPAN_MS) return undefined;
    return (last.timeSec - first.timeSec) / ((last.atMs - first.atMs) / 1000);
  }

  /** True once a full window after the warm-up averages below the policy's minimum speed. */
  isBehind(): boolean {
    const speed = this.speed();
    return (
      speed !== undefined && this.spanMs >= this.#policy.windowMs && speed < this.#policy.minSpeed
    );
  }
}
