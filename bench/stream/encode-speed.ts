// Live input caps ffmpeg's `speed=` at 1x, which hides headroom; reading the source file without
// real-time pacing shows how much faster than real time the ingest's ladder encodes.
import { spawn } from 'node:child_process';
import os from 'node:os';
import { buildFfmpegArgs, choosePreset, selectLadder, toArgv } from '@hearth/stream-ingest';
import { round } from '../stats';
import type { Source } from './sources';

// Seconds of the source encoded.
const SECONDS = 20;

/** Encode speed of the ingest's own ladder argv on a source file read as fast as possible. */
export interface OfflineSpeed {
  /** The rungs, e.g. `720p30 + 480p30`. */
  ladder: string;
  /** The x264 preset the ingest picks for that ladder on this machine. */
  preset: string;
  /** Seconds of content per second of encoding. */
  speed: number;
}

/** Encodes 20 s of `source` with the ingest's ladder for its size, unpaced, and times it. */
export async function measureOfflineSpeed(
  source: Source,
  width: number,
  height: number,
  fps: number,
): Promise<OfflineSpeed> {
  const renditions = selectLadder({ width, height, fps });
  const preset = choosePreset(renditions, os.availableParallelism());
  const argv = toArgv(
    buildFfmpegArgs({ inputUrl: source.file, renditions, segmentSeconds: 2, preset }),
  ).filter((arg) => arg !== '-re');
  const started = performance.now();
  // Each rung's output pipe is /dev/null here.
  const encoder = spawn('ffmpeg', ['-t', String(SECONDS), ...argv], {
    stdio: ['ignore', 'ignore', 'ignore', ...renditions.map(() => 'ignore' as const)],
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    encoder.once('error', reject);
    encoder.once('exit', resolve);
  });
  if (code !== 0) throw new Error(`the offline ladder encode exited with ${code}`);
  return {
    ladder: renditions.map((rendition) => rendition.name).join(' + '),
    preset,
    speed: round(SECONDS / ((performance.now() - started) / 1000), 2),
  };
}
