import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureChannel } from '../api/test/support/accounts';
import { startTestApi, type TestApi } from '../api/test/support/server';
import { hearthState, launchChromium } from './support/browser';
import { eventually } from './support/wait';

const webDistDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../web/dist');
const CHANNEL = 'screens';

let api: TestApi;
let browser: Browser;
const contexts: BrowserContext[] = [];

/** What a tile's `<video>` shows, read from the element itself. */
interface TileVideo {
  peerId: string | null;
  videoWidth: number;
  videoHeight: number;
  framesDecoded: number;
  muted: boolean;
  playsInline: boolean;
}

/** One simulcast layer the sharer sends, as `window.__hearth.shareLayers()` reports it. */
interface ShareLayer {
  rid: string | null;
  bytesSent: number;
  framesEncoded: number;
  frameWidth: number;
  frameHeight: number;
}

beforeAll(async () => {
  // Guests may share here; two workers put the viewers' edges apart from the core, so the video
  // crosses a pipe as it would in production.
  api = await startTestApi({
    api: { webDistDir, guestGrants: 'join,speak,screen-share' },
    voice: { numWorkers: 2 },
  });
  browser = await launchChromium();
  await ensureChannel(api.baseUrl, CHANNEL);
});

afterAll(async () => {
  for (const context of contexts) await context.close();
  await browser?.close();
  await api?.close();
});

async function openVoice(query: string): Promise<Page> {
  const context = await browser.newContext();
  contexts.push(context);
  const page = await context.newPage();
  await page.goto(`${api.baseUrl}/voice/${CHANNEL}?${query}`);
  return page;
}

// The page's DOM as far as the tiles go; the tests are type-checked without the DOM library.
interface TileElement {
  getAttribute(name: string): string | null;
  querySelector(selector: 'video'): {
    videoWidth: number;
    videoHeight: number;
    muted: boolean;
    playsInline: boolean;
    getVideoPlaybackQuality(): { totalVideoFrames: number };
  } | null;
}

function tileVideos(page: Page): Promise<TileVideo[]> {
  return page.evaluate(() => {
    const { document } = globalThis as unknown as {
      document: { querySelectorAll(selector: string): Iterable<TileElement> };
    };
    return [...document.querySelectorAll('[data-testid="screen-tile"]')].map((tile) => {
      const video = tile.querySelector('video')!;
      return {
        peerId: tile.getAttribute('data-peer-id'),
        videoWidth: video.videoWidth,
        videoHeight: video.videoHeight,
        framesDecoded: video.getVideoPlaybackQuality().totalVideoFrames,
        muted: video.muted,
        playsInline: video.playsInline,
      };
    });
  });
}

function shareLayers(page: Page): Promise<ShareLayer[]> {
  return page.evaluate(() =>
    (
      globalThis as unknown as { __hearth: { shareLayers(): Promise<ShareLayer[]> } }
    ).__hearth.shareLayers(),
  );
}

function serverScreenProducers() {
  return (api.voice!.channels.get(CHANNEL)?.producers() ?? []).filter(
    (producer) => (producer.appData as { source?: string }).source === 'screen',
  );
}

describe('screen share in Chromium', () => {
  it('?share=1 shares 1080p30 in two simulcast layers, viewers decode the top layer in a tile, comes back after the sharer reconnects, and stopping removes the tiles', async () => {
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
      await openVoice('name=Val&autojoin=1'),
    ];

    // Each viewer shows one tile of Sue's screen whose video decodes frames, and once bandwidth
    // estimation has ramped up, at the top layer's full 1920x1080.
    for (const viewer of viewers) {
      await eventually(
        async () => {
          const before = await tileVideos(viewer);
          await new Promise((resolve) => setTimeout(resolve, 2000));
          const after = await tileVideos(viewer);
          return (
            after.length === 1 &&
            before.length === 1 &&
            after[0]!.framesDecoded > before[0]!.framesDecoded + 10 &&
            after[0]!.videoWidth === 1920 &&
            after[0]!.videoHeight === 1080
          );
        },
        40_000,
        'the top layer decoding in the viewer tile',
      );
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
