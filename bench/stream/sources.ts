// The benchmark's publishers: sources encoded once into files and pushed over RTMP in real time.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const cacheDir = path.join(
  process.env.HEARTH_CACHE_DIR ??
    path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'hearth'),
  'bench-sources',
);

/** A source file ready to push. */
export interface Source {
  /** Path of the FLV file. */
  file: string;
  /** Size and frame rate, e.g. `1280x720@30`. */
  label: string;
  /** Seconds between key frames. */
  keyframeSeconds: number;
}

/** What a source looks like. */
export interface SourceSpec {
  /** Cache file name, without extension; a different encoding needs a different name. */
  name: string;
  /** `<width>x<height>`. */
  size: string;
  /** Frames per second. */
  fps: number;
  /** Length in seconds. */
  seconds: number;
  /** Burn the clock strip the benchmark player reads into the top left corner. */
  clock: boolean;
  /** Seconds between key frames. */
  keyframeSeconds: number;
}

// Encoded once, not in real time, and pushed later with `-re -c copy`: the publisher costs almost
// no CPU and the machine's two cores go to what is measured. The clock strip holds the stream
// time in centiseconds, bit i in block i.
/** Encodes a source into the cache once and returns it. */
export async function ensureSource(spec: SourceSpec): Promise<Source> {
  const { name, size, fps, seconds, clock, keyframeSeconds } = spec;
  fs.mkdirSync(cacheDir, { recursive: true });
  const file = path.join(cacheDir, `${name}.flv`);
  if (!fs.existsSync(file)) {
    console.log(`preparing source ${name} (once) ...`);
    const video = `testsrc2=size=${size}:rate=${fps}`;
    const strip =
      'color=black:size=640x40:rate=' +
      `${fps},format=gray,geq=lum='if(mod(floor(floor(T*100)/pow(2\\,floor(X/40)))\\,2)\\,255\\,0)'`;
    const filter = clock
      ? [
          '-f',
          'lavfi',
          '-i',
          strip,
          '-filter_complex',
          '[0:v][2:v]overlay=0:0:shortest=1,format=yuv420p[v]',
          '-map',
          '[v]',
          '-map',
          '1:a',
        ]
      : ['-pix_fmt', 'yuv420p'];
    const gop = String(Math.round(fps * keyframeSeconds));
    const temp = `${file}.tmp`;
    await run(
      'ffmpeg',
      [
        '-hide_banner',
        '-loglevel',
        'error',
        '-y',
        '-f',
        'lavfi',
        '-i',
        video,
        '-f',
        'lavfi',
        '-i',
        'sine=frequency=440:sample_rate=48000',
        ...filter,
        '-t',
        String(seconds),
        '-c:v',
        'libx264',
        '-preset',
        'ultrafast',
        '-b:v',
        fps > 30 ? '8000k' : '3000k',
        '-g',
        gop,
        '-keyint_min',
        gop,
        '-sc_threshold',
        '0',
        '-c:a',
        'aac',
        '-b:a',
        '160k',
        '-ar',
        '48000',
        '-f',
        'flv',
        temp,
      ],
      { maxBuffer: 16 * 1024 * 1024 },
    );
    fs.renameSync(temp, file);
  }
  return { file, label: `${size}@${fps}`, keyframeSeconds };
}

/** Pushes a source to an RTMP URL in real time, as OBS would send it. */
export function pushSource(source: Source, url: string): ChildProcess {
  return spawn(
    'ffmpeg',
    [
      '-hide_banner',
      '-loglevel',
      'error',
      '-re',
      '-i',
      source.file,
      '-c',
      'copy',
      '-f',
      'flv',
      url,
    ],
    { stdio: 'ignore' },
  );
}

/** Stops a publisher (or any child) with SIGINT and waits for it to exit. */
export async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGINT');
  await exited;
}
