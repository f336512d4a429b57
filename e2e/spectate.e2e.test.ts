import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureChannel } from '../api/test/support/accounts';
import { startTestApi, type TestApi } from '../api/test/support/server';
import { operator } from '../api/test/support/sessions';
import { bytesByPeer, hearthState, launchChromium } from './support/browser';
import { expectTileDecoding, framesDecodedIn, setHidden, tileVideos } from './support/screen-tiles';
import { spectatorInboundAudio, spectatorState } from './support/spectator';
import { eventually } from './support/wait';

const webDistDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../web/dist');
const CHANNEL = 'lounge';
const PASSWORD = 'correct horse battery';
// A tile on this window is less than 540 pixels tall and asks for the low layer; on the default
// 1280x720 window one tile is wider than 960 pixels and asks for the top one.
const SMALL_WINDOW = { width: 480, height: 400 };

let api: TestApi;
let browser: Browser;
const contexts: BrowserContext[] = [];

beforeAll(async () => {
  // Guests may share; two workers put the viewers' edges apart from the core.
  api = await startTestApi({
    api: { webDistDir, guestGrants: 'join,speak,screen-share' },
    voice: { numWorkers: 2 },
  });
  browser = await launchChromium();
  // The first account registered on a fresh install becomes its owner, who moderates everywhere.
  const registered = await fetch(`${api.baseUrl}/api/auth/register`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username: 'olive', password: PASSWORD, displayName: 'Olive Owner' }),
  });
  expect(registered.status).toBe(201);
  await ensureChannel(api.baseUrl, CHANNEL);
});

afterAll(async () => {
  for (const context of contexts) await context.close();
  await browser?.close();
  await api?.close();
});

async function openPage(url: string, viewport?: { width: number; height: number }): Promise<Page> {
  const context = await browser.newContext(viewport ? { viewport } : {});
  contexts.push(context);
  const page = await context.newPage();
  await page.goto(`${api.baseUrl}${url}`);
  return page;
}

async function signIn(page: Page): Promise<void> {
  await page.goto(`${api.baseUrl}/login`);
  await page.getByTestId('login-username').fill('olive');
  await page.getByTestId('login-password').fill(PASSWORD);
  await page.getByTestId('login-submit').click();
  await page.waitForURL(`${api.baseUrl}/`);
  await page.getByTestId('signed-in-as').waitFor();
}

async function playerStatus(page: Page): Promise<string | null> {
  return page.getByTestId('player-status').textContent();
}

function serverScreenProducers() {
  return (api.voice!.channels.get(CHANNEL)?.producers() ?? []).filter(
    (producer) => (producer.appData as { source?: string }).source === 'screen',
  );
}

async function sharePresetOptions(page: Page): Promise<string[]> {
  return page
    .getByTestId('share-preset')
    .locator('option')
    .evaluateAll((options) => options.map((option) => option.getAttribute('value') ?? ''));
}

describe('spectating and share moderation in Chromium', () => {
  it('a spectator on /watch switches from the offline stream to a share and back, decoding it and hearing the sharer beside two voice viewers; a moderator stops the share on every page and caps the channel', async () => {
    // The spectator comes first: the channel has no stream and no share yet.
    const spectator = await openPage(`/watch/${CHANNEL}?name=Spec`);
    await eventually(async () => (await playerStatus(spectator)) === 'offline', 15_000, 'offline');

    const sharer = await openPage(`/voice/${CHANNEL}?name=Sue&autojoin=1&share=1`);
    await eventually(
      async () => (await hearthState(sharer))?.sharing === 'live',
      20_000,
      'the share to go live',
    );
    const sharerId = (await hearthState(sharer))!.peerId!;

    const moderator = await openPage('/login');
    await signIn(moderator);
    await moderator.goto(`${api.baseUrl}/voice/${CHANNEL}?autojoin=1`);
    const viewer = await openPage(`/voice/${CHANNEL}?name=Val&autojoin=1`, SMALL_WINDOW);

    // Every viewer decodes Sue's screen at the layer its tile needs; the watch page switched to
    // the share by itself, without a reload.
    await expectTileDecoding(moderator, 1920, 'the top layer at the moderator');
    await expectTileDecoding(viewer, 960, 'the low layer at the small viewer');
    await expectTileDecoding(spectator, 1920, 'the top layer at the spectator');
    expect(await playerStatus(spectator)).toBe('screen share');
    expect(await spectator.getByTestId('share-by').textContent()).toContain('Sue');
    const watching = (await spectatorState(spectator))!;
    expect(watching).toMatchObject({ spectating: true, connection: 'connected' });
    expect(watching.sharerIds).toEqual([sharerId]);
    expect(watching.screens).toMatchObject([
      { peerId: sharerId, spatialLayer: 1, preferredSpatialLayer: 1 },
    ]);
    // No voice roster lists the spectator.
    const rosterNames = (await hearthState(moderator))!.participants.map((p) => p.displayName);
    expect(rosterNames.sort()).toEqual(['Olive Owner', 'Sue', 'Val']);

    // The spectator hears two growing audio streams from Sue: her screen's audio and her voice.
    await eventually(
      async () => {
        const before = await spectatorInboundAudio(spectator);
        await new Promise((resolve) => setTimeout(resolve, 500));
        const after = await spectatorInboundAudio(spectator);
        const growing = after.filter(
          (stream) =>
            stream.peerId === sharerId &&
            stream.bytesReceived >
              (before.find((old) => old.consumerId === stream.consumerId)?.bytesReceived ?? 0),
        );
        return growing.length === 2 && bytesByPeer(after).size === 1;
      },
      15_000,
      "Sue's screen audio and microphone at the spectator",
    );

    // A hidden watch tab receives no frames, and gets them again once visible.
    await setHidden(spectator, true);
    await eventually(
      async () => (await framesDecodedIn(spectator, 1000)) === 0,
      10_000,
      'the hidden watch tab to receive no frames',
    );
    await setHidden(spectator, false);
    await eventually(
      async () => (await framesDecodedIn(spectator, 1000)) > 0,
      10_000,
      'the visible watch tab to receive frames again',
    );

    // Only the moderator, who outranks Sue, is offered to stop her share; a guest is not.
    expect(await viewer.getByTestId('screen-stop').count()).toBe(0);
    expect(await spectator.getByTestId('screen-stop').count()).toBe(0);
    await moderator.getByTestId('screen-stop').click();

    // The tiles go on every page, Sue's capture stops and she is told why, and the watch page
    // goes back to the channel's (offline) stream.
    for (const page of [moderator, viewer, spectator]) {
      await eventually(
        async () => (await tileVideos(page)).length === 0,
        10_000,
        'the tiles to go',
      );
    }
    await eventually(
      async () => (await hearthState(sharer))!.sharing === 'off',
      10_000,
      "Sue's share to end at her page",
    );
    expect(((await sharer.getByTestId('voice-error').textContent()) ?? '').trim()).not.toBe('');
    await eventually(
      async () =>
        (await playerStatus(spectator)) === 'offline' &&
        (await spectatorState(spectator))!.spectating === false,
      15_000,
      'the watch page to fall back to the offline stream',
    );
    await eventually(
      async () => serverScreenProducers().length === 0,
      5000,
      'no screen producer on the server',
    );
    // Everyone in voice stays there.
    expect((await hearthState(viewer))!.participants).toHaveLength(3);

    // The moderator caps the channel's shares at 720p30; a viewer who joins again is offered
    // that preset alone.
    expect(await sharePresetOptions(viewer)).toContain('1080p30');
    await moderator.getByTestId('channel-max-share-preset').selectOption('720p30');
    await moderator.getByTestId('channel-settings-saved').waitFor();
    const channel = await fetch(`${api.baseUrl}/api/channels/${CHANNEL}`, { headers: operator() });
    expect(((await channel.json()) as { maxSharePreset: string }).maxSharePreset).toBe('720p30');
    await viewer.reload();
    await eventually(
      async () => (await hearthState(viewer))?.connection === 'connected',
      20_000,
      'the viewer to join again',
    );
    expect(await sharePresetOptions(viewer)).toEqual(['720p30']);
  }, 180_000);
});
