import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNginxEdge, type NginxProcess } from '@hearth/cdn-config';
import { ingestConfig } from '@hearth/stream-ingest';
import { startTestApi, type TestApi } from '../api/test/support/server';
import { operator, sendJson } from '../api/test/support/sessions';
import { TEST_BUCKET, TestS3Server } from '../stream-ingest/test/support/s3rver';
import { launchChromium } from './support/browser';
import { exited, publishLikeObs } from './support/obs';
import { storagePlaylistEnded } from './support/ll-hls';
import { eventually } from './support/wait';

const CHANNEL = 'lowlat';
// Shared by the api, which signs private channels' playback paths, and the edge, which checks them.
const PLAYBACK_SIGNING_SECRET = 'c0ffee'.repeat(8);
// What the edge shows the ingest node's origin, which answers nobody else.
const EDGE_SECRET = 'edge_secret_'.repeat(4);
const webDistDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../web/dist');

let s3: TestS3Server;
let edge: NginxProcess;
let api: TestApi;
let originServer: http.Server;
let originUrl: string;
let workDir: string;
let browser: Browser | undefined;

// The ingest node's origin as its HTTP server serves it (stream-ingest/src/main.ts does the same).
beforeAll(async () => {
  s3 = await TestS3Server.start();
  originServer = http.createServer((request, response) => {
    if (!api?.ingest?.origin.handle(request, response)) {
      response.writeHead(404);
      response.end();
    }
  });
  await new Promise<void>((resolve) => originServer.listen(0, '127.0.0.1', resolve));
  originUrl = `http://127.0.0.1:${(originServer.address() as AddressInfo).port}`;
  edge = await startNginxEdge({
    originUrl: s3.endpoint,
    bucket: TEST_BUCKET,
    liveOriginUrl: originUrl,
    playbackSigningSecret: PLAYBACK_SIGNING_SECRET,
    liveOriginSecret: EDGE_SECRET,
  });
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-ll-edge-'));
  api = await startTestApi({
    api: { webDistDir, playbackSigningSecret: PLAYBACK_SIGNING_SECRET },
    ingest: {
      config: ingestConfig({ rtmpPort: '0', workDir, edgeSecret: EDGE_SECRET }),
      storage: s3.storage(),
    },
    streamUrls: { rtmpUrl: 'rtmp://127.0.0.1/live', playbackBaseUrl: edge.url },
  });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await api?.close();
  originServer?.closeAllConnections();
  await new Promise((resolve) => originServer?.close(resolve));
  await edge?.stop();
  await s3?.close();
  if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
});

// Requests the ingest's origin answered, by kind, from its metrics.
async function originRequests(kind: string): Promise<number> {
  const metrics = await (await fetch(`${api.baseUrl}/metrics`)).text();
  const line = new RegExp(`^ingest_origin_requests_total\\{kind="${kind}"\\} (\\d+)$`, 'm');
  return Number(line.exec(metrics)?.[1] ?? 0);
}

// The last part a live playlist lists: its segment and index, from its preload hint's left.
function lastPart(playlist: string): { msn: number; part: number } {
  const parts = [...playlist.matchAll(/#EXT-X-PART:[^\n]*URI="[^"]*-(\d+)\.(\d+)\.m4s"/g)];
  const last = parts.at(-1)!;
  return { msn: Number(last[1]), part: Number(last[2]) };
}

// Whether a playlist answers a blocking request for part `part` of segment `msn`: it lists that
// part or a later one, or, when `part` was past the segment's last part, the segment whole.
function answersBlockingRequest(playlist: string, msn: number, part: number): boolean {
  const last = lastPart(playlist);
  if (last.msn > msn || (last.msn === msn && last.part >= part)) return true;
  return playlist.split('\n').some((line) => !line.startsWith('#') && line.endsWith(`-${msn}.m4s`));
}

describe('LL-HLS through the nginx edge, the ingest node as origin', () => {
  it('the edge serves the origin’s LL playlists and parts; a blocking request returns when the next part exists, and 200 of them cost the origin one request; after the stream, S3’s playlists', async () => {
    const issued = await api.streams.createKey(CHANNEL);
    const publisher = publishLikeObs({
      url: `rtmp://127.0.0.1:${api.ingest!.rtmp.port}/live/${issued.streamKey}`,
      seconds: 20,
      width: 640,
      height: 360,
    });
    const media = `${edge.url}/live/${CHANNEL}/360p30/index.m3u8`;
    let playlist = '';
    await eventually(
      async () => {
        const response = await fetch(media);
        playlist = response.ok ? await response.text() : '';
        return playlist.includes('#EXTINF:');
      },
      20_000,
      'a live playlist with a segment on the edge',
    );
    // The master comes from the origin too, as soon as every rendition has a part.
    const master = await fetch(`${edge.url}/live/${CHANNEL}/master.m3u8`);
    expect(master.status).toBe(200);
    expect(await master.text()).toContain('360p30/index.m3u8');
    expect(playlist).toContain('#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES');
    expect(playlist).toMatch(/#EXT-X-PART-INF:PART-TARGET=0\.234/);
    expect(playlist).toMatch(/#EXT-X-MAP:URI="[^"]+-init-0\.mp4"/);
    expect(playlist).toMatch(/#EXT-X-PRELOAD-HINT:TYPE=PART,URI="/);

    // Parts, segments and the init segment through the edge, from the origin's memory.
    const partUri = /#EXT-X-PART:[^\n]*URI="([^"]+)"/.exec(playlist)![1]!;
    const part = await fetch(`${edge.url}/live/${CHANNEL}/360p30/${partUri}`);
    expect(part.status).toBe(200);
    expect(part.headers.get('content-type')).toBe('video/iso.segment');
    expect((await part.arrayBuffer()).byteLength).toBeGreaterThan(100);

    // The next part: asked before it exists, answered once it does.
    const { msn, part: index } = lastPart(await (await fetch(media)).text());
    const next = `${media}?_HLS_msn=${msn}&_HLS_part=${index + 1}`;
    const before = await originRequests('blocking-playlist');
    const asked = performance.now();
    const answers = await Promise.all(
      Array.from({ length: 200 }, () =>
        fetch(next).then(async (response) => ({
          status: response.status,
          text: await response.text(),
          at: performance.now(),
        })),
      ),
    );
    const waited = Math.min(...answers.map((answer) => answer.at - asked));
    // eslint-disable-next-line no-console -- the measurement is this test's report.
    console.log(
      `200 blocking requests for part ${msn}.${index + 1}: answered after ${Math.round(waited)}` +
        `–${Math.round(Math.max(...answers.map((a) => a.at - asked)))} ms, origin requests ` +
        `${(await originRequests('blocking-playlist')) - before}`,
    );
    expect(answers.every((answer) => answer.status === 200)).toBe(true);
    // Not before it existed: a part is a third of a second, and this one was not there yet.
    expect(waited).toBeGreaterThan(20);
    for (const answer of answers) {
      expect(answersBlockingRequest(answer.text, msn, index + 1)).toBe(true);
    }
    expect((await originRequests('blocking-playlist')) - before).toBe(1);

    // After the stream, the origin lets go and the edge reads S3's final playlists.
    expect(await exited(publisher)).toBe(0);
    await eventually(
      async () => (await api.streams.channelStream(CHANNEL)).stream?.state === 'ended',
      30_000,
      'the stream to end',
    );
    await storagePlaylistEnded(media, 15_000);
  }, 90_000);

  it('a private channel’s LL-HLS comes through its signed path: playlists and parts from the origin, blocking reloads included; a forged signature is refused', async () => {
    const channel = 'lowlat-club';
    const created = await sendJson(
      `${api.baseUrl}/api/channels`,
      'POST',
      { name: channel, private: true },
      operator(),
    );
    expect(created.status).toBe(201);
    const issued = await api.streams.createKey(channel);
    const publisher = publishLikeObs({
      url: `rtmp://127.0.0.1:${api.ingest!.rtmp.port}/live/${issued.streamKey}`,
      seconds: 20,
      width: 640,
      height: 360,
    });
    const { playbackUrl } = await api.streams.channelStream(channel);
    const signed = new RegExp(
      `^${edge.url}/live/_s/[A-Za-z0-9_-]{22}/\\d+/${channel}/master\\.m3u8$`,
    );
    expect(playbackUrl).toMatch(signed);
    const media = playbackUrl.replace(/master\.m3u8$/, '360p30/index.m3u8');
    let playlist = '';
    // Parts are listed only by the origin: S3's playlists have none.
    await eventually(
      async () => {
        const response = await fetch(media);
        playlist = response.ok ? await response.text() : '';
        return playlist.includes('#EXTINF:') && playlist.includes('#EXT-X-PART:');
      },
      20_000,
      'a private live playlist with parts on the edge',
    );
    expect(playlist).toContain('#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES');
    // The playlist's relative URIs resolve under the signed path, as a player resolves them.
    const partUri = /#EXT-X-PART:[^\n]*URI="([^"]+)"/.exec(playlist)![1]!;
    const part = await fetch(new URL(partUri, media));
    expect(part.status).toBe(200);
    expect(part.headers.get('content-type')).toBe('video/iso.segment');
    const initUri = /#EXT-X-MAP:URI="([^"]+)"/.exec(playlist)![1]!;
    expect((await fetch(new URL(initUri, media))).status).toBe(200);

    const { msn, part: index } = lastPart(await (await fetch(media)).text());
    const before = await originRequests('blocking-playlist');
    const blocked = await fetch(`${media}?_HLS_msn=${msn}&_HLS_part=${index + 1}`);
    expect(blocked.status).toBe(200);
    expect(answersBlockingRequest(await blocked.text(), msn, index + 1)).toBe(true);
    expect(await originRequests('blocking-playlist')).toBeGreaterThan(before);

    // The same path with another signature, and the private objects asked for directly.
    const forged = media.replace(/\/_s\/[A-Za-z0-9_-]{22}\//, `/_s/${'A'.repeat(22)}/`);
    expect((await fetch(forged)).status).toBe(403);
    expect((await fetch(`${edge.url}/private/${channel}/360p30/index.m3u8`)).status).toBe(404);
    // The origin itself answers only the edge.
    expect((await fetch(`${originUrl}/private/${channel}/360p30/index.m3u8`)).status).toBe(403);
    publisher.kill('SIGINT');
    await exited(publisher);
  }, 90_000);

  it('Chromium plays it on the watch page with hls.js in low-latency mode: parts and blocking reloads through the edge, about a second and a half behind', async () => {
    const channel = 'lowlat-watch';
    const issued = await api.streams.createKey(channel);
    const publisher = publishLikeObs({
      url: `rtmp://127.0.0.1:${api.ingest!.rtmp.port}/live/${issued.streamKey}`,
      seconds: 30,
      width: 640,
      height: 360,
    });
    browser = await launchChromium();
    const page = await (await browser.newContext()).newPage();
    await page.goto(`${api.baseUrl}/watch/${channel}`);
    const state = () =>
      page.evaluate(
        () =>
          (
            globalThis as unknown as { __hearthPlayer?: { state(): unknown } }
          ).__hearthPlayer?.state() ?? null,
      ) as Promise<{ status: string; currentTime: number; latencySeconds: number | null } | null>;
    await eventually(async () => (await state())?.status === 'playing', 30_000, 'playback');
    const first = (await state())!.currentTime;
    await eventually(
      async () => (await state())!.currentTime > first + 4,
      20_000,
      'four seconds played',
    );
    // Behind the frame's program date-time: the part hold-back (0.7 s) and a part being made.
    const latencies: number[] = [];
    for (let sample = 0; sample < 5; sample++) {
      const latency = (await state())!.latencySeconds;
      if (latency !== null) latencies.push(latency);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    const log = fs.readFileSync(edge.layout.accessLogPath, 'utf8');
    const mine = log.split('\n').filter((line) => line.includes(`/live/${channel}/`));
    // eslint-disable-next-line no-console -- the measurement is this test's report.
    console.log(
      `LL playback in Chromium: latency from PROGRAM-DATE-TIME ${latencies.map((l) => l.toFixed(2)).join(', ')} s; ` +
        `${mine.filter((line) => /\.\d+\.m4s /.test(line)).length} part requests, ` +
        `${mine.filter((line) => line.includes('_HLS_msn=')).length} blocking playlist requests`,
    );
    expect(latencies.length).toBeGreaterThan(0);
    expect(Math.max(...latencies)).toBeLessThan(3);
    expect(mine.some((line) => /\.\d+\.m4s /.test(line))).toBe(true);
    expect(mine.some((line) => line.includes('_HLS_msn='))).toBe(true);
    publisher.kill('SIGINT');
    await exited(publisher);
  }, 90_000);
});
