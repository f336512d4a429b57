import { spawn, type ChildProcess } from 'node:child_process';

/** How the test publisher encodes, mirroring OBS's recommended streaming settings. */
export interface ObsLikeOptions {
  /** `rtmp://host:port/app/<stream key>`. */
  url: string;
  /** Seconds of content to send. */
  seconds: number;
  width?: number;
  height?: number;
  fps?: number;
  /** Burns the sender's wall clock into the picture (for latency measurements). */
  burnClock?: boolean;
}

/**
 * Publishes a synthetic stream over RTMP the way OBS does: x264 with a keyframe every 2 s,
 * CBR video, AAC at 48 kHz, FLV over RTMP, sent in real time.
 */
export function publishLikeObs(options: ObsLikeOptions): ChildProcess {
  const width = options.width ?? 1280;
  const height = options.height ?? 720;
  const fps = options.fps ?? 30;
  const video = `testsrc2=size=${width}x${height}:rate=${fps}`;
  const args = [
    '-hide_banner',
    '-loglevel',
    'error',
    '-re',
    '-f',
    'lavfi',
    '-i',
    options.burnClock ? `${video},drawtext=text='%{localtime\\:%s}':x=10:y=10:fontsize=48` : video,
    '-f',
    'lavfi',
    '-i',
    'sine=frequency=440:sample_rate=48000',
    '-t',
    String(options.seconds),
    '-c:v',
    'libx264',
    '-preset',
    'veryfast',
    '-tune',
    'zerolatency',
    '-b:v',
    '2500k',
    '-maxrate',
    '2500k',
    '-bufsize',
    '5000k',
    '-pix_fmt',
    'yuv420p',
    '-g',
    String(fps * 2),
    '-keyint_min',
    String(fps * 2),
    '-c:a',
    'aac',
    '-b:a',
    '160k',
    '-ar',
    '48000',
    '-f',
    'flv',
    options.url,
  ];
  return spawn('ffmpeg', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Resolves with the exit code once the process ends. */
export function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}
