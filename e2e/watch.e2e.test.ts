import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNginxEdge, type NginxProcess } from '@hearth/cdn-config';
import { ingestConfig, S3Storage } from '@hearth/stream-ingest';
import { startTestApi, type TestApi } from '../api/test/support/server';
import { TEST_BUCKET, TestS3Server } from '../stream-ingest/test/support/s3rver';
import { eventually, launchChromium } from './support/browser';
import { exited, publishLikeObs } from './support/obs';

const webDistDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../web/dist');

interface PlayerState {
  status: string;
  currentTime: number;
  levels: { index: number; height: number }[];
  currentLevel: number;
  autoLevel: boolean;
  latencySeconds: number | null;
}

let s3: TestS3Server;
let edge: NginxProcess;
let api: TestApi;
let browser: Browser;
let workDir: string;

beforeAll(async () => {
  s3 = await TestS3Server.start();
  edge = await startNginxEdge({ originUrl: s3.endpoint, bucket: TEST_BUCKET });
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-watch-test-'));
  api = await startTestApi({
    api: { webDistDir },
    streamUrls: { rtmpUrl: 'rtmp://127.0.0.1/live', playbackBaseUrl: edge.url },
    ingest: {
      config: ingestConfig({ rtmpPort: '0', workDir }),
      storage: new S3Storage({
        endpoint: s3.endpoint,
        region: 'us-east-1',
        bucket: TEST_BUCKET,
        accessKeyId: 'S3RVER',
        secretAccessKey: 'S3RVER',
        forcePathStyle: true,
      }),
    },
  });
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await api?.close();
  await edge?.stop();
  await s3?.close();
  fs.rmSync(workDir, { recursive: true, force: true });
});

describe('watching a live stream in Chromium', () => {
  it('hls.js plays through the nginx edge: currentTime advances and switching levels works', async () => {
    const issued = await api.streams.createKey('watch');
    const publisher = publishLikeObs({
      url: `rtmp://127.0.0.1:${api.ingest!.rtmp.port}/live/${issued.streamKey}`,
      seconds: 40,
    });
    const page = await (await browser.newContext()).newPage();
    await page.goto(`${api.baseUrl}/watch/watch`);
    const state = () =>
      page.evaluate(
        () =>
          (
            globalThis as unknown as { __hearthPlayer?: { state(): unknown } }
          ).__hearthPlayer?.state() ?? null,
      ) as Promise<PlayerState | null>;

    await eventually(
      async () => (await state())?.status === 'playing',
      30_000,
      'playback to start',
    );
    const first = (await state())!.currentTime;
    await eventually(
      async () => (await state())!.currentTime > first + 2,
      10_000,
      'currentTime to advance',
    );
    const { levels, currentLevel } = (await state())!;
    expect(levels.map((level) => level.height).sort()).toEqual([480, 720]);

    // Pin the level that is not playing: hls.js switches to it and playback carries on.
    const target = levels.find((level) => level.index !== currentLevel)!.index;
    await page.evaluate(
      (index) =>
        (
          globalThis as unknown as { __hearthPlayer: { setLevel(index: number): void } }
        ).__hearthPlayer.setLevel(index),
      target,
    );
    await eventually(
      async () => (await state())!.currentLevel === target,
      15_000,
      'the level switch',
    );
    const afterSwitch = (await state())!.currentTime;
    await eventually(
      async () => (await state())!.currentTime > afterSwitch + 2,
      10_000,
      'playback after switching',
    );
    expect((await state())!.autoLevel).toBe(false);
    expect((await state())!.latencySeconds).toBeGreaterThan(0);
    await page.getByTestId('player-status').waitFor();
    expect(await page.getByTestId('player-status').textContent()).toBe('playing');
    publisher.kill('SIGINT');
    await exited(publisher);
  }, 90_000);
});
