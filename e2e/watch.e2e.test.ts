import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNginxEdge, type NginxProcess } from '@hearth/cdn-config';
import { ingestConfig } from '@hearth/stream-ingest';
import { startTestApi, type TestApi } from '../api/test/support/server';
import { TEST_BUCKET, TestS3Server } from '../stream-ingest/test/support/s3rver';
import { launchChromium } from './support/browser';
import { eventually } from './support/wait';
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
      storage: s3.storage(),
    },
  });
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await api?.close();
  await edge?.stop();
  await s3?.close();
  // Retries: a transcoder stopping with the api may still be removing its last files.
  fs.rmSync(workDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
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
    await expect.poll(() => page.getByTestId('player-status').textContent()).toBe('playing');
    publisher.kill('SIGINT');
    await exited(publisher);
  }, 90_000);

  it('the streamer page creates a key, shows the OBS server after a reload, and rotates the key', async () => {
    // The first account registered becomes the owner, who may stream in every channel.
    const registered = await fetch(`${api.baseUrl}/api/auth/register`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ username: 'streamer', password: 'correct horse battery' }),
    });
    expect(registered.status).toBe(201);
    const page = await (await browser.newContext()).newPage();
    await page.goto(`${api.baseUrl}/login`);
    await page.getByTestId('login-username').fill('streamer');
    await page.getByTestId('login-password').fill('correct horse battery');
    await page.getByTestId('login-submit').click();
    await page.waitForURL(`${api.baseUrl}/`);
    await page.goto(`${api.baseUrl}/stream/obs-test`);
    await page.getByTestId('create-key').click();
    await expect
      .poll(async () => (await page.getByTestId('stream-key').textContent())!.trim())
      .toMatch(/^sk_[0-9a-f]{16}_[0-9a-f]{64}$/);
    const first = (await page.getByTestId('stream-key').textContent())!.trim();
    expect((await page.getByTestId('rtmp-url').textContent())!.trim()).toBe(
      'rtmp://127.0.0.1/live',
    );

    await page.reload();
    await page.getByTestId('rotate-key').waitFor();
    expect((await page.getByTestId('rtmp-url').textContent())!.trim()).toBe(
      'rtmp://127.0.0.1/live',
    );
    expect(await page.getByTestId('stream-key').textContent()).not.toContain(first);

    await page.getByTestId('rotate-key').click();
    await page.getByTestId('rotate-key-confirm').click();
    await expect
      .poll(async () => (await page.getByTestId('stream-key').textContent())!.trim())
      .toMatch(/^sk_/);
    const rotated = (await page.getByTestId('stream-key').textContent())!.trim();
    expect(rotated).not.toBe(first);
    await expect(
      api.streams.authorizePublish(first, { ip: '127.0.0.1', nodeId: 'ingest-a' }),
    ).rejects.toMatchObject({
      code: 'forbidden',
    });
  }, 60_000);
});
