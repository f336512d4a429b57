import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { types } from 'mediasoup';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureChannel } from '../api/test/support/accounts';
import { startTestApi, type TestApi } from '../api/test/support/server';
import { launchChromium } from './support/browser';
import { expectTileDecoding, tileVideos } from './support/screen-tiles';
import { eventually } from './support/wait';

const webDistDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../web/dist');
const CHANNEL = 'narrow';

let api: TestApi;
let browser: Browser;
const contexts: BrowserContext[] = [];
// Every transport the voice node opens, as mediasoup announces them: the test caps one viewer's
// downlink on the server, where its receive transport lives.
const transports: types.Transport[] = [];

beforeAll(async () => {
  api = await startTestApi({
    api: { webDistDir, guestGrants: 'join,speak,screen-share' },
    voice: { numWorkers: 1 },
  });
  for (const slot of api.voice!.pool.slots) {
    slot.worker.observer.on('newrouter', (router) =>
      router.observer.on('newtransport', (transport) => transports.push(transport)),
    );
  }
  browser = await launchChromium();
  await ensureChannel(api.baseUrl, CHANNEL);
});

afterAll(async () => {
  for (const context of contexts) await context.close();
  await browser?.close();
  await api?.close();
});

async function openVoice(query: string): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  contexts.push(context);
  const page = await context.newPage();
  await page.goto(`${api.baseUrl}/voice/${CHANNEL}?${query}`);
  return page;
}

function receiveTransportOf(displayName: string): types.Transport {
  const participant = api
    .voice!.channels.get(CHANNEL)!
    .participants()
    .find((candidate) => candidate.displayName === displayName)!;
  return transports.find(
    (transport) =>
      transport.appData.peerId === participant.id && transport.appData.direction === 'recv',
  )!;
}

/**
 * What the share's simulcast streams bring the SFU, in bit/s, as its producer measures them:
 * each layer's base temporal layer (what the SFU needs to forward that layer at all) and in
 * full, lowest layer first.
 */
async function shareLayerRates(): Promise<{ base: number; full: number }[]> {
  const producer = api
    .voice!.channels.get(CHANNEL)!
    .producers()
    .find((candidate) => candidate.appData.source === 'screen')!;
  const streams = (await producer.getStats()).sort((a, b) =>
    String(a.rid).localeCompare(String(b.rid)),
  );
  return streams.map((stream) => ({
    base: (stream.bitrateByLayer as Record<string, number> | undefined)?.['0.0'] ?? stream.bitrate,
    full: stream.bitrate,
  }));
}

function reducedShown(page: Page): Promise<boolean> {
  return page.getByTestId('screen-reduced').isVisible();
}

describe('a viewer with a constrained downlink', () => {
  it('gets the low layer while the others keep the top one, and the top one back once the constraint lifts', async () => {
    await openVoice('name=Sue&autojoin=1&share=1');
    const ann = await openVoice('name=Ann&autojoin=1');
    const ben = await openVoice('name=Ben&autojoin=1');
    await expectTileDecoding(ann, 1920, 'Ann to decode the top layer');
    await expectTileDecoding(ben, 1920, 'Ben to decode the top layer');
    expect(await reducedShown(ben)).toBe(false);

    // Ben's downlink narrows below what even the top layer's base temporal layer needs, with
    // room for the low layer's: mediasoup's bandwidth estimation moves him to the low layer, on
    // a keyframe, and his page says so; Ann keeps the top one. The fake screen is simple, so its
    // layers send far below their caps, and the cap is set from what the SFU measures.
    const [low, top] = await shareLayerRates();
    expect(top!.base).toBeGreaterThan(low!.base * 1.3);
    await receiveTransportOf('Ben').setMaxOutgoingBitrate(Math.round((low!.base + top!.base) / 2));
    await expectTileDecoding(ben, 960, 'Ben to decode the low layer');
    await eventually(() => reducedShown(ben), 10_000, 'Ben to be told his quality is reduced');
    await expectTileDecoding(ann, 1920, 'Ann to keep the top layer');
    expect(await reducedShown(ann)).toBe(false);

    // The constraint lifts (0 is unlimited): the estimate grows back and so does the layer.
    await receiveTransportOf('Ben').setMaxOutgoingBitrate(0);
    await expectTileDecoding(ben, 1920, 'Ben to get the top layer back');
    await eventually(async () => !(await reducedShown(ben)), 10_000, 'the reduced mark to go');
    expect((await tileVideos(ben))[0]!.framesDecoded).toBeGreaterThan(0);
  }, 180_000);
});
