import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { channelStreamSchema } from '@hearth/protocol';
import { ingestConfig } from '@hearth/stream-ingest';
import { guestSession, operator } from '../api/test/support/accounts';
import { startTestApi, TestSignalingClient, type TestApi } from '../api/test/support/server';
import { joinOnSocket } from '../api/test/support/voice-faults';
import { TEST_BUCKET, TestS3Server } from '../stream-ingest/test/support/s3rver';
import { shareRealVp8 } from './support/real-share';
import { eventually } from './support/wait';

let api: TestApi | undefined;
let s3: TestS3Server | undefined;
let workDir: string | undefined;
const cleanup: Array<() => unknown> = [];

afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
  await api?.close();
  await s3?.close();
  if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
  api = undefined;
  s3 = undefined;
  workDir = undefined;
});

// An api with its voice node and an ingest node in process, storing to s3rver, 1 s segments.
async function start(settings: Record<string, string> = {}): Promise<TestApi> {
  s3 = await TestS3Server.start();
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-bridge-e2e-'));
  return startTestApi({
    api: { guestGrants: 'join,speak,screen-share', ...settings },
    ingest: {
      config: ingestConfig({ rtmpPort: '0', workDir, segmentSeconds: '1' }),
      storage: s3.storage(),
    },
  });
}

async function channelStream() {
  const response = await fetch(`${api!.baseUrl}/api/channels/stage/stream`, {
    headers: await guestSession(api!.baseUrl, 'Viewer'),
  });
  expect(response.status).toBe(200);
  return channelStreamSchema.parse(await response.json());
}

async function object(key: string): Promise<string | null> {
  const response = await fetch(`${s3!.endpoint}/${TEST_BUCKET}/${key}`);
  return response.ok ? response.text() : null;
}

describe('share bridge', () => {
  it('an operator routes a channel to broadcast: its live screen share becomes the channel’s HLS stream (VP8 over SRTP → ffmpeg ladder → S3), and ends with ENDLIST when the share stops', async () => {
    api = await start();
    const sue = await TestSignalingClient.connect(api.baseUrl, 'Sue', { channel: 'stage' });
    cleanup.push(() => sue.close());
    const { peerId } = await joinOnSocket(sue, 'stage');
    // The test pattern is 1280x720, and the share says so, as a browser's share does.
    const share = await shareRealVp8(api, 'stage', peerId, cleanup, {
      capture: { width: 1280, height: 720, fps: 30 },
    });
    await eventually(async () => (await channelStream()).share !== null, 10_000, 'the share');
    expect((await channelStream()).share?.broadcast).toBe(false);
    expect((await channelStream()).stream).toBeNull();

    const routed = await fetch(`${api.baseUrl}/api/channels/stage/share-routing`, {
      method: 'PUT',
      headers: { ...operator(), 'content-type': 'application/json' },
      body: JSON.stringify({ routing: 'broadcast' }),
    });
    expect(routed.status).toBe(200);
    await eventually(
      async () => (await channelStream()).stream?.state === 'live',
      30_000,
      'the bridged stream live',
    );
    // Spectators are told to watch the channel's stream instead of WebRTC.
    expect((await channelStream()).share).toEqual({
      peerId,
      displayName: 'Sue',
      broadcast: true,
      moveWebrtc: true,
    });
    const master = await object('live/stage/master.m3u8');
    // Bridged at the share's capture, under the channel's cap (source: 1080p at most), with the
    // ladder's rungs below it.
    expect(master).toContain('RESOLUTION=1280x720');
    expect(master).not.toContain('RESOLUTION=1920x1080');
    const media = await object('live/stage/720p30/index.m3u8');
    expect(media).toMatch(/#EXTINF:/);
    expect(media).not.toContain('#EXT-X-ENDLIST');

    share.stop();
    await eventually(
      async () =>
        (await object('live/stage/720p30/index.m3u8'))?.includes('#EXT-X-ENDLIST') ?? false,
      20_000,
      'ENDLIST after the share stopped',
    );
    await eventually(
      async () => (await channelStream()).stream?.state === 'ended',
      10_000,
      'the stream ended',
    );
  }, 90_000);

  it('with API_HANDOFF_VIEWERS=1 the first spectator of a share warms the bridge up, and once HLS plays the share is a broadcast', async () => {
    api = await start({ handoffViewers: '1' });
    const sue = await TestSignalingClient.connect(api.baseUrl, 'Sue', { channel: 'stage' });
    cleanup.push(() => sue.close());
    const { peerId } = await joinOnSocket(sue, 'stage');
    await shareRealVp8(api, 'stage', peerId, cleanup);
    await eventually(async () => (await channelStream()).share !== null, 10_000, 'the share');
    expect((await channelStream()).stream).toBeNull();

    const spectator = await TestSignalingClient.connect(api.baseUrl, 'Sam', {
      channel: 'stage',
      spectate: true,
    });
    cleanup.push(() => spectator.close());
    await joinOnSocket(spectator, 'stage');
    await eventually(
      async () => (await channelStream()).share?.broadcast === true,
      30_000,
      'the share handed off to HLS',
    );
    expect((await channelStream()).stream?.state).toBe('live');
  }, 90_000);
});
