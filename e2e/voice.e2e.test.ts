import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureChannel } from '../api/test/support/accounts';
import { startTestApi, type TestApi } from '../api/test/support/server';
import { expectAudioFrom, hearthState, launchChromium } from './support/browser';
import { eventually } from './support/wait';

const webDistDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../web/dist');

let api: TestApi;
let browser: Browser;
const contexts: BrowserContext[] = [];

beforeAll(async () => {
  // Two workers, so listeners' edges sit on another worker than the core: the cascade is real.
  api = await startTestApi({ api: { webDistDir }, voice: { numWorkers: 2 } });
  browser = await launchChromium();
});

afterAll(async () => {
  for (const context of contexts) await context.close();
  await browser?.close();
  await api?.close();
});

async function openGuest(name: string, channel: string): Promise<Page> {
  const context = await browser.newContext();
  contexts.push(context);
  const page = await context.newPage();
  await page.goto(`${api.baseUrl}/voice/${channel}?name=${encodeURIComponent(name)}&autojoin=1`);
  return page;
}

async function participantCount(page: Page): Promise<number> {
  return page.locator('[data-testid="participant"]').count();
}

function serverTotals() {
  return api.voice!.pool.loads().reduce(
    (sum, load) => ({
      transports: sum.transports + load.transports,
      consumers: sum.consumers + load.consumers,
    }),
    { transports: 0, consumers: 0 },
  );
}

describe('voice channel in Chromium', () => {
  it('three guests hear each other, see the active speaker, leave and recover from a lost WebSocket', async () => {
    const channel = 'e2e';
    // Guests join channels; creating one is for moderators (here the operator token).
    await ensureChannel(api.baseUrl, channel);
    const pages = [
      await openGuest('Ada', channel),
      await openGuest('Bo', channel),
      await openGuest('Cy', channel),
    ];

    for (const page of pages) {
      await eventually(
        async () =>
          (await hearthState(page))?.connection === 'connected' &&
          (await participantCount(page)) === 3,
        20_000,
        'three participants on every page',
      );
    }

    // Each page receives audio from the two others, through an edge router.
    for (const page of pages) {
      const state = await hearthState(page);
      expect(state!.participants.map((p) => [p.guest, p.rank])).toEqual([
        [true, 0],
        [true, 0],
        [true, 0],
      ]);
      const sources = await expectAudioFrom(page, 2);
      expect(sources).not.toContain(state!.peerId);
    }
    const layout = api.voice!.channels.get(channel)!.layout();
    expect(layout.edges.some((edge) => edge.workerIndex !== layout.core.workerIndex)).toBe(true);

    // The fake microphone beeps, so the server picks a dominant speaker and every UI marks one.
    for (const page of pages) {
      await eventually(
        async () =>
          (await page
            .locator('[data-testid="participant"][data-active-speaker="true"]')
            .count()) === 1,
        15_000,
        'an active speaker in the UI',
      );
    }

    // Each page reports its statistics: every roster shows everyone's connection as good, and
    // the node lists each link for moderators.
    for (const page of pages) {
      await eventually(
        async () => (await page.locator('[data-testid="link-quality"].good').count()) === 3,
        15_000,
        'three good connections in the roster',
      );
    }
    expect(
      api
        .voice!.channels.get(channel)!
        .links()
        .map((link) => link.quality),
    ).toEqual(['good', 'good', 'good']);

    // One page leaves: the others see it go and the server's counts drop.
    const before = serverTotals();
    await pages[2]!.getByTestId('leave').click();
    for (const page of pages.slice(0, 2)) {
      await eventually(
        async () => (await participantCount(page)) === 2,
        10_000,
        'the leaver to disappear',
      );
    }
    await eventually(
      async () => api.voice!.channels.get(channel)?.peerCount === 2,
      5000,
      'server peer count 2',
    );
    const after = serverTotals();
    // The leaver had two transports and two consumers; the others each lose one consumer of it.
    expect(after.transports).toBeLessThanOrEqual(before.transports - 2);
    expect(after.consumers).toBeLessThanOrEqual(before.consumers - 4);

    // One page loses its WebSocket: it reconnects by itself, with a new join token since each
    // admits one connection, and audio flows both ways again.
    const dropped = pages[0]!;
    const joinsBefore = (await hearthState(dropped))!.joinCount;
    await dropped.evaluate(() =>
      (globalThis as unknown as { __hearth: { dropSignaling(): void } }).__hearth.dropSignaling(),
    );
    await eventually(
      async () => {
        const state = await hearthState(dropped);
        return state?.connection === 'connected' && state.joinCount > joinsBefore;
      },
      20_000,
      'the dropped page to rejoin',
    );
    await expectAudioFrom(dropped, 1);
    await expectAudioFrom(pages[1]!, 1);
    await eventually(
      async () => (await participantCount(pages[1]!)) === 2,
      10_000,
      'two participants after rejoin',
    );
  }, 120_000);
});
