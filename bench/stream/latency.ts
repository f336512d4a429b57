// Latency measurement: publish, wait for the first playable media on the edge, then play the
// stream in Chromium with the benchmark player (player.html) and time every displayed frame.
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { eventually } from '../../e2e/support/wait';
import { percentile, round } from '../stats';
import { stopProcess } from './sources';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../..');
// How often the edge is polled for the first playable media, and for how long.
const POLL_MS = 50;
const FIRST_PLAYABLE_TIMEOUT_MS = 30_000;

/** How long the player settles and then how long its frames are timed. */
export interface PlaybackWindow {
  /** Seconds of playback left out while the player reaches its live position. */
  settleSeconds: number;
  /** Seconds of playback whose frames are timed. */
  measureSeconds: number;
}

/** Glass-to-glass latency over the timed frames, in seconds. */
export interface LatencyResult {
  /** Median. */
  p50: number;
  /** 95th percentile, by nearest rank. */
  p95: number;
  /** Frames timed. */
  samples: number;
}

/** How the player played a row, from hls.js and the last media playlist it loaded. */
export interface PlayerReadings {
  /** hls.js's target latency: PART-HOLD-BACK on LL-HLS, three target durations otherwise (s). */
  targetLatencySeconds: number | null;
  /** EXT-X-TARGETDURATION (s). */
  targetDurationSeconds: number | null;
  /** Median duration of the listed segments (s). */
  segmentSeconds: number | null;
  /** EXT-X-PART-INF PART-TARGET (s), null on a playlist without parts. */
  partTargetSeconds: number | null;
  /** The playlist offered blocking reloads (CAN-BLOCK-RELOAD=YES). */
  blockingReload: boolean;
  /** Parts hls.js loaded. */
  partsLoaded: number;
  /** Whole segments hls.js loaded. */
  segmentsLoaded: number;
}

/** What one row measured. */
export interface RowMeasurement {
  /** Publish to every variant playlist on the edge listing media a player can start from (s). */
  firstPlayableSeconds: number;
  /** Publish to the player's first frame on screen, the page opened at first playable (s). */
  firstFrameSeconds: number;
  /** Glass-to-glass latency once the player has settled. */
  latencySeconds: LatencyResult;
  /** How the stream was played. */
  player: PlayerReadings;
}

interface PageState {
  playing: boolean;
  firstFrameAt: number | null;
  error: string | null;
  samples: number[];
}

interface PageReadings {
  targetLatency: number | null;
  partsLoaded: number;
  segmentsLoaded: number;
  playlist: {
    targetDuration: number;
    partTarget: number | null;
    canBlockReload: boolean;
    segmentDurations: number[];
  } | null;
}

/** Serves the benchmark player page and hls.js from loopback. */
export async function startPlayerServer(): Promise<{ url: string; close(): Promise<void> }> {
  const files: Record<string, { path: string; type: string }> = {
    '/player.html': { path: path.join(here, 'player.html'), type: 'text/html' },
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

// A whole segment, or on an LL-HLS playlist a part that starts with a key frame.
function startable(playlist: string, parts: boolean): boolean {
  if (playlist.includes('#EXTINF')) return true;
  return parts && /#EXT-X-PART:[^\n]*INDEPENDENT=YES/.test(playlist);
}

async function text(url: string): Promise<string | null> {
  const response = await fetch(url).catch(() => null);
  return response?.ok ? response.text() : null;
}

/** Resolves once the master (or the playlist itself) and every variant it names are startable. */
export async function firstPlayable(playlistUrl: string, parts: boolean): Promise<void> {
  const deadline = Date.now() + FIRST_PLAYABLE_TIMEOUT_MS;
  for (;;) {
    const playlist = await text(playlistUrl);
    if (playlist !== null) {
      const variants = playlist.split('\n').filter((line) => line.endsWith('.m3u8'));
      if (variants.length === 0 && startable(playlist, parts)) return;
      if (variants.length > 0) {
        const texts = await Promise.all(
          variants.map((uri) => text(new URL(uri, playlistUrl).href)),
        );
        if (texts.every((variant) => variant !== null && startable(variant, parts))) return;
      }
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${FIRST_PLAYABLE_TIMEOUT_MS} ms: nothing playable at ${playlistUrl}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/** Publishes, waits for the first playable media at `playlistUrl`, and plays it in Chromium. */
export async function measureRow(options: {
  browser: Browser;
  playerUrl: string;
  playlistUrl: string;
  /** Whether an LL-HLS part counts as playable (the LL row) or only a whole segment. */
  parts: boolean;
  timing: PlaybackWindow;
  publish: () => ChildProcess;
}): Promise<RowMeasurement> {
  const { browser, playerUrl, playlistUrl, parts, timing } = options;
  const publishedAt = Date.now();
  const publisher = options.publish();
  const context = await browser.newContext();
  try {
    await firstPlayable(playlistUrl, parts);
    const firstPlayableSeconds = round((Date.now() - publishedAt) / 1000, 2);
    const page = await context.newPage();
    await page.goto(
      `${playerUrl}/player.html?src=${encodeURIComponent(playlistUrl)}&t0=${publishedAt}`,
    );
    const state = () =>
      page.evaluate(() => (globalThis as unknown as { __bench: PageState }).__bench);
    await eventually(async () => (await state()).playing, 30_000, 'playback');
    await new Promise((resolve) => setTimeout(resolve, timing.settleSeconds * 1000));
    const skip = (await state()).samples.length;
    await new Promise((resolve) => setTimeout(resolve, timing.measureSeconds * 1000));
    const { samples, error, firstFrameAt } = await state();
    if (error) throw new Error(`player error: ${error}`);
    if (firstFrameAt === null) throw new Error('the player showed no frame');
    const readings = await page.evaluate(() =>
      (globalThis as unknown as { __bench: { readings(): PageReadings } }).__bench.readings(),
    );
    const measured = samples.slice(skip).map((ms) => ms / 1000);
    if (measured.length === 0) throw new Error('no frame was timed');
    const durations = readings.playlist?.segmentDurations ?? [];
    return {
      firstPlayableSeconds,
      firstFrameSeconds: round((firstFrameAt - publishedAt) / 1000, 2),
      latencySeconds: {
        p50: round(percentile(measured, 50), 2),
        p95: round(percentile(measured, 95), 2),
        samples: measured.length,
      },
      player: {
        targetLatencySeconds:
          readings.targetLatency === null ? null : round(readings.targetLatency, 2),
        targetDurationSeconds: readings.playlist?.targetDuration ?? null,
        segmentSeconds: durations.length > 0 ? round(percentile(durations, 50), 2) : null,
        partTargetSeconds: readings.playlist?.partTarget ?? null,
        blockingReload: readings.playlist?.canBlockReload ?? false,
        partsLoaded: readings.partsLoaded,
        segmentsLoaded: readings.segmentsLoaded,
      },
    };
  } finally {
    await context.close();
    await stopProcess(publisher);
  }
}
