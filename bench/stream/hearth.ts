// Hearth's rows: one api with an in-process ingest node, s3rver, the ingest node's LL-HLS origin
// on its own HTTP server (as stream-ingest/src/main.ts serves it), and two nginx edges in front:
// one with the origin as `liveOriginUrl` (the LL-HLS row) and one without (regular HLS from S3's
// playlists). Each row publishes its own stream, so each has its own first-playable time. Then a
// 1080p60 publish measures the full ladder's live encode speed.
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { startNginxEdge, type NginxProcess } from '@hearth/cdn-config';
import { ingestConfig } from '@hearth/stream-ingest';
import { startTestApi, type TestApi } from '../../api/test/support/server';
import { eventually } from '../../e2e/support/wait';
import { TEST_BUCKET, TestS3Server } from '../../stream-ingest/test/support/s3rver';
import { percentile, round } from '../stats';
import { measureRow, type PlaybackWindow } from './latency';
import { attemptRow, type RowId, type RowResult } from './rows';
import { pushSource, stopProcess, type Source } from './sources';

/** Live encode speed of a ladder, from ffmpeg's `speed=` after warm-up. */
export interface LadderSpeed {
  /** Median speed (1 = real time; live input caps it at about 1). */
  median: number;
  /** Slowest reading. */
  min: number;
  /** The rungs, e.g. `720p30 + 480p30`. */
  renditions: string;
}

/** Segment upload times to s3rver, in milliseconds. */
export interface UploadTimes {
  /** Median. */
  p50: number;
  /** 95th percentile. */
  p95: number;
  /** Slowest. */
  max: number;
  /** Segments uploaded. */
  count: number;
}

/** What the Hearth part of the run measured. */
export interface HearthResult {
  /** The LL-HLS and regular HLS rows. */
  rows: RowResult[];
  /** The 720p30 source's ladder during both rows, null if neither ran. */
  encodeSpeed: LadderSpeed | null;
  /** Segment uploads during every publish. */
  uploadMs: UploadTimes | null;
  /** The full ladder from a 1080p60 source, and any adaptation it needed. */
  ladder1080p60: (LadderSpeed & { adaptations: string[] }) | null;
  /** Why the 1080p60 ladder was not measured, if it was not. */
  ladderError: string | null;
}

// Stops a server holding blocking playlist requests open.
async function closeServer(server: http.Server): Promise<void> {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
}

function speedOf(readings: number[], renditions: string): LadderSpeed | null {
  if (readings.length === 0) return null;
  return {
    median: round(percentile(readings, 50), 2),
    min: round(Math.min(...readings), 2),
    renditions,
  };
}

/** Runs the Hearth rows and the ladder measurements on one Hearth chain. */
export async function runHearth(options: {
  browser: Browser;
  playerUrl: string;
  source: Source;
  source1080p60: Source;
  timing: PlaybackWindow;
  ladderSeconds: number;
}): Promise<HearthResult> {
  const cleanups: (() => Promise<void>)[] = [];
  try {
    const s3 = await TestS3Server.start();
    cleanups.push(() => s3.close());
    // The api starts last (its stream URLs name the edge), so the origin finds it through this.
    const started: { api?: TestApi } = {};
    const originServer = http.createServer((request, response) => {
      if (!started.api?.ingest?.origin.handle(request, response)) {
        response.writeHead(404);
        response.end();
      }
    });
    await new Promise<void>((resolve) => originServer.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => closeServer(originServer));
    const liveOriginUrl = `http://127.0.0.1:${(originServer.address() as AddressInfo).port}`;
    const ll = await startNginxEdge({ originUrl: s3.endpoint, bucket: TEST_BUCKET, liveOriginUrl });
    cleanups.push(() => ll.stop());
    const plain = await startNginxEdge({ originUrl: s3.endpoint, bucket: TEST_BUCKET });
    cleanups.push(() => plain.stop());
    const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-bench-'));
    cleanups.push(async () => fs.rmSync(workDir, { recursive: true, force: true }));
    const api = await startTestApi({
      streamUrls: { rtmpUrl: 'rtmp://127.0.0.1/live', playbackBaseUrl: ll.url },
      ingest: { config: ingestConfig({ rtmpPort: '0', workDir }), storage: s3.storage() },
    });
    started.api = api;
    cleanups.push(() => api.close());
    return await measureHearth(options, api, { ll, plain });
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup();
  }
}

async function measureHearth(
  options: Parameters<typeof runHearth>[0],
  api: TestApi,
  edges: Record<'ll' | 'plain', NginxProcess>,
): Promise<HearthResult> {
  const { browser, playerUrl, source, source1080p60, timing } = options;
  const ingest = api.ingest!;
  const speeds = new Map<string, number[]>();
  const uploads: number[] = [];
  const adaptations: string[] = [];
  ingest.events.on('speed', ({ channel, speed }) =>
    speeds.set(channel, [...(speeds.get(channel) ?? []), speed]),
  );
  ingest.events.on('adapted', ({ channel, reason }) => {
    if (channel === 'bench60') adaptations.push(reason);
  });
  ingest.events.on('uploaded', ({ kind, ms }) => {
    if (kind === 'segment') uploads.push(ms);
  });
  const renditionsOf = async (channel: string) =>
    (await api.streams.channelStream(channel)).stream?.renditions
      .map((rendition) => rendition.name)
      .join(' + ') ?? '';
  const publishUrl = async (channel: string) =>
    `rtmp://127.0.0.1:${ingest.rtmp.port}/live/${(await api.streams.createKey(channel)).streamKey}`;
  // The next publish waits until the last one's ladder has stopped and its uploads drained.
  const streamsEnded = () =>
    eventually(async () => ingest.liveStreamIds.length === 0, 30_000, 'the stream to end');

  const row = (id: RowId, channel: string, edge: NginxProcess, parts: boolean) =>
    attemptRow(id, async () => {
      const url = await publishUrl(channel);
      const measured = await measureRow({
        browser,
        playerUrl,
        playlistUrl: `${edge.url}/live/${channel}/master.m3u8`,
        parts,
        timing,
        publish: () => pushSource(source, url),
      });
      await streamsEnded();
      return measured;
    });
  const rows = [
    await row('hearthLl', 'bench-ll', edges.ll, true),
    await row('hearthHls', 'bench-hls', edges.plain, false),
  ];
  // Speed readings of the first few seconds are left out: ffmpeg's average starts high.
  const speed720 = ['bench-ll', 'bench-hls'].flatMap((channel) =>
    (speeds.get(channel) ?? []).slice(5),
  );
  const encodeSpeed = speedOf(speed720, await renditionsOf('bench-ll'));

  let ladder1080p60: HearthResult['ladder1080p60'] = null;
  let ladderError: string | null = null;
  try {
    console.log(`Hearth: the full ladder from ${source1080p60.label} ...`);
    const publisher = pushSource(source1080p60, await publishUrl('bench60'));
    try {
      await eventually(
        async () => (speeds.get('bench60') ?? []).length > 0,
        30_000,
        'the 1080p60 ladder to run',
      );
      await new Promise((resolve) => setTimeout(resolve, options.ladderSeconds * 1000));
    } finally {
      await stopProcess(publisher);
    }
    const renditions = await renditionsOf('bench60');
    await streamsEnded();
    const speed = speedOf((speeds.get('bench60') ?? []).slice(5), renditions);
    if (speed === null) throw new Error('the 1080p60 ladder reported no speed');
    ladder1080p60 = { ...speed, adaptations };
  } catch (error) {
    console.error(error);
    ladderError = error instanceof Error ? error.message : String(error);
  }
  return {
    rows,
    encodeSpeed,
    uploadMs:
      uploads.length === 0
        ? null
        : {
            p50: round(percentile(uploads, 50)),
            p95: round(percentile(uploads, 95)),
            max: round(Math.max(...uploads)),
            count: uploads.length,
          },
    ladder1080p60,
    ladderError,
  };
}
