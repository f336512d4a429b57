// One voice call for bench:network: the api with its embedded voice node announcing the relay's
// loopback address, one UDP impairment relay per worker port in front of it, and two Chromium
// pages in one channel: `impaired`, whose media crosses the relays, and `clean`, which reaches
// the voice node directly.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { types } from 'mediasoup';
import { Transport } from 'mediasoup/node/lib/Transport';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { ensureChannel } from '../../api/test/support/sessions';
import { startTestApi, type TestApi } from '../../api/test/support/server';
import { hearthState, launchChromium } from '../../e2e/support/browser';
import { freeRelayedRtcPorts } from '../../e2e/support/voice-nodes';
import type { ImpairmentPatch } from '../../e2e/support/impairment';
import { eventually } from '../../e2e/support/wait';
import { pageHook, type PageRecord } from './page-hook';
import { RelayGroup, type RelayStatus } from './relays';

/** The loopback address the voice node listens on. */
export const NODE_HOST = '127.0.0.1';
/** The loopback address the voice node announces, where the relays listen. */
export const RELAY_HOST = '127.0.0.2';
/** mediasoup workers of the voice node, as in the e2e tests: listeners' edges sit on another. */
export const WORKERS = 2;

const webDistDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../web/dist');

/** NACK for audio in a call: as shipped (downlink only), both ways, or none. */
export type NackMode = 'shipped' | 'both' | 'off';

/** How a call is set up. */
export interface CallOptions {
  /** Channel name. */
  channel: string;
  /** Seed of the relays' random impairments (relay i uses seed + i). */
  seed: number;
  /**
   * NACK for audio: `shipped` as the voice node ships it (its audio consumers resend on a NACK,
   * the microphones do not negotiate NACK), `both` adds NACK on the microphones as
   * `opusNack: true` would, and `off` has neither (`enableRtx: false` patched into mediasoup's
   * `Transport.consume` in this process for the call).
   */
  nack: NackMode;
  /** Milliseconds between markers in the synthetic voices. */
  markerPeriodMs: number;
  /** Milliseconds between statistics polls in the pages. */
  pollMs: number;
}

/** The two participants of a call. */
export type Role = 'impaired' | 'clean';

/** Both participants. */
export const ROLES: readonly Role[] = ['impaired', 'clean'];

/** A running call; `close()` stops everything it started. */
export interface Call {
  /** Whether Chromium offers RED (audio/red) for Opus. */
  chromiumOffersRed: boolean;
  /** The relay process's nice value. */
  relayNice: number;
  /**
   * Changes the impairment of every relay at once; resolves with the relay process's status,
   * whose `at` is the wall-clock time it took effect.
   */
  impair(patch: ImpairmentPatch): Promise<RelayStatus>;
  /** Everything each page recorded so far (drained from the pages every second). */
  record(role: Role): PageRecord;
  /** Drains the pages now. */
  flush(): Promise<void>;
  /** The relays' counters and event-loop delay. */
  relayStatus(): Promise<RelayStatus>;
  /** Stops the pages, the browser, the relays and the api. */
  close(): Promise<void>;
}

// Audio consumers get `enableRtx: false` (mediasoup's default for audio, which strips NACK from
// an audio consumer's parameters) instead of the voice node's `true`; returns the undo.
function consumeWithoutAudioNack(): () => void {
  const original = Transport.prototype.consume;
  Transport.prototype.consume = function <T extends types.AppData>(
    this: Transport,
    options: types.ConsumerOptions<T>,
  ) {
    return original.call(this, { ...options, enableRtx: false }) as Promise<types.Consumer<T>>;
  };
  return () => {
    Transport.prototype.consume = original;
  };
}

function emptyRecord(): PageRecord {
  return { inbound: [], sender: [], markersSent: [], markersHeard: [], ice: [], errors: [] };
}

async function openPage(
  browser: Browser,
  baseUrl: string,
  channel: string,
  name: string,
  hook: string,
): Promise<{ context: BrowserContext; page: Page }> {
  // The hook's worklet module comes from a blob: URL, which the app's CSP would refuse.
  const context = await browser.newContext({ bypassCSP: true });
  await context.addInitScript({ content: hook });
  const page = await context.newPage();
  await page.goto(`${baseUrl}/voice/${channel}?name=${encodeURIComponent(name)}&autojoin=1`);
  return { context, page };
}

/**
 * Starts a call and resolves once both pages are connected and hear each other's markers. The
 * relays start unimpaired; the pages are drained every second from then on.
 */
export async function startCall(options: CallOptions): Promise<Call> {
  const undoNack = options.nack === 'off' ? consumeWithoutAudioNack() : () => undefined;
  let relays: RelayGroup | undefined;
  const contexts: BrowserContext[] = [];
  let api: TestApi | undefined;
  let browser: Browser | undefined;
  let drainTimer: NodeJS.Timeout | undefined;
  const close = async () => {
    clearInterval(drainTimer);
    for (const context of contexts) await context.close().catch(() => undefined);
    await browser?.close().catch(() => undefined);
    await relays?.close();
    await api?.close();
    undoNack();
  };
  try {
    const rtcBasePort = await freeRelayedRtcPorts(NODE_HOST, RELAY_HOST, WORKERS);
    api = await startTestApi({
      api: { webDistDir },
      voice: { numWorkers: WORKERS, rtcBasePort, announcedAddress: RELAY_HOST },
    });
    relays = await RelayGroup.start({
      listenHost: RELAY_HOST,
      targetHost: NODE_HOST,
      ports: Array.from({ length: WORKERS }, (_, index) => rtcBasePort + index),
      seed: options.seed,
    });
    const group = relays;
    await ensureChannel(api.baseUrl, options.channel);
    browser = await launchChromium();
    const pages = new Map<Role, Page>();
    for (const role of ROLES) {
      const hook = pageHook({
        // The clean page skips the relay: it sends to the address the node really listens on.
        candidateRewrite: role === 'clean' ? { from: RELAY_HOST, to: NODE_HOST } : null,
        uplinkNack: options.nack === 'both',
        markerPeriodMs: options.markerPeriodMs,
        pollMs: options.pollMs,
      });
      const { context, page } = await openPage(browser, api.baseUrl, options.channel, role, hook);
      contexts.push(context);
      pages.set(role, page);
    }
    for (const page of pages.values()) {
      await eventually(
        async () => (await hearthState(page))?.participants.length === 2,
        20_000,
        'both participants on each page',
      );
    }
    const records = new Map<Role, PageRecord>(ROLES.map((role) => [role, emptyRecord()]));
    let flushing: Promise<void> | null = null;
    const flush = () => {
      flushing ??= (async () => {
        for (const [role, page] of pages) {
          const drained = (await page.evaluate('window.__networkBench.drain()')) as PageRecord;
          const record = records.get(role)!;
          for (const key of Object.keys(drained) as (keyof PageRecord)[]) {
            (record[key] as unknown[]).push(...drained[key]);
          }
          for (const error of drained.errors) console.warn(`${role} page: ${error}`);
        }
      })().finally(() => (flushing = null));
      return flushing;
    };
    // Both hear each other before anything is measured.
    await eventually(
      async () => {
        await flush();
        return ROLES.every((role) => records.get(role)!.markersHeard.length >= 2);
      },
      20_000,
      'markers heard on both pages',
    );
    drainTimer = setInterval(() => void flush().catch(() => undefined), 1000);
    const chromiumOffersRed = (await pages
      .get('clean')!
      .evaluate('window.__networkBench.offersRed()')) as boolean;
    return {
      chromiumOffersRed,
      relayNice: group.nice,
      impair: (patch) => group.set(patch),
      record: (role) => records.get(role)!,
      flush,
      relayStatus: () => group.stats(),
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}
