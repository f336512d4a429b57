import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNginxEdge, type NginxProcess } from '@hearth/cdn-config';
import { ingestConfig } from '@hearth/stream-ingest';
import { startTestApi, type TestApi } from '../api/test/support/server';
import { TEST_BUCKET, TestS3Server } from '../stream-ingest/test/support/s3rver';
import { hearthState, launchChromium } from './support/browser';
import { exited, publishLikeObs } from './support/obs';
import { eventually } from './support/wait';

const webDistDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../web/dist');
const OPERATOR_TOKEN = 'csp-test-operator-token-that-is-long-enough';

let s3: TestS3Server;
let edge: NginxProcess;
let api: TestApi;
let browser: Browser;
let workDir: string;

beforeAll(async () => {
  s3 = await TestS3Server.start();
  edge = await startNginxEdge({ originUrl: s3.endpoint, bucket: TEST_BUCKET });
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-csp-test-'));
  api = await startTestApi({
    api: { webDistDir, adminToken: OPERATOR_TOKEN },
    streamUrls: { rtmpUrl: 'rtmp://127.0.0.1/live', playbackBaseUrl: edge.url },
    ingest: { config: ingestConfig({ rtmpPort: '0', workDir }), storage: s3.storage() },
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

/** What a page reported breaking its Content-Security-Policy. */
interface Violations {
  /** `securitypolicyviolation` events: the directive and what it blocked. */
  events: string[];
  /** Console errors that name the policy (what Chromium prints for each block). */
  console: string[];
}

/**
 * Opens `url` in a fresh context, recording every CSP violation from the first script on, and
 * resolves once the page's own CSP header is known to be the api's.
 */
async function openUnderCsp(url: string): Promise<{ page: Page; violations: Violations }> {
  const violations: Violations = { events: [], console: [] };
  const page = await (await browser.newContext()).newPage();
  await page.exposeFunction('__reportCspViolation', (text: string) => violations.events.push(text));
  await page.addInitScript(() => {
    // The event bubbles from the document to the window; the test's tsconfig has no DOM types.
    const scope = globalThis as unknown as {
      addEventListener(
        type: string,
        listener: (event: { effectiveDirective: string; blockedURI: string }) => void,
      ): void;
      __reportCspViolation(text: string): void;
    };
    scope.addEventListener('securitypolicyviolation', (event) =>
      scope.__reportCspViolation(`${event.effectiveDirective} blocked ${event.blockedURI}`),
    );
  });
  page.on('console', (message) => {
    if (message.type() === 'error' && /Content Security Policy/i.test(message.text())) {
      violations.console.push(message.text());
    }
  });
  const response = await page.goto(url);
  expect(response?.headers()['content-security-policy']).toMatch(/frame-ancestors 'none'/);
  return { page, violations };
}

describe('the web app under its Content-Security-Policy in Chromium', () => {
  it('joins voice and plays a live stream through the edge with no CSP violation', async () => {
    const created = await fetch(`${api.baseUrl}/api/channels`, {
      method: 'POST',
      headers: { authorization: `Bearer ${OPERATOR_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'csp' }),
    });
    expect(created.status).toBe(201);
    const issued = await api.streams.createKey('csp');
    const publisher = publishLikeObs({
      url: `rtmp://127.0.0.1:${api.ingest!.rtmp.port}/live/${issued.streamKey}`,
      seconds: 40,
    });

    const voice = await openUnderCsp(`${api.baseUrl}/voice/csp?name=Ada&autojoin=1`);
    await eventually(
      async () => (await hearthState(voice.page))?.connection === 'connected',
      20_000,
      'the voice page to connect',
    );

    const watch = await openUnderCsp(`${api.baseUrl}/watch/csp`);
    const playerTime = () =>
      watch.page.evaluate(
        () =>
          (
            globalThis as unknown as {
              __hearthPlayer?: { state(): { status: string; currentTime: number } };
            }
          ).__hearthPlayer?.state() ?? null,
      );
    await eventually(
      async () => (await playerTime())?.status === 'playing',
      30_000,
      'playback to start',
    );
    const started = (await playerTime())!.currentTime;
    await eventually(
      async () => (await playerTime())!.currentTime > started + 2,
      10_000,
      'currentTime to advance',
    );

    expect(voice.violations).toEqual({ events: [], console: [] });
    expect(watch.violations).toEqual({ events: [], console: [] });
    publisher.kill('SIGINT');
    await exited(publisher);
  }, 90_000);
});
