import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeListSchema } from '@hearth/protocol';
import { ensureChannel, operator } from '../api/test/support/accounts';
import { startRedis, type TestRedis } from '../api/test/support/redis';
import { startTestApi, type TestApi } from '../api/test/support/server';
import { hearthState, launchChromium } from './support/browser';
import { expectTileDecoding, topLayerBytesPerSecond } from './support/screen-tiles';
import { freePort, startVoiceNodeProcess, type VoiceNodeProcess } from './support/voice-nodes';
import { eventually } from './support/wait';

const webDistDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../web/dist');
const clusterSecret = 'e2e-cluster-secret-0123456789abcdef0123456789';
const CHANNEL = 'far-screens';
// A tile in this window is under 540 pixels tall and wants the low layer; in 1280x720 it wants
// the top one.
const SMALL_WINDOW = { width: 480, height: 400 };
const LARGE_WINDOW = { width: 1280, height: 720 };

let redis: TestRedis;
let api: TestApi;
let browser: Browser;
const nodes: VoiceNodeProcess[] = [];
const contexts: BrowserContext[] = [];

// Two voice-sfu processes with room for one participant each: the sharer lands on one, the viewer
// on the other, so the share crosses the cascade link between processes.
beforeAll(async () => {
  redis = await startRedis();
  const ports = [await freePort(), await freePort()];
  api = await startTestApi({
    api: {
      webDistDir,
      allowedOrigins: ports.map((port) => `http://127.0.0.1:${port}`).join(','),
      embeddedVoice: 'false',
      redisUrl: redis.url,
      clusterSecret,
      guestGrants: 'join,speak,screen-share',
    },
  });
  for (const [index, port] of ports.entries()) {
    nodes.push(
      await startVoiceNodeProcess({
        id: `voice-${index}`,
        apiUrl: api.baseUrl,
        clusterSecret,
        maxParticipants: 1,
        port,
        env: { VOICE_SHARE_LAYER_IDLE_MS: '1000' },
      }),
    );
  }
  await eventually(
    async () => {
      const response = await fetch(`${api.baseUrl}/api/nodes`, { headers: operator() });
      const { nodes: listed } = nodeListSchema.parse(await response.json());
      return listed.filter((node) => node.status === 'up').length === 2;
    },
    20_000,
    'both voice nodes to register',
  );
  browser = await launchChromium();
  await ensureChannel(api.baseUrl, CHANNEL);
}, 120_000);

afterAll(async () => {
  for (const context of contexts) await context.close();
  await browser?.close();
  for (const node of nodes) await node.stop();
  await api?.close();
  await redis?.stop();
});

async function openVoice(query: string): Promise<Page> {
  const context = await browser.newContext({ viewport: LARGE_WINDOW });
  contexts.push(context);
  const page = await context.newPage();
  await page.goto(`${api.baseUrl}/voice/${CHANNEL}?${query}`);
  await eventually(
    async () => (await hearthState(page))?.connection === 'connected',
    20_000,
    `${query} to connect`,
  );
  return page;
}

function nodeOf(page: Page): Promise<string | null> {
  return page.evaluate(() =>
    (globalThis as unknown as { __hearth: { nodeId(): string | null } }).__hearth.nodeId(),
  );
}

describe('a screen share across voice-sfu processes', () => {
  it('reaches a viewer on another node, whose layer wishes reach the sharer through the link', async () => {
    const sharer = await openVoice('name=Sue&autojoin=1&share=1');
    const viewer = await openVoice('name=Vic&autojoin=1');
    expect(await nodeOf(viewer)).not.toBe(await nodeOf(sharer));

    // The top layer, then the low one as the viewer's tile shrinks, each from a keyframe the
    // viewer's node asked the sharer's node for across the pipe.
    await expectTileDecoding(viewer, 1920, 'the viewer on the other node to decode the top layer');
    await viewer.setViewportSize(SMALL_WINDOW);
    await expectTileDecoding(viewer, 960, 'the viewer to decode the low layer');
    // Nobody on either node wants the top layer now: the sharer stops sending it...
    await eventually(
      async () => (await topLayerBytesPerSecond(sharer)) === 0,
      15_000,
      'the top layer to stop at the sharer',
    );
    // ...and sends it again as soon as the viewer across the link wants it.
    await viewer.setViewportSize(LARGE_WINDOW);
    await eventually(
      async () => (await topLayerBytesPerSecond(sharer)) > 0,
      10_000,
      'the top layer to start again at the sharer',
    );
    await expectTileDecoding(viewer, 1920, 'the viewer to decode the top layer again');
  }, 180_000);
});
