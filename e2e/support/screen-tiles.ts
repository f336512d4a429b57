import type { Page } from 'playwright-core';
import { eventually } from './wait';

/** What a screen share tile's `<video>` shows, read from the element itself. */
export interface TileVideo {
  peerId: string | null;
  videoWidth: number;
  videoHeight: number;
  framesDecoded: number;
  muted: boolean;
  playsInline: boolean;
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

/** Reads every screen share tile of a page, voice or watch. */
export function tileVideos(page: Page): Promise<TileVideo[]> {
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

/**
 * Resolves once the page's one tile decodes frames at `width` pixels wide (16:9): more than ten
 * new frames within two seconds.
 */
export async function expectTileDecoding(page: Page, width: number, what: string): Promise<void> {
  await eventually(
    async () => {
      const before = await tileVideos(page);
      await new Promise((resolve) => setTimeout(resolve, 2000));
      const after = await tileVideos(page);
      return (
        after.length === 1 &&
        before.length === 1 &&
        after[0]!.framesDecoded > before[0]!.framesDecoded + 10 &&
        after[0]!.videoWidth === width &&
        after[0]!.videoHeight === (width * 9) / 16
      );
    },
    40_000,
    what,
  );
}

/** Frames the page's first tile decoded within `ms`. */
export async function framesDecodedIn(viewer: Page, ms: number): Promise<number> {
  const before = (await tileVideos(viewer))[0]?.framesDecoded ?? 0;
  await new Promise((resolve) => setTimeout(resolve, ms));
  return ((await tileVideos(viewer))[0]?.framesDecoded ?? 0) - before;
}

/**
 * Tells the page it is hidden (or visible again) the way a browser tells it when its tab goes to
 * the background: headless Chromium keeps every page visible.
 */
export async function setHidden(page: Page, hidden: boolean): Promise<void> {
  await page.evaluate((value) => {
    const { document } = globalThis as unknown as {
      document: { dispatchEvent(event: unknown): boolean };
    };
    const { Event } = globalThis as unknown as { Event: new (type: string) => unknown };
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => value });
    document.dispatchEvent(new Event('visibilitychange'));
  }, hidden);
}

/** One simulcast layer the sharer sends, as `window.__hearth.shareLayers()` reports it. */
export interface ShareLayer {
  rid: string | null;
  bytesSent: number;
  framesEncoded: number;
  frameWidth: number;
  frameHeight: number;
}

/** The simulcast layers the sharer's page sends, from `window.__hearth.shareLayers()`. */
export function shareLayers(page: Page): Promise<ShareLayer[]> {
  return page.evaluate(() =>
    (
      globalThis as unknown as { __hearth: { shareLayers(): Promise<ShareLayer[]> } }
    ).__hearth.shareLayers(),
  );
}

/** Bytes the sharer's top layer sent within one second. */
export async function topLayerBytesPerSecond(sharer: Page): Promise<number> {
  const before = (await shareLayers(sharer))[1]?.bytesSent ?? 0;
  await new Promise((resolve) => setTimeout(resolve, 1000));
  return ((await shareLayers(sharer))[1]?.bytesSent ?? 0) - before;
}
