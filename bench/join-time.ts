import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { voiceJoinSchema } from '@hearth/protocol';
import { ensureChannel, guestSession, sendJson } from '../api/test/support/sessions';
import { startTestApi, TestSignalingClient, type TestApi } from '../api/test/support/server';
import { launchChromium } from '../e2e/support/browser';
import { eventually } from '../e2e/support/wait';
import { joinPlainSpeaker } from '../voice-sfu/test/support/plain-peers';
import { PACKETS_PER_SECOND } from '../voice-sfu/test/support/rtp';
import { percentile, round } from './stats';

/** Join-to-first-remote-audio times of one batch of joins, in milliseconds. */
export interface JoinTimes {
  samples: number[];
  p50: number;
  p95: number;
  max: number;
}

/** Results of the join benchmark. */
export interface JoinResult {
  /** Chromium, joins one after another. */
  sequential: JoinTimes;
  /** Chromium, joins clicked at once. */
  concurrent: JoinTimes;
  /** Signaling only (no browser), joins one after another: the server's share of a join. */
  serverSequential: JoinTimes;
  /** Signaling only, joins at once. */
  serverConcurrent: JoinTimes;
}

interface Timings {
  joinStartedAt: number | null;
  firstRemoteAudioAt: number | null;
}

const webDistDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../web/dist');
const CHANNEL = 'join-bench';
// Pages settle this long after loading, as a user's page would before they click Join.
const SETTLE_MS = 700;

async function openSettledPage(browser: Browser, baseUrl: string, name: string) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${baseUrl}/voice/${CHANNEL}?name=${name}`);
  await page.getByTestId('join').waitFor();
  return { context, page };
}

async function clickJoinAndTime(page: Page): Promise<number> {
  await page.getByTestId('join').click();
  let timings: Timings | null = null;
  await eventually(
    async () => {
      timings = await readTimings(page);
      return timings?.firstRemoteAudioAt != null;
    },
    20_000,
    'remote audio',
  );
  const { joinStartedAt, firstRemoteAudioAt } = timings! as Timings;
  return firstRemoteAudioAt! - joinStartedAt!;
}

function readTimings(page: Page): Promise<Timings | null> {
  return page.evaluate(
    () =>
      (globalThis as unknown as { __hearth?: { timings(): unknown } }).__hearth?.timings() ?? null,
  ) as Promise<Timings | null>;
}

function summarize(samples: number[]): JoinTimes {
  return {
    samples: samples.map((ms) => round(ms)),
    p50: round(percentile(samples, 50)),
    p95: round(percentile(samples, 95)),
    max: round(Math.max(...samples)),
  };
}

async function closeAll(contexts: BrowserContext[]): Promise<void> {
  await Promise.all(contexts.map((context) => context.close()));
}

/**
 * Measures, in Chromium, the time from clicking Join to the first remote audio packet, for
 * `count` joins one after another and `count` joins clicked at once. The channel already has a
 * speaker talking without pause (an RTP client sending Opus-like packets every 20 ms), so the
 * figure is the join path itself rather than the gap to someone's next word.
 */
export async function runJoinBenchmark(count: number): Promise<JoinResult> {
  const api = await startTestApi({ api: { webDistDir }, voice: { numWorkers: 2 } });
  // Guests join only channels that exist; the operator token creates it.
  await ensureChannel(api.baseUrl, CHANNEL);
  const speaker = await joinPlainSpeaker(api.voice!, CHANNEL, 'speaker', 7000);
  const talking = setInterval(() => speaker.sender.sendOne(), 1000 / PACKETS_PER_SECOND);
  const browser = await launchChromium();
  try {
    const sequential: number[] = [];
    for (let index = 0; index < count; index++) {
      const { context, page } = await openSettledPage(browser, api.baseUrl, `seq-${index}`);
      await page.waitForTimeout(SETTLE_MS);
      sequential.push(await clickJoinAndTime(page));
      await context.close();
    }

    const pages = await Promise.all(
      Array.from({ length: count }, (_, index) =>
        openSettledPage(browser, api.baseUrl, `con-${index}`),
      ),
    );
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS * 2));
    const concurrent = await Promise.all(pages.map(({ page }) => clickJoinAndTime(page)));
    await closeAll(pages.map(({ context }) => context));

    const serverSequential: number[] = [];
    for (let index = 0; index < count; index++) {
      serverSequential.push(await timeSignalingJoin(api, `srv-seq-${index}`));
    }
    const serverConcurrent = await Promise.all(
      Array.from({ length: count }, (_, index) => timeSignalingJoin(api, `srv-con-${index}`)),
    );
    return {
      sequential: summarize(sequential),
      concurrent: summarize(concurrent),
      serverSequential: summarize(serverSequential),
      serverConcurrent: summarize(serverConcurrent),
    };
  } finally {
    clearInterval(talking);
    speaker.sender.close();
    await browser.close();
    await api.close();
  }
}

// The join path of the web client over signaling alone: ask the api for a place, connect, join,
// both transports, produce, and resume the consumer of the speaker. It stops where a browser would
// start ICE and DTLS. The guest session comes first, untimed, as a page starts it when it loads.
async function timeSignalingJoin(api: TestApi, name: string): Promise<number> {
  const guest = await guestSession(api.baseUrl, name);
  const started = performance.now();
  const answer = await sendJson(
    `${api.baseUrl}/api/voice/join`,
    'POST',
    { channel: CHANNEL },
    guest,
  );
  if (answer.status !== 200) throw new Error(`join refused with ${answer.status}`);
  const placement = voiceJoinSchema.parse(await answer.json());
  const url = new URL(placement.url, api.baseUrl.replace('http', 'ws'));
  url.searchParams.set('token', placement.token);
  const client = await TestSignalingClient.open(url.href);
  try {
    const caps = (await client.request('getRouterRtpCapabilities')) as {
      data: { rtpCapabilities: unknown };
    };
    await client.request('join', { channel: CHANNEL, rtpCapabilities: caps.data.rtpCapabilities });
    const [send] = (await Promise.all([
      client.request('createTransport', { direction: 'send' }),
      client.request('createTransport', { direction: 'recv' }),
    ])) as { data: { id: string } }[];
    const notice = await client.waitFor(
      (message) => message.kind === 'notification' && message.method === 'newConsumer',
    );
    const consumerId = (notice as { data: { consumerId: string } }).data.consumerId;
    await Promise.all([
      client.request('resumeConsumer', { consumerId }),
      client.request('produce', {
        transportId: send!.data.id,
        kind: 'audio',
        rtpParameters: {
          codecs: [{ mimeType: 'audio/opus', payloadType: 111, clockRate: 48000, channels: 2 }],
          encodings: [{ ssrc: 1 + Math.floor(Math.random() * 1e9) }],
        },
      }),
    ]);
    return performance.now() - started;
  } finally {
    client.close();
  }
}
