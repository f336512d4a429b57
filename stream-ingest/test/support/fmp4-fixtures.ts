import { spawn } from 'node:child_process';
import { buildFfmpegArgs, toArgv } from '../../src/ffmpeg-args';
import { FragmentedMp4Reader, type Mp4Fragment } from '../../src/fmp4-reader';
import type { Rendition } from '../../src/hls-types';
import { selectLadder } from '../../src/ladder';

/** One rung's fragmented MP4 as the ladder's ffmpeg writes it. */
export interface RungOutput {
  /** The rendition. */
  readonly rendition: Rendition;
  /** Every byte ffmpeg wrote to the rung's pipe. */
  readonly bytes: Buffer;
  /** The init segment the reader found. */
  readonly init: Buffer;
  /** The fragments the reader found, in order. */
  readonly fragments: Mp4Fragment[];
}

/**
 * Runs the ladder's real ffmpeg arguments on `input` (not paced) and reads each rung's output
 * pipe with a FragmentedMp4Reader.
 */
export async function encodeLadder(
  input: string,
  source: { width: number; height: number; fps: number },
  segmentSeconds = 2,
): Promise<RungOutput[]> {
  const renditions = selectLadder(source);
  const argv = toArgv(
    buildFfmpegArgs({ inputUrl: input, renditions, segmentSeconds, preset: 'ultrafast' }),
  ).filter((arg) => arg !== '-re');
  const encoder = spawn('/usr/bin/ffmpeg', argv, {
    stdio: ['ignore', 'ignore', 'ignore', ...renditions.map(() => 'pipe' as const)],
  });
  const outputs = renditions.map((rendition, index) => {
    const chunks: Buffer[] = [];
    const fragments: Mp4Fragment[] = [];
    let init: Buffer = Buffer.alloc(0);
    const reader = new FragmentedMp4Reader((error) => {
      throw error;
    });
    reader.events.on('init', (bytes) => (init = bytes));
    reader.events.on('fragment', (fragment) => fragments.push(fragment));
    reader.events.on('error', (error) => {
      throw error;
    });
    const pipe = encoder.stdio[3 + index]!;
    pipe.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      reader.push(chunk);
    });
    return { rendition, chunks, fragments, init: () => init };
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    encoder.once('error', reject);
    encoder.once('close', resolve);
  });
  if (code !== 0) throw new Error(`ffmpeg exited with ${code}`);
  return outputs.map((output) => ({
    rendition: output.rendition,
    bytes: Buffer.concat(output.chunks),
    init: output.init(),
    fragments: output.fragments,
  }));
}
