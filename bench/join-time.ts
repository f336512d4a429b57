import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { startTestApi } from '../api/test/support/server';
import { eventually, launchChromium } from '../e2e/support/browser';
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
  sequential: JoinTimes;
  concurrent: JoinTimes;
}

const webDistDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../web/dist');

interface Timings {
  joinStartedAt: number | null;
  firstRemoteAudioAt: number | null;
}

async function openAndTime(browser: Browser, baseUrl: string, channel: string, name: string) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${baseUrl}/voice/${channel}?name=${name}&autojoin=1`);
  let timings: Timings | null = null;
  await eventually(
    async () => {
      timings = await readTimings(page);
      return timings?.firstRemoteAudioAt != null;
    },
    20_000,
    `${name} to receive remote audio`,
  );
  const { joinStartedAt, firstRemoteAudioAt } = timings! as Timings;
  return { context, ms: firstRemoteAudioAt! - joinStartedAt! };
}

function readTimings(page: Page): Promise<Timings | null> {
  return page.evaluate(
    () =>
      (globalThis as unknown as { __hearth?: { timings(): unknown } }).__hearth?.timings() ?? null,
  ) as Promise<Timings | null>;
}

function summarize(samples: number[]): JoinTimes {
  const rounded = samples.map((ms) => round(ms));
  return {
    samples: rounded,
    p50: round(percentile(samples, 50)),
    p95: round(percentile(samples, 95)),
    max: round(Math.max(...samples)),
  };
}

/**
 * Measures, in Chromium, the time from the start of a join to the first remote audio packet, for
 * `count` joins one after another and `count` joins at once, each into a channel with one speaker.
 */
export async function runJoinBenchmark(count: number): Promise<JoinResult> {
  const api = await startTestApi({ api: { webDistDir }, voice: { numWorkers: 2 } });
  const browser = await launchChromium();
  try {
    const speakerContext = await browser.newContext();
    const speaker = await speakerContext.newPage();
    await speaker.goto(`${api.baseUrl}/voice/join-bench?name=speaker&autojoin=1`);
    await eventually(
      async () => api.voice.channels.get('join-bench')?.peerCount === 1,
      20_000,
      'the speaker to join',
    );

    const sequential: number[] = [];
    for (let index = 0; index < count; index++) {
      const { context, ms } = await openAndTime(browser, api.baseUrl, 'join-bench', `seq-${index}`);
      sequential.push(ms);
      await context.close();
    }

    const concurrentRuns = await Promise.all(
      Array.from({ length: count }, (_, index) =>
        openAndTime(browser, api.baseUrl, 'join-bench', `con-${index}`),
      ),
    );
    for (const run of concurrentRuns) await run.context.close();
    await speakerContext.close();
    return {
      sequential: summarize(sequential),
      concurrent: summarize(concurrentRuns.map((run) => run.ms)),
    };
  } finally {
    await browser.close();
    await api.close();
  }
}
