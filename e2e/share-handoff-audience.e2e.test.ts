import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNginxEdge, type NginxProcess } from '@hearth/cdn-config';
import { channelStreamSchema } from '@hearth/protocol';
import { TestSignalingClient, startTestApi, type TestApi } from '../api/test/support/server';
import { ensureCappedChannel, guestSession } from '../api/test/support/sessions';
import { joinOnSocket } from '../api/test/support/voice-faults';
import { TEST_BUCKET, TestS3Server } from '../stream-ingest/test/support/s3rver';
import { launchChromium } from './support/browser';
import { ingestNodes } from './support/ingest-cluster';
import { IngestNodeProcess } from './support/ingest-node';
import { shareRealVp8 } from './support/real-share';
import { expectTileDecoding, tileVideos } from './support/screen-tiles';
import { encodeVp8File } from './support/simulcast-share';
import { spectatorState } from './support/spectator';
import { eventually } from './support/wait';

// The scenario with API_HANDOFF_VIEWERS=2: a sharer and four spectators on the watch
// page. The first two decode the share over WebRTC; the bridge warms up with the first; the
// third and fourth play HLS from the nginx edge, bridged through a real ingest node process
// into s3rver. Moving spectators from WebRTC is e2e/share-handoff.e2e.test.ts.

const webDistDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../web/dist');
const CHANNEL = 'stage';
const CLUSTER_SECRET = randomBytes(32).toString('hex');
// Capped at the source's 720p30: a ladder of 720p and 480p leaves the browser more of two cores.
const LADDER_SIZES = ['1280x720', '854x480'];

let s3: TestS3Server;
let edge: NginxProcess;
let api: TestApi;
let ingest: IngestNodeProcess;
let browser: Browser;
let workDir: string;
let sue: TestSignalingClient | undefined;
const cleanup: Array<() => unknown> = [];

beforeAll(async () => {
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-handoff-audience-'));
  s3 = await TestS3Server.start();
  edge = await startNginxEdge({ originUrl: s3.endpoint, bucket: TEST_BUCKET });
  api = await startTestApi({
    api: {
      webDistDir,
      guestGrants: 'join,speak,screen-share',
      clusterSecret: CLUSTER_SECRET,
      handoffViewers: '2',
    },
    streamUrls: { rtmpUrl: 'rtmp://127.0.0.1/live', playbackBaseUrl: edge.url },
  });
  ingest = await IngestNodeProcess.start({
    nodeId: 'ingest-a',
    apiUrl: api.baseUrl,
    clusterSecret: CLUSTER_SECRET,
    workDir: path.join(workDir, 'ingest-a'),
    env: s3.ingestEnv(),
  });
  await eventually(
    async () => (await ingestNodes(api)).some((node) => node.status === 'up'),
    15_000,
    'the ingest node up',
  );
  browser = await launchChromium();
});

afterAll(async () => {
  for (const step of cleanup.splice(0)) step();
  sue?.close();
  await browser?.close();
  ingest?.kill('SIGTERM');
  await ingest?.exited();
  await api?.close();
  await edge?.stop();
  await s3?.close();
  if (workDir) fs.rmSync(workDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
});

async function openSpectator(name: string): Promise<Page> {
  const page = await (await browser.newContext()).newPage();
  await page.goto(`${api.baseUrl}/watch/${CHANNEL}?name=${name}`);
  return page;
}

interface PlayerReading {
  status: string;
  currentTime: number;
  videoSize: string;
}

function playerReading(page: Page): Promise<PlayerReading | null> {
  return page.evaluate(() => {
    const scope = globalThis as unknown as {
      __hearthPlayer?: { state(): { status: string; currentTime: number } };
      document: {
        querySelector(selector: string): { videoWidth: number; videoHeight: number } | null;
      };
    };
    const state = scope.__hearthPlayer?.state();
    const video = scope.document.querySelector('[data-testid="player-video"]');
    if (!state || !video) return null;
    return {
      status: state.status,
      currentTime: state.currentTime,
      videoSize: `${video.videoWidth}x${video.videoHeight}`,
    };
  }) as Promise<PlayerReading | null>;
}

async function shareRoutedToBroadcastForNewSpectators(): Promise<boolean> {
  const response = await fetch(`${api.baseUrl}/api/channels/${CHANNEL}/stream`, {
    headers: await guestSession(api.baseUrl, 'Probe'),
  });
  return channelStreamSchema.parse(await response.json()).share?.broadcast === true;
}

describe('the handoff with API_HANDOFF_VIEWERS=2 in Chromium', () => {
  it('two spectators watch over WebRTC; the third and fourth play the share as HLS from the edge, at the ladder’s sizes', async () => {
    await ensureCappedChannel(api.baseUrl, CHANNEL, '720p30');
    const source = path.join(workDir, 'share-1280x720.ivf');
    await encodeVp8File(source, { width: 1280, height: 720, seconds: 4, bitrate: '1M' });
    sue = await TestSignalingClient.connect(api.baseUrl, 'Sue', { channel: CHANNEL });
    const { peerId } = await joinOnSocket(sue, CHANNEL);
    await shareRealVp8(api, CHANNEL, peerId, cleanup, {
      seconds: 180,
      source,
      capture: { width: 1280, height: 720, fps: 30 },
    });

    const webrtc = [await openSpectator('Spec1'), await openSpectator('Spec2')];
    for (const page of webrtc) await expectTileDecoding(page, 1280, 'the share over WebRTC');
    // Two spectators reach the threshold; the bridge warmed up with the first. New spectators
    // go to HLS once it plays on the edge.
    await eventually(shareRoutedToBroadcastForNewSpectators, 60_000, 'new spectators on HLS');

    const hls = [await openSpectator('Spec3'), await openSpectator('Spec4')];
    const playlists = hls.map((page) => {
      const fetched: string[] = [];
      page.on('request', (request) => {
        if (request.url().endsWith('/index.m3u8')) fetched.push(request.url());
      });
      return fetched;
    });
    for (const [index, page] of hls.entries()) {
      await eventually(
        async () => (await playerReading(page))?.status === 'playing',
        60_000,
        `spectator ${index + 3} playing HLS`,
      );
      const first = (await playerReading(page))!;
      await eventually(
        async () => (await playerReading(page))!.currentTime > first.currentTime + 2,
        30_000,
        `spectator ${index + 3}'s video time to advance`,
      );
      expect(LADDER_SIZES).toContain((await playerReading(page))!.videoSize);
      // Never on WebRTC: no tile, no spectator peer.
      expect(await tileVideos(page)).toEqual([]);
      expect((await spectatorState(page))?.spectating ?? false).toBe(false);
    }
    // The players fetched media playlists from the edge, and kept reloading them.
    for (const fetched of playlists) {
      expect(fetched.length).toBeGreaterThanOrEqual(2);
      expect(fetched.every((url) => url.startsWith(edge.url))).toBe(true);
    }
    // The first two stay on WebRTC: only new spectators go to HLS, and the node has room.
    for (const page of webrtc) {
      expect(await spectatorState(page)).toMatchObject({ spectating: true });
      expect(await tileVideos(page)).toHaveLength(1);
    }
    // Sue and the two WebRTC spectators are the voice node's peers; the others are not.
    expect(api.voice!.channels.get(CHANNEL)!.peerCount).toBe(3);
  }, 240_000);
});
