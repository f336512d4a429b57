import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureChannel } from '../api/test/support/accounts';
import { startTestApi, type TestApi } from '../api/test/support/server';
import { hearthState, inboundAudio, launchChromium } from './support/browser';
import {
  expectTileDecoding,
  framesDecodedIn,
  setHidden,
  shareLayers,
  tileVideos,
  topLayerBytesPerSecond,
} from './support/screen-tiles';
import { eventually } from './support/wait';

const webDistDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../web/dist');
const CHANNEL = 'screens';
// A tile on this window is less than 540 pixels tall and asks for the low layer; on the default
// 1280x720 window one tile is wider than 960 pixels and asks for the top one.
const SMALL_WINDOW = { width: 480, height: 400 };
const LARGE_WINDOW = { width: 1280, height: 720 };

let api: TestApi;
let browser: Browser;
const contexts: BrowserContext[] = [];

beforeAll(async () => {
  // Guests may share here; two workers put the viewers' edges apart from the core, so the video
  // crosses a pipe as it would in production.
  api = await startTestApi({
    api: { webDistDir, guestGrants: 'join,speak,screen-share' },
    // Layers nobody wants are switched off at the sharer after one second instead of five, and
    // one share fills the channel, so a second sharer meets the cap.
    voice: { numWorkers: 2, shareLayerIdleMs: 1000, maxSharesPerChannel: 1 },
  });
  browser = await launchChromium();
  await ensureChannel(api.baseUrl, CHANNEL);
});

afterAll(async () => {
  for (const context of contexts) await context.close();
  await browser?.close();
  await api?.close();
});

async function openVoice(query: string, viewport = LARGE_WINDOW): Promise<Page> {
  const context = await browser.newContext({ viewport });
  contexts.push(context);
  const page = await context.newPage();
  await page.goto(`${api.baseUrl}/voice/${CHANNEL}?${query}`);
  return page;
}

function serverScreenProducers() {
  return (api.voice!.channels.get(CHANNEL)?.producers() ?? []).filter(
    (producer) => (producer.appData as { source?: string }).source === 'screen',
  );
}

describe('screen share in Chromium', () => {
  it('?share=1 shares 1080p30 in two simulcast layers, each viewer decodes the layer its tile needs, a share beyond the cap is refused, a hidden tab pauses it, unwanted layers stop at the sharer, the share comes back after the sharer reconnects, and stopping removes the tiles', async () => {
    const sharer = await openVoice('name=Sue&autojoin=1&share=1');
    await eventually(
      async () => (await hearthState(sharer))?.sharing === 'live',
      20_000,
      'the share to go live',
    );
    const sharerId = (await hearthState(sharer))!.peerId;

    // The server holds one screen producer with the client's two layers: the low one at most half
    // the size and 600 kbit/s, the top one at the 1080p30 preset's 4.5 Mbit/s.
    const [producer] = serverScreenProducers();
    expect(producer?.kind).toBe('video');
    expect(
      producer!.rtpParameters.encodings!.map(({ maxBitrate, scaleResolutionDownBy }) => ({
        maxBitrate,
        scaleResolutionDownBy,
      })),
    ).toEqual([
      { maxBitrate: 600_000, scaleResolutionDownBy: 2 },
      { maxBitrate: 4_500_000, scaleResolutionDownBy: 1 },
    ]);
    expect(producer!.rtpParameters.codecs[0]!.mimeType.toLowerCase()).toBe('video/vp8');

    const viewers = [
      await openVoice('name=Vic&autojoin=1'),
      await openVoice('name=Val&autojoin=1', SMALL_WINDOW),
    ];
    const [large, small] = viewers as [Page, Page];

    // Each viewer shows one tile of Sue's screen whose video decodes frames at the layer its tile
    // needs: the large one, once bandwidth estimation has ramped up, the top layer's full
    // 1920x1080; the small one the low layer's 960x540.
    await expectTileDecoding(large, 1920, 'the top layer decoding in the large tile');
    await expectTileDecoding(small, 960, 'the low layer decoding in the small tile');
    expect((await hearthState(large))!.screens[0]).toMatchObject({
      spatialLayer: 1,
      preferredSpatialLayer: 1,
    });
    expect((await hearthState(small))!.screens[0]).toMatchObject({
      spatialLayer: 0,
      preferredSpatialLayer: 0,
    });
    expect(await large.getByTestId('screen-reduced').count()).toBe(0);
    for (const viewer of viewers) {
      const [tile] = await tileVideos(viewer);
      expect(tile).toMatchObject({ peerId: sharerId, muted: true, playsInline: true });
      expect((await hearthState(viewer))!.screens.map((screen) => screen.peerId)).toEqual([
        sharerId,
      ]);
    }

    // The sharer sends both layers: the low one at half size, the top one at full size.
    await eventually(
      async () => {
        const layers = await shareLayers(sharer);
        return (
          layers.length === 2 &&
          layers.every((layer) => layer.bytesSent > 0 && layer.framesEncoded > 0) &&
          layers[0]!.frameWidth === 960 &&
          layers[1]!.frameWidth === 1920
        );
      },
      10_000,
      'both layers sent at their sizes',
    );

    // The share's audio (the fake capture has some) plays like a microphone: each viewer
    // receives two growing audio streams from Sue, her microphone and her screen's audio.
    const sources = (api.voice!.channels.get(CHANNEL)?.producers() ?? []).map(
      (producer) => (producer.appData as { source?: string }).source,
    );
    expect(sources.filter((source) => source === 'screen-audio')).toHaveLength(1);
    for (const viewer of viewers) {
      await eventually(
        async () => {
          const before = await inboundAudio(viewer);
          await new Promise((resolve) => setTimeout(resolve, 500));
          const after = await inboundAudio(viewer);
          const growing = after.filter(
            (stream) =>
              stream.peerId === sharerId &&
              stream.bytesReceived >
                (before.find((old) => old.consumerId === stream.consumerId)?.bytesReceived ?? 0),
          );
          return growing.length === 2;
        },
        15_000,
        "Sue's microphone and screen audio at the viewer",
      );
    }

    // A guest holding screen-share is offered the button; with the channel full, its share is
    // refused, it is told why, and Sue's share goes on.
    await large.getByTestId('share-preset').selectOption('720p30');
    await large.getByTestId('share-start').click();
    await eventually(
      async () =>
        ((await large.getByTestId('voice-error').textContent()) ?? '').includes(
          'holds 1 screen shares already',
        ) && (await hearthState(large))!.sharing === 'off',
      10_000,
      'the second share to be refused',
    );
    expect(serverScreenProducers()).toHaveLength(1);
    expect((await hearthState(small))!.screens).toHaveLength(1);

    // A hidden tab pauses the share it receives, and shows it again once visible.
    await setHidden(small, true);
    await eventually(
      async () => (await framesDecodedIn(small, 1000)) === 0,
      10_000,
      'the hidden tab to receive no frames',
    );
    await setHidden(small, false);
    await eventually(
      async () => (await framesDecodedIn(small, 1000)) > 0,
      10_000,
      'the visible tab to receive frames again',
    );

    // Both tiles small: nobody wants the top layer, so the sharer stops sending it. The small
    // viewer's window grows: the top layer comes back, and to that viewer.
    await large.setViewportSize(SMALL_WINDOW);
    await eventually(
      async () => (await topLayerBytesPerSecond(sharer)) === 0,
      10_000,
      'the top layer to stop at the sharer',
    );
    await small.setViewportSize(LARGE_WINDOW);
    await eventually(
      async () => (await topLayerBytesPerSecond(sharer)) > 0,
      5000,
      'the top layer to start again at the sharer',
    );
    await expectTileDecoding(small, 1920, 'the top layer decoding in the grown tile');
    await expectTileDecoding(large, 960, 'the low layer decoding in the shrunk tile');

    // Clicking a tile focuses it, and clicking again lets go.
    const viewerTile = viewers[0]!.getByTestId('screen-tile');
    await viewerTile.locator('video').click();
    await eventually(
      async () => (await viewerTile.getAttribute('class'))?.includes('focused') === true,
      5000,
      'the tile to take the focus',
    );
    await viewerTile.locator('video').click();
    await eventually(
      async () => (await viewerTile.getAttribute('class'))?.includes('focused') === false,
      5000,
      'the tile to let go of the focus',
    );

    // The sharer loses its connection: it rejoins by itself and sends the same capture again, so
    // the viewers get a new tile that decodes.
    const [oldTile] = (await hearthState(viewers[0]!))!.screens;
    const joinsBefore = (await hearthState(sharer))!.joinCount;
    await sharer.evaluate(() =>
      (globalThis as unknown as { __hearth: { dropSignaling(): void } }).__hearth.dropSignaling(),
    );
    await eventually(
      async () => {
        const state = await hearthState(sharer);
        return state?.joinCount === joinsBefore + 1 && state.sharing === 'live';
      },
      20_000,
      'the sharer to rejoin and share again',
    );
    for (const viewer of viewers) {
      await eventually(
        async () => {
          const screens = (await hearthState(viewer))!.screens;
          const before = await tileVideos(viewer);
          await new Promise((resolve) => setTimeout(resolve, 1000));
          const after = await tileVideos(viewer);
          return (
            screens.length === 1 &&
            screens[0]!.consumerId !== oldTile!.consumerId &&
            after.length === 1 &&
            before.length === 1 &&
            after[0]!.framesDecoded > before[0]!.framesDecoded
          );
        },
        30_000,
        'the share again after the sharer rejoined',
      );
    }
    expect(serverScreenProducers()).toHaveLength(1);

    // The sharer stops: every tile goes, and the server holds no screen producer.
    await sharer.getByTestId('share-stop').click();
    for (const viewer of viewers) {
      await eventually(
        async () =>
          (await tileVideos(viewer)).length === 0 &&
          (await hearthState(viewer))!.screens.length === 0,
        10_000,
        'the tile to go',
      );
    }
    expect((await hearthState(sharer))!.sharing).toBe('off');
    await eventually(
      async () => serverScreenProducers().length === 0,
      5000,
      'no screen producer on the server',
    );
    // Everyone is still in voice after the share ended.
    expect((await hearthState(viewers[0]!))!.participants).toHaveLength(3);
  }, 150_000);
});
