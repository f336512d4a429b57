// `npm run bench:stream`: glass-to-glass latency, publish to first playable segment on the edge,
// ladder encode speed and segment upload times, for Hearth and, side by side, nginx-rtmp.
// Prints the figures and writes them to bench/results/stream.json and stream.md.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { AddressInfo } from 'node:net';
import type { Browser } from 'playwright-core';
import { NginxProcess, freePort, startNginxEdge } from '@hearth/cdn-config';
import {
  buildFfmpegArgs,
  choosePreset,
  ingestConfig,
  selectLadder,
  toArgv,
} from '@hearth/stream-ingest';
import { startTestApi } from '../api/test/support/server';
import { launchChromium } from '../e2e/support/browser';
import { eventually } from '../e2e/support/wait';
import { TEST_BUCKET, TestS3Server } from '../stream-ingest/test/support/s3rver';
import { percentile, round } from './stats';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '..');
const cacheDir = path.join(
  process.env.HEARTH_CACHE_DIR ??
    path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'hearth'),
  'bench-sources',
);
const quick = process.argv.includes('--quick');
// Seconds of playback whose frames are timed, after the player has settled.
const MEASURE_SECONDS = quick ? 10 : 25;
const SETTLE_SECONDS = 6;
const PUSH_SECONDS = 70;

interface Source {
  file: string;
  label: string;
}

// The sources are encoded once (not in real time) and then pushed with `-re -c copy`, so the
// publisher costs almost no CPU and the machine's two cores go to what is measured. The 720p30
// source carries the clock strip the player decodes.
async function ensureSource(
  name: string,
  size: string,
  fps: number,
  seconds: number,
  clock: boolean,
): Promise<Source> {
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
        String(fps * 2),
        '-keyint_min',
        String(fps * 2),
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
  return { file, label: `${size}@${fps}` };
}

function pushSource(source: Source, url: string): ChildProcess {
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
    {
      stdio: 'ignore',
    },
  );
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGINT');
  await exited;
}

// Serves the benchmark player page and hls.js from loopback.
async function startPlayerServer(): Promise<{ url: string; close(): Promise<void> }> {
  const files: Record<string, { path: string; type: string }> = {
    '/player.html': { path: path.join(here, 'stream', 'player.html'), type: 'text/html' },
    '/hls.min.js': {
      path: path.join(repoRoot, 'node_modules/hls.js/dist/hls.min.js'),
      type: 'text/javascript',
    },
  };
  const server = http.createServer((request, response) => {
    const file = files[new URL(request.url ?? '/', 'http://x').pathname];
    if (!file) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { 'content-type': file.type });
    fs.createReadStream(file.path).pipe(response);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

// Resolves once every playlist the master names (or the playlist itself) lists a segment.
async function firstPlayable(playlistUrl: string): Promise<void> {
  const hasSegment = async (url: string) => {
    const response = await fetch(url).catch(() => null);
    return response?.ok ? (await response.text()).includes('#EXTINF') : false;
  };
  await eventually(
    async () => {
      const response = await fetch(playlistUrl).catch(() => null);
      if (!response?.ok) return false;
      const text = await response.text();
      const variants = text.split('\n').filter((line) => line.endsWith('.m3u8'));
      if (variants.length === 0) return text.includes('#EXTINF');
      const checks = await Promise.all(
        variants.map((uri) => hasSegment(new URL(uri, playlistUrl).href)),
      );
      return checks.every(Boolean);
    },
    30_000,
    `a playable segment at ${playlistUrl}`,
  );
}

interface LatencyResult {
  p50: number;
  p95: number;
  samples: number;
}

async function measureLatency(
  browser: Browser,
  playerUrl: string,
  src: string,
  publishedAt: number,
): Promise<LatencyResult> {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(`${playerUrl}/player.html?src=${encodeURIComponent(src)}&t0=${publishedAt}`);
    const bench = () =>
      page.evaluate(
        () =>
          (
            globalThis as unknown as {
              __bench: { playing: boolean; error: string | null; samples: number[] };
            }
          ).__bench,
      );
    await eventually(async () => (await bench()).playing, 30_000, 'playback');
    await new Promise((resolve) => setTimeout(resolve, SETTLE_SECONDS * 1000));
    const skip = (await bench()).samples.length;
    await new Promise((resolve) => setTimeout(resolve, MEASURE_SECONDS * 1000));
    const { samples, error } = await bench();
    if (error) throw new Error(`player error: ${error}`);
    const measured = samples.slice(skip).map((ms) => ms / 1000);
    return {
      p50: round(percentile(measured, 50), 2),
      p95: round(percentile(measured, 95), 2),
      samples: measured.length,
    };
  } finally {
    await context.close();
  }
}

interface HearthResult {
  firstPlayableSeconds: number;
  latencySeconds: LatencyResult;
  encodeSpeed: { median: number; min: number; renditions: string };
  uploadMs: { p50: number; p95: number; max: number; count: number };
  ladder1080p60: { median: number; min: number; renditions: string; adaptations: string[] };
}

async function runHearth(
  browser: Browser,
  playerUrl: string,
  source: Source,
  source1080p60: Source,
): Promise<HearthResult> {
  const s3 = await TestS3Server.start();
  const edge = await startNginxEdge({ originUrl: s3.endpoint, bucket: TEST_BUCKET });
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-bench-'));
  const api = await startTestApi({
    streamUrls: { rtmpUrl: 'rtmp://127.0.0.1/live', playbackBaseUrl: edge.url },
    ingest: {
      config: ingestConfig({ rtmpPort: '0', workDir }),
      storage: s3.storage(),
    },
  });
  const ingest = api.ingest!;
  const speeds = new Map<string, number[]>();
  const uploads: number[] = [];
  ingest.events.on('speed', ({ channel, speed }) =>
    speeds.set(channel, [...(speeds.get(channel) ?? []), speed]),
  );
  const adaptations: string[] = [];
  ingest.events.on('adapted', ({ reason }) => adaptations.push(reason));
  ingest.events.on('uploaded', ({ kind, ms }) => {
    if (kind === 'segment') uploads.push(ms);
  });
  const renditionsOf = async (channel: string) =>
    (await api.streams.channelStream(channel)).stream?.renditions
      .map((rendition) => rendition.name)
      .join(' + ') ?? '';
  try {
    const key = await api.streams.createKey('bench');
    const publishedAt = Date.now();
    const publisher = pushSource(
      source,
      `rtmp://127.0.0.1:${ingest.rtmp.port}/live/${key.streamKey}`,
    );
    await firstPlayable(`${edge.url}/live/bench/master.m3u8`);
    const firstPlayableSeconds = round((Date.now() - publishedAt) / 1000, 2);
    const latencySeconds = await measureLatency(
      browser,
      playerUrl,
      `${edge.url}/live/bench/master.m3u8`,
      publishedAt,
    );
    const renditions = await renditionsOf('bench');
    await stopProcess(publisher);

    // The full four-rung ladder from a 1080p60 source, for its encode speed.
    const key60 = await api.streams.createKey('bench60');
    const publisher60 = pushSource(
      source1080p60,
      `rtmp://127.0.0.1:${ingest.rtmp.port}/live/${key60.streamKey}`,
    );
    await firstPlayable(`${edge.url}/live/bench60/master.m3u8`);
    const renditions60 = await renditionsOf('bench60');
    await new Promise((resolve) => setTimeout(resolve, (quick ? 10 : 25) * 1000));
    await stopProcess(publisher60);
    await eventually(async () => ingest.liveStreamIds.length === 0, 20_000, 'streams to end');

    const speed720 = (speeds.get('bench') ?? []).slice(5);
    const speed1080 = (speeds.get('bench60') ?? []).slice(5);
    return {
      firstPlayableSeconds,
      latencySeconds,
      encodeSpeed: {
        median: round(percentile(speed720, 50), 2),
        min: round(Math.min(...speed720), 2),
        renditions,
      },
      uploadMs: {
        p50: round(percentile(uploads, 50)),
        p95: round(percentile(uploads, 95)),
        max: round(Math.max(...uploads)),
        count: uploads.length,
      },
      ladder1080p60: {
        median: round(percentile(speed1080, 50), 2),
        min: round(Math.min(...speed1080), 2),
        renditions: renditions60,
        adaptations,
      },
    };
  } finally {
    await api.close();
    await edge.stop();
    await s3.close();
    fs.rmSync(workDir, { recursive: true, force: true });
  }
}

/** Encode speed of the ingest's own ladder argv on a source file read as fast as possible. */
interface OfflineSpeed {
  ladder: string;
  preset: string;
  speed: number;
}

// Live input caps ffmpeg's `speed=` at 1x, which hides headroom; reading the source file without
// real-time pacing shows how much faster than real time the ladder encodes.
async function measureOfflineSpeed(
  source: Source,
  width: number,
  height: number,
  fps: number,
): Promise<OfflineSpeed> {
  const renditions = selectLadder({ width, height, fps });
  const preset = choosePreset(renditions, os.availableParallelism());
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-speed-'));
  try {
    const argv = toArgv(
      buildFfmpegArgs({
        inputUrl: source.file,
        workDir,
        renditions,
        segmentSeconds: 2,
        preset,
        listSize: 6,
      }),
    ).filter((arg) => arg !== '-re');
    const started = performance.now();
    await run('ffmpeg', ['-t', '20', ...argv], { maxBuffer: 64 * 1024 * 1024 });
    return {
      ladder: renditions.map((rendition) => rendition.name).join(' + '),
      preset,
      speed: round(20 / ((performance.now() - started) / 1000), 2),
    };
  } finally {
    fs.rmSync(workDir, { recursive: true, force: true });
  }
}

interface NginxRtmpResult {
  firstPlayableSeconds: number;
  latencySeconds: LatencyResult;
}

// Debian's nginx with libnginx-mod-rtmp, HLS on, with the same 2 s fragments and 6 s playlist
// window as Hearth; it repackages the source without a ladder.
async function runNginxRtmp(
  browser: Browser,
  playerUrl: string,
  source: Source,
): Promise<NginxRtmpResult> {
  const rtmpPort = await freePort();
  const nginx = await NginxProcess.start(
    (layout) => `
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
daemon off;
worker_processes 1;
pid ${layout.pidFile};
error_log ${layout.errorLogPath} warn;
events { worker_connections 256; }
rtmp {
  server {
    listen 127.0.0.1:${rtmpPort};
    application live {
      live on;
      record off;
      hls on;
      hls_path ${layout.prefix}/hls;
      hls_fragment 2s;
      hls_playlist_length 6s;
    }
  }
}
http {
  access_log off;
  client_body_temp_path ${layout.tempDirectory}/client;
  proxy_temp_path ${layout.tempDirectory}/proxy;
  fastcgi_temp_path ${layout.tempDirectory}/fastcgi;
  uwsgi_temp_path ${layout.tempDirectory}/uwsgi;
  scgi_temp_path ${layout.tempDirectory}/scgi;
  types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }
  server {
    listen 127.0.0.1:${layout.port};
    location /hls/ {
      root ${layout.prefix};
      add_header Cache-Control no-cache;
      add_header Access-Control-Allow-Origin *;
    }
  }
}
`,
  );
  try {
    const publishedAt = Date.now();
    const publisher = pushSource(source, `rtmp://127.0.0.1:${rtmpPort}/live/bench`);
    const playlist = `${nginx.url}/hls/bench.m3u8`;
    await firstPlayable(playlist);
    const firstPlayableSeconds = round((Date.now() - publishedAt) / 1000, 2);
    const latencySeconds = await measureLatency(browser, playerUrl, playlist, publishedAt);
    await stopProcess(publisher);
    return { firstPlayableSeconds, latencySeconds };
  } finally {
    await nginx.stop();
  }
}

const source = await ensureSource('clock-720p30', '1280x720', 30, PUSH_SECONDS, true);
const source1080p60 = await ensureSource('1080p60', '1920x1080', 60, 45, false);
const player = await startPlayerServer();
const browser = await launchChromium();
console.log('offline ladder encode speed ...');
const offline = [
  await measureOfflineSpeed(source, 1280, 720, 30),
  await measureOfflineSpeed(source1080p60, 1920, 1080, 60),
];
console.log(JSON.stringify(offline));
let hearth: HearthResult;
let nginxRtmp: NginxRtmpResult;
try {
  console.log('Hearth: RTMP -> ffmpeg ladder -> S3 (s3rver) -> nginx edge -> hls.js ...');
  hearth = await runHearth(browser, player.url, source, source1080p60);
  console.log(JSON.stringify(hearth));
  console.log('nginx-rtmp: RTMP -> HLS (no ladder) -> nginx http -> hls.js ...');
  nginxRtmp = await runNginxRtmp(browser, player.url, source);
  console.log(JSON.stringify(nginxRtmp));
} finally {
  await browser.close();
  await player.close();
}

const machine = `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${(await run('ffmpeg', ['-version'])).stdout.split('\n')[0]}`;
const markdown = [
  `Measured ${new Date().toISOString()} on ${machine}. Source: ${source.label} pushed from a file in real time (\`-re -c copy\`), 2 s keyframes; 2 s segments; both players are hls.js with the same live settings; latency is timed per displayed frame over ${MEASURE_SECONDS} s.`,
  '',
  '| | Hearth (ladder → S3 → nginx edge) | nginx-rtmp (HLS, no ladder) |',
  '|---|---|---|',
  `| glass-to-glass latency p50 / p95 (s) | ${hearth.latencySeconds.p50} / ${hearth.latencySeconds.p95} | ${nginxRtmp.latencySeconds.p50} / ${nginxRtmp.latencySeconds.p95} |`,
  `| publish → first playable on the edge (s) | ${hearth.firstPlayableSeconds} | ${nginxRtmp.firstPlayableSeconds} |`,
  '',
  `**Ladder encode speed** (ffmpeg \`speed=\`, after warm-up): ${hearth.encodeSpeed.renditions} from 720p30: median ${hearth.encodeSpeed.median}x (min ${hearth.encodeSpeed.min}x); ${hearth.ladder1080p60.renditions} from 1080p60: median ${hearth.ladder1080p60.median}x (min ${hearth.ladder1080p60.min}x)${hearth.ladder1080p60.adaptations.length > 0 ? `; adaptations: ${hearth.ladder1080p60.adaptations.join('; ')}` : '; no adaptation needed'}.`,
  '',
  `**Offline ladder encode speed** (the ingest's argv on the source file, not paced, 20 s of content): ${offline.map((o) => `${o.ladder} at ${o.preset}: ${o.speed}x`).join('; ')}.`,
  '',
  `**Segment upload to S3** (s3rver on loopback, ${hearth.uploadMs.count} segments): p50 ${hearth.uploadMs.p50} ms, p95 ${hearth.uploadMs.p95} ms, max ${hearth.uploadMs.max} ms.`,
  '',
].join('\n');
const resultsDir = path.join(here, 'results');
fs.mkdirSync(resultsDir, { recursive: true });
fs.writeFileSync(
  path.join(resultsDir, 'stream.json'),
  `${JSON.stringify({ machine, offline, hearth, nginxRtmp }, null, 2)}\n`,
);
fs.writeFileSync(path.join(resultsDir, 'stream.md'), markdown);
console.log(`\n${markdown}`);
console.log('written to bench/results/stream.{json,md}');
