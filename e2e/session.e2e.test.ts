import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenResponseSchema } from '@hearth/protocol';
import { startTestApi, type TestApi } from '../api/test/support/server';
import { launchChromium } from './support/browser';

const webDistDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../web/dist');

let api: TestApi;
let browser: Browser;

beforeAll(async () => {
  api = await startTestApi({ api: { webDistDir } });
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await api?.close();
});

/** The part of the DOM's Storage the tests use; the e2e tsconfig has no DOM types. */
interface PageStorage {
  readonly length: number;
  key(index: number): string | null;
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

/** Everything the page keeps in localStorage. */
function storage(page: Page): Promise<Record<string, string>> {
  return page.evaluate(() => {
    const store = (globalThis as unknown as { localStorage: PageStorage }).localStorage;
    return Object.fromEntries(
      Array.from({ length: store.length }, (_, index) => {
        const key = store.key(index)!;
        return [key, store.getItem(key) ?? ''];
      }),
    );
  });
}

describe('the web session in Chromium', () => {
  it('moves a refresh token an earlier version stored into the cookie, keeps no token in localStorage, and restores the session after a reload', async () => {
    const registered = await fetch(`${api.baseUrl}/api/auth/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'ada', password: 'correct horse battery' }),
    });
    const tokens = tokenResponseSchema.parse(await registered.json());
    const context = await browser.newContext();
    // What the previous version kept: the whole session, refresh token included.
    await context.addInitScript(
      ({ session }) => {
        const store = (globalThis as unknown as { localStorage: PageStorage }).localStorage;
        if (store.getItem('test.seeded') === null) {
          store.setItem('test.seeded', '1');
          store.setItem('hearth.session', session);
        }
      },
      {
        session: JSON.stringify({
          accessToken: tokens.accessToken,
          refreshToken: tokens.refreshToken,
          accessExpiresAt: Date.now() + 60_000,
          user: tokens.user,
        }),
      },
    );
    const page = await context.newPage();
    const tokensSeen: string[] = [];
    page.on('response', async (response) => {
      if (response.url().endsWith('/api/auth/refresh') && response.ok()) {
        tokensSeen.push(((await response.json()) as { accessToken: string }).accessToken);
      }
    });

    await page.goto(`${api.baseUrl}/`);
    await page.getByTestId('signed-in-as').waitFor();
    expect(await page.getByTestId('signed-in-as').textContent()).toBe('ada');
    const cookies = await context.cookies();
    expect(cookies.map((cookie) => [cookie.name, cookie.httpOnly, cookie.path])).toEqual([
      ['hearth_refresh', true, '/api/auth'],
    ]);

    await page.reload();
    await page.getByTestId('signed-in-as').waitFor();
    // The remembered profile shows the name before the refresh answers: wait for the refresh.
    await expect.poll(() => tokensSeen.length).toBe(2);
    const cookiesNow = (await context.cookies()).map((cookie) => cookie.value);
    const kept = Object.values(await storage(page)).join('\n');
    const secrets = [tokens.refreshToken, tokens.accessToken, ...tokensSeen, ...cookiesNow];
    for (const secret of [...secrets, cookies[0]!.value]) {
      expect(kept).not.toContain(secret);
    }
    expect(Object.keys(await storage(page))).not.toContain('hearth.session');
  }, 60_000);
});
