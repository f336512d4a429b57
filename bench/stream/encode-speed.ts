// Live input caps ffmpeg's `speed=` at 1x, which hides headroom; reading the source file without
// real-time pacing shows how much faster than real time the ingest's ladder encodes.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
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
  // Each rung's output pipe (fd 3, 4, ...) is /dev/null here; `ignore` would leave it closed.
  const sink = fs.openSync('/dev/null', 'w');
  let stderr = '';
  const started = performance.now();
  try {
    const encoder = spawn('ffmpeg', ['-t', String(SECONDS), ...argv], {
      stdio: ['ignore', 'ignore', 'pipe', ...renditions.map(() => sink)],
    });
    encoder.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk).slice(-2000)));
    const code = await new Promise<number | null>((resolve, reject) => {
      encoder.once('error', reject);
      encoder.once('exit', resolve);
    });
    if (code !== 0) {
      throw new Error(`the offline ladder encode exited with ${code}: ${stderr.trim()}`);
    }
  } finally {
    fs.closeSync(sink);
  }
  return {
    ladder: renditions.map((rendition) => rendition.name).join(' + '),
    preset,
    speed: round(SECONDS / ((performance.now() - started) / 1000), 2),
  };
}
