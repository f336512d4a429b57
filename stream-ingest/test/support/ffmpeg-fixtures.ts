import fs from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createLogger, type Logger } from '@hearth/server-common';

const run = promisify(execFile);

/** Writes a synthetic FLV like an OBS publish: testsrc2 video (H.264) and a 440 Hz tone (AAC). */
export async function makeTestInput(
  file: string,
  video: { width: number; height: number; fps: number; seconds: number },
): Promise<void> {
  await run('/usr/bin/ffmpeg', [
    '-hide_banner',
    '-loglevel',
    'error',
    '-f',
    'lavfi',
    '-i',
    `testsrc2=size=${video.width}x${video.height}:rate=${video.fps}`,
    '-f',
    'lavfi',
    '-i',
    'sine=frequency=440:sample_rate=48000',
    '-t',
    String(video.seconds),
    '-c:v',
    'libx264',
    '-preset',
    'ultrafast',
    '-b:v',
    '2500k',
    // A 2 s GOP as OBS sends by default.
    '-g',
    String(video.fps * 2),
    '-pix_fmt',
    'yuv420p',
    '-c:a',
    'aac',
    '-b:a',
    '128k',
    '-f',
    'flv',
    '-y',
    file,
  ]);
}

/** One decoded video frame of a segment. */
export interface ProbedFrame {
  /** Presentation time in seconds. */
  readonly ptsTime: number;
  /** True for a keyframe. */
  readonly keyFrame: boolean;
}

/** Size of the first video stream and its frames, read with ffprobe. */
export async function probeSegment(
  file: string,
): Promise<{ width: number; height: number; frames: ProbedFrame[] }> {
  const { stdout } = await run('/usr/bin/ffprobe', [
    '-v',
    'error',
    '-select_streams',
    'v:0',
    '-show_entries',
    'stream=width,height:frame=pts_time,key_frame',
    '-of',
    'json',
    file,
  ]);
  const json = JSON.parse(stdout) as {
    streams: { width: number; height: number }[];
    frames: { pts_time: string; key_frame: number }[];
  };
  const stream = json.streams[0]!;
  return {
    width: stream.width,
    height: stream.height,
    frames: json.frames.map((f) => ({ ptsTime: Number(f.pts_time), keyFrame: f.key_frame === 1 })),
  };
}

/** True while a process with this pid exists. */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Polls `check` every 50 ms until it returns a value, failing after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  timeoutMs: number,
  check: () => T | undefined,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A log record captured by `memoryLogger`. */
export interface LogRecord {
  /** pino level number: 10 trace, 20 debug, 30 info, 40 warn, 50 error. */
  readonly level: number;
  /** The message text. */
  readonly msg: string;
}

/** A logger that keeps every record in memory instead of printing it. */
export function memoryLogger(): { logger: Logger; records: LogRecord[] } {
  const records: LogRecord[] = [];
  const logger = createLogger('stream-ingest-test', {
    level: 'trace',
    hooks: {
      // Records instead of writing: the test output stays readable and assertions can look.
      logMethod(args, _method, level) {
        const [first, second] = args as unknown[];
        records.push({ level, msg: typeof first === 'string' ? first : String(second) });
      },
    },
  });
  return { logger, records };
}

/** Mean volume of a file's first audio stream in dB (ffmpeg's volumedetect); -91 is silence. */
export async function meanVolumeDb(file: string): Promise<number> {
  const { stderr } = await run('/usr/bin/ffmpeg', [
    '-hide_banner',
    '-nostats',
    '-i',
    file,
    '-map',
    '0:a:0',
    '-af',
    'volumedetect',
    '-f',
    'null',
    '-',
  ]);
  const match = /mean_volume: (-?[\d.]+) dB/.exec(stderr);
  if (!match) throw new Error(`no audio in ${file}`);
  return Number(match[1]);
}

/**
 * A fragmented MP4 segment as a player reads it, in a file ffprobe can open: the init segment
 * (bytes, or a file holding them) followed by the segment file.
 */
export function withInit(init: Buffer | string, segmentFile: string): string {
  const initBytes = typeof init === 'string' ? fs.readFileSync(init) : init;
  const file = `${segmentFile}.probe.mp4`;
  fs.writeFileSync(file, Buffer.concat([initBytes, fs.readFileSync(segmentFile)]));
  return file;
}
