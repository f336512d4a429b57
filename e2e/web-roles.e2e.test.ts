import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi } from '../api/test/support/server';
import { hearthState, launchChromium } from './support/browser';
import { eventually } from './support/wait';

const webDistDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../web/dist');
const PASSWORD = 'correct horse battery';
// The stream service takes reports from any node id; the tests play the ingest node's part.
const INGEST_NODE = 'ingest-e2e';

let api: TestApi;
let browser: Browser;
let ownerToken: string;
const contexts: BrowserContext[] = [];

async function rest(method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`${api.baseUrl}${path}`, {
    method,
    headers: {
      Authorization: `Bearer ${ownerToken}`,
      ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

async function register(username: string, displayName: string): Promise<string> {
  const response = await fetch(`${api.baseUrl}/api/auth/register`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username, password: PASSWORD, displayName }),
  });
  expect(response.status).toBe(201);
  return ((await response.json()) as { accessToken: string }).accessToken;
}

async function channelNames(): Promise<string[]> {
  const response = await rest('GET', '/api/channels');
  expect(response.status).toBe(200);
  return ((await response.json()) as { channels: { name: string }[] }).channels.map(
    (channel) => channel.name,
  );
}

async function createChannel(name: string): Promise<void> {
  expect((await rest('POST', '/api/channels', { name })).status).toBe(201);
}

async function newPage(): Promise<Page> {
  const context = await browser.newContext();
  contexts.push(context);
  return context.newPage();
}

// Opens a page and waits for the app's answer on who the caller is, so that what the page
// leaves out afterwards is left out on purpose, not merely not rendered yet.
async function openAndKnowCaller(page: Page, url: string): Promise<void> {
  const me = page.waitForResponse((response) => response.url().endsWith('/api/auth/me'));
  await page.goto(`${api.baseUrl}${url}`);
  expect((await me).status()).toBe(200);
  await page.waitForLoadState('networkidle');
}

async function signIn(page: Page, username: string): Promise<void> {
  await page.goto(`${api.baseUrl}/login`);
  await page.getByTestId('login-username').fill(username);
  await page.getByTestId('login-password').fill(PASSWORD);
  await page.getByTestId('login-submit').click();
  await page.waitForURL(`${api.baseUrl}/`);
  await page.getByTestId('signed-in-as').waitFor();
}

interface Box {
  className: string;
  scrollWidth: number;
  clientWidth: number;
}

// Classes of the page's cards and channel rows whose content is wider than they are, and the
// page itself when it scrolls sideways.
function overflowing(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const { document } = globalThis as unknown as {
      document: { documentElement: Box; querySelectorAll(selector: string): Iterable<Box> };
    };
    const boxes = [document.documentElement, ...document.querySelectorAll('.card, .channel')];
    return boxes.filter((box) => box.scrollWidth > box.clientWidth).map((box) => box.className);
  });
}

function serverProducersPaused(channel: string): boolean[] {
  return (api.voice!.channels.get(channel)?.producers() ?? []).map((producer) => producer.paused);
}

beforeAll(async () => {
  api = await startTestApi({ api: { webDistDir } });
  browser = await launchChromium();
  // The first account registered on a fresh install becomes its owner.
  ownerToken = await register('olive', 'Olive Owner');
  await register('ada', 'Ada Lovelace');
  await createChannel('general');
});

afterEach(async () => {
  for (const context of contexts.splice(0)) await context.close();
});

afterAll(async () => {
  await browser?.close();
  await api?.close();
});

describe('the web app follows the roles', () => {
  it('a guest is offered no create, delete or go-live controls, and the streamer page says why', async () => {
    const page = await newPage();
    await openAndKnowCaller(page, '/');
    await page.locator('[data-testid="channel"][data-channel-name="general"]').waitFor();
    // The guest can still join and watch.
    expect(await page.getByRole('link', { name: 'Join general' }).count()).toBe(1);
    expect(await page.getByRole('link', { name: 'Watch general' }).count()).toBe(1);
    expect(await page.getByTestId('delete-channel').count()).toBe(0);
    expect(await page.getByTestId('create-channel').count()).toBe(0);
    expect(await page.getByTestId('go-live-link').count()).toBe(0);

    await openAndKnowCaller(page, '/watch/general');
    expect(await page.getByTestId('nav-go-live').count()).toBe(0);

    await openAndKnowCaller(page, '/stream/general');
    await page.getByTestId('stream-not-allowed').waitFor();
    expect(await page.getByTestId('create-key').count()).toBe(0);
    expect(await page.getByTestId('rotate-key').count()).toBe(0);
  }, 60_000);

  it('the owner is offered create, delete and go-live, and deleting asks for confirmation first', async () => {
    await createChannel('scratch');
    const page = await newPage();
    await signIn(page, 'olive');
    const row = page.locator('[data-testid="channel"][data-channel-name="scratch"]');
    await row.getByTestId('delete-channel').waitFor();
    await page.getByTestId('create-channel').waitFor();
    expect(await row.getByTestId('go-live-link').count()).toBe(1);

    await row.getByTestId('delete-channel').click();
    await row.getByTestId('delete-channel-confirm').waitFor();
    // Asking deleted nothing; cancelling neither.
    expect(await channelNames()).toContain('scratch');
    await row.getByRole('button', { name: 'Cancel' }).click();
    expect(await channelNames()).toContain('scratch');

    await row.getByTestId('delete-channel').click();
    await row.getByTestId('delete-channel-confirm').click();
    await eventually(
      async () => !(await channelNames()).includes('scratch'),
      10_000,
      'the channel to be deleted',
    );
    await row.waitFor({ state: 'detached' });
  }, 60_000);

  it('a signed-in account joins from the channel list in one click, under its own name with no name box, and deafening mutes it', async () => {
    const page = await newPage();
    await signIn(page, 'ada');
    // Accounts have no guest name box, on the list or in the room.
    expect(await page.getByTestId('display-name').count()).toBe(0);
    await page.getByRole('link', { name: 'Join general' }).click();
    await eventually(
      async () => (await hearthState(page))?.connection === 'connected',
      20_000,
      'the account to join general',
    );
    expect(await page.getByTestId('display-name').count()).toBe(0);
    const self = page.locator('[data-testid="participant"][data-self="true"]');
    expect(await self.getAttribute('data-display-name')).toBe('Ada Lovelace');
    expect(await self.getAttribute('data-guest')).toBe('false');
    await eventually(
      async () => serverProducersPaused('general').length === 1,
      10_000,
      'the microphone producer on the server',
    );
    expect(serverProducersPaused('general')).toEqual([false]);

    // Deafening mutes the microphone: in the client, on the server, and in the roster.
    await page.getByTestId('deafen').click();
    await eventually(
      async () => {
        const state = await hearthState(page);
        return state?.muted === true && state.deafened === true;
      },
      5000,
      'deafen to mute',
    );
    await eventually(
      async () => serverProducersPaused('general')[0] === true,
      5000,
      'the producer to pause',
    );
    await self.getByText('muted', { exact: true }).waitFor();

    // Undeafening restores the mute state from before: unmuted.
    await page.getByTestId('deafen').click();
    await eventually(
      async () => (await hearthState(page))?.muted === false,
      5000,
      'undeafen to unmute',
    );
    await eventually(
      async () => serverProducersPaused('general')[0] === false,
      5000,
      'the producer to resume',
    );

    // Muted before deafening stays muted after undeafening.
    await page.getByTestId('mute').click();
    await page.getByTestId('deafen').click();
    await page.getByTestId('deafen').click();
    await eventually(
      async () => {
        const state = await hearthState(page);
        return state?.deafened === false && state.muted === true;
      },
      5000,
      'undeafen to keep the earlier mute',
    );
    expect(serverProducersPaused('general')).toEqual([true]);
  }, 90_000);

  it('a moderator kicks and bans from the roster after confirming; the removed page shows why and does not reconnect', async () => {
    await createChannel('lounge');
    const owner = await newPage();
    await signIn(owner, 'olive');
    const ada = await newPage();
    await signIn(ada, 'ada');
    for (const page of [owner, ada]) {
      await page.goto(`${api.baseUrl}/voice/lounge?autojoin=1`);
    }
    const adaRow = owner.locator('[data-testid="participant"][data-display-name="Ada Lovelace"]');
    await adaRow.getByTestId('kick').waitFor({ timeout: 20_000 });
    // Nobody is offered moderation of themselves.
    const ownRow = owner.locator('[data-testid="participant"][data-self="true"]');
    expect(await ownRow.getByTestId('kick').count()).toBe(0);

    await adaRow.getByTestId('kick').click();
    expect((await hearthState(ada))?.connection).toBe('connected');
    await adaRow.getByTestId('kick-confirm').click();
    await ada.getByTestId('close-reason').waitFor({ timeout: 10_000 });
    expect(await ada.getByTestId('close-reason').textContent()).toContain(
      'You were removed from #lounge',
    );
    // A removed client stays out instead of reconnecting.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect((await hearthState(ada))?.connection).toBe('closed');
    expect(api.voice!.channels.get('lounge')?.peerCount).toBe(1);

    // A kick lets them back; a ban removes them and keeps them out.
    await ada.getByTestId('join').click();
    await adaRow.getByTestId('ban').waitFor({ timeout: 20_000 });
    await adaRow.getByTestId('ban').click();
    await adaRow.getByTestId('ban-confirm').click();
    await eventually(
      async () => (await hearthState(ada))?.connection === 'closed',
      10_000,
      'the banned page to close',
    );
    await ada.getByTestId('join').click();
    await ada.getByTestId('voice-error').waitFor({ timeout: 10_000 });
    expect((await hearthState(ada))?.connection).toBe('closed');
    expect(api.voice!.channels.get('lounge')?.peerCount).toBe(1);
  }, 90_000);

  it('rosters mark guests, and a guest joins with the name box while an account has none', async () => {
    const guest = await newPage();
    await guest.goto(`${api.baseUrl}/voice/general`);
    await guest.getByTestId('display-name').fill('Gus');
    await guest.getByTestId('join').click();
    const ada = await newPage();
    await signIn(ada, 'ada');
    await ada.goto(`${api.baseUrl}/voice/general?autojoin=1`);
    const gusRow = ada.locator('[data-testid="participant"][data-display-name="Gus"]');
    await gusRow.waitFor({ timeout: 20_000 });
    expect(await gusRow.getAttribute('data-guest')).toBe('true');
    expect(await gusRow.getByTestId('guest-badge').count()).toBe(1);
    const self = ada.locator('[data-testid="participant"][data-self="true"]');
    expect(await self.getByTestId('guest-badge').count()).toBe(0);
  }, 60_000);

  it('on a phone, channel rows fit 360 px and push-to-talk is a Talk button held on screen', async () => {
    await createChannel('a_channel_name_long_enough_to_push_a_row_past_a_phone_edge');
    const context = await browser.newContext({
      viewport: { width: 360, height: 740 },
      isMobile: true,
      hasTouch: true,
    });
    contexts.push(context);
    const page = await context.newPage();
    // The owner's rows carry every action: join, watch, go live and delete.
    await signIn(page, 'olive');
    await page.locator('[data-testid="channel"]').nth(1).waitFor();
    expect(await overflowing(page)).toEqual([]);

    await page.goto(`${api.baseUrl}/voice/general?autojoin=1`);
    await eventually(
      async () => serverProducersPaused('general').length === 1,
      20_000,
      'the microphone producer on the server',
    );
    await page.getByTestId('ptt').click();
    expect(await page.getByTestId('ptt-hint').textContent()).toContain(
      'Press and hold Talk to speak.',
    );
    expect(await page.getByTestId('ptt-hint').textContent()).not.toContain('Space');
    await eventually(
      async () => serverProducersPaused('general')[0] === true,
      5000,
      'push-to-talk to close the microphone',
    );
    const talk = page.getByTestId('talk');
    const box = (await talk.boundingBox())!;
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await page.mouse.down();
    await eventually(
      async () => serverProducersPaused('general')[0] === false,
      5000,
      'holding Talk to open the microphone',
    );
    await page.mouse.up();
    await eventually(
      async () => serverProducersPaused('general')[0] === true,
      5000,
      'releasing Talk to close the microphone',
    );
  }, 60_000);

  it('a voice channel that does not exist is "no such channel" for a member and a guest, and none is created', async () => {
    // Members may not create channels: they are told, instead of opening one by a typo.
    const member = await newPage();
    await signIn(member, 'ada');
    await member.goto(`${api.baseUrl}/voice/nowhere?autojoin=1`);
    const memberNotice = member.getByTestId('no-such-channel');
    await memberNotice.waitFor({ timeout: 15_000 });
    expect(await memberNotice.getAttribute('data-reason')).toBe('missing');
    expect(await member.title()).toBe('No such channel · Hearth');
    expect(await channelNames()).not.toContain('nowhere');

    const guest = await newPage();
    await guest.goto(`${api.baseUrl}/voice/nowhere?name=Gus&autojoin=1`);
    const guestNotice = guest.getByTestId('no-such-channel');
    await guestNotice.waitFor({ timeout: 15_000 });
    expect(await guestNotice.getAttribute('data-reason')).toBe('missing');
    expect(await channelNames()).not.toContain('nowhere');
  }, 60_000);

  it('every page is titled by where the user is, after loading and after in-app navigation', async () => {
    const page = await newPage();
    await signIn(page, 'ada');
    const titles: [string, string][] = [
      ['/', 'Channels · Hearth'],
      ['/login', 'Sign in · Hearth'],
      ['/voice/general', '#general · Hearth'],
      ['/watch/general', 'Watch general · Hearth'],
      ['/stream/general', 'Go live on general · Hearth'],
    ];
    for (const [url, title] of titles) {
      await page.goto(`${api.baseUrl}${url}`);
      await expect.poll(() => page.title()).toBe(title);
    }
    await page.goto(`${api.baseUrl}/`);
    await page.getByRole('link', { name: 'Watch general' }).click();
    await expect.poll(() => page.title()).toBe('Watch general · Hearth');
    await page.getByRole('link', { name: 'Hearth' }).click();
    await expect.poll(() => page.title()).toBe('Channels · Hearth');
  }, 60_000);

  it('/watch/<bad name> says there is no such channel, without validation text or asking the server', async () => {
    const page = await newPage();
    const asked: string[] = [];
    page.on('request', (request) => asked.push(request.url()));
    await page.goto(`${api.baseUrl}/watch/${encodeURIComponent('bad name!')}`);
    const notice = page.getByTestId('no-such-channel');
    await notice.waitFor();
    expect(await notice.getAttribute('data-reason')).toBe('invalid');
    const text = (await notice.textContent()) ?? '';
    expect(text).toContain('There is no channel called “bad name!”');
    expect(text).not.toMatch(/must be|regex|invalid/i);
    expect(await page.title()).toBe('No such channel · Hearth');
    await page.waitForLoadState('networkidle');
    expect(asked.filter((url) => url.includes('/stream') || url.includes('/ws/'))).toEqual([]);
  }, 30_000);

  it('the streamer page counts viewers who came before it, and names a rotation elsewhere as why the stream ended', async () => {
    await createChannel('cast');
    const issued = await api.streams.createKey('cast');
    const watcher = await newPage();
    await signIn(watcher, 'ada');
    await watcher.goto(`${api.baseUrl}/watch/cast`);
    await eventually(async () => (await api.streams.viewers('cast')) === 1, 10_000, 'a viewer');

    const streamer = await newPage();
    await signIn(streamer, 'olive');
    await streamer.goto(`${api.baseUrl}/stream/cast`);
    await expect
      .poll(() => streamer.getByTestId('key-id').textContent(), { timeout: 10_000 })
      .toBe(issued.key.id);

    const grant = await api.streams.authorizePublish(issued.streamKey, {
      ip: '127.0.0.1',
      nodeId: INGEST_NODE,
    });
    await api.streams.report(INGEST_NODE, { kind: 'live', streamId: grant.streamId });
    await expect
      .poll(() => streamer.getByTestId('live-status').textContent(), { timeout: 10_000 })
      .toBe('Live, 1 watching.');

    // Rotated elsewhere (the command line, another tab): the ingest node ends the stream.
    const rotated = await api.streams.rotateKey('cast');
    await api.streams.report(INGEST_NODE, {
      kind: 'ended',
      streamId: grant.streamId,
      reason: 'stream key revoked',
    });
    await expect
      .poll(() => streamer.getByTestId('live-status').textContent(), { timeout: 10_000 })
      .toContain('The stream ended because its stream key was rotated.');
    expect(await streamer.getByTestId('key-id').textContent()).toBe(rotated.key.id);
  }, 60_000);
});
