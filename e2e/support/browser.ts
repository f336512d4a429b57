import { chromium, type Browser, type Page } from 'playwright-core';
import type { Participant } from '@hearth/protocol';
import { eventually } from './wait';

/** Debian's Chromium; tests never download a browser of their own. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/**
 * Starts headless Chromium with fake capture devices and no outside network chatter; the fake
 * camera and screen run at `fakeDeviceFps` frames per second where given (20 by default).
 */
export function launchChromium(options: { fakeDeviceFps?: number } = {}): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      options.fakeDeviceFps === undefined
        ? '--use-fake-device-for-media-stream'
        : `--use-fake-device-for-media-stream=fps=${options.fakeDeviceFps}`,
      '--use-fake-ui-for-media-stream',
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
}

/** What `window.__hearth.state()` reports. */
export interface HearthState {
  connection: 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'closed';
  peerId: string | null;
  channel: string | null;
  participants: Participant[];
  activeSpeakerId: string | null;
  joinCount: number;
  muted: boolean;
  deafened: boolean;
  sharing: 'off' | 'starting' | 'live';
  /** Each share received, with the simulcast layer forwarded (null while none is). */
  screens: { consumerId: string; peerId: string; spatialLayer: number | null }[];
}

/** One inbound audio stream as `window.__hearth.inboundAudio()` reports it. */
export interface InboundAudio {
  consumerId: string;
  peerId: string;
  bytesReceived: number;
  packetsReceived: number;
  packetsLost: number;
  nackCount: number;
  totalSamplesReceived: number;
  audibleConcealedSamples: number;
}

/** Reads the page's voice state through its test hook. */
export function hearthState(page: Page): Promise<HearthState | null> {
  return page.evaluate(
    () => (globalThis as unknown as { __hearth?: { state(): unknown } }).__hearth?.state() ?? null,
  ) as Promise<HearthState | null>;
}

/** Reads the page's inbound audio statistics through its test hook. */
export function inboundAudio(page: Page): Promise<InboundAudio[]> {
  return page.evaluate(() =>
    (
      globalThis as unknown as { __hearth: { inboundAudio(): Promise<unknown> } }
    ).__hearth.inboundAudio(),
  ) as Promise<InboundAudio[]>;
}

/** Bytes received per remote peer, summed over that peer's consumers. */
export function bytesByPeer(streams: InboundAudio[]): Map<string, number> {
  const bytes = new Map<string, number>();
  for (const stream of streams)
    bytes.set(stream.peerId, (bytes.get(stream.peerId) ?? 0) + stream.bytesReceived);
  return bytes;
}

/**
 * Resolves once the page receives growing audio from at least `sources` distinct peers: bytes
 * from each must rise between two samples half a second apart.
 */
export async function expectAudioFrom(
  page: Page,
  sources: number,
  timeoutMs = 20_000,
): Promise<string[]> {
  let growing: string[] = [];
  await eventually(
    async () => {
      const before = bytesByPeer(await inboundAudio(page));
      await new Promise((resolve) => setTimeout(resolve, 500));
      const after = bytesByPeer(await inboundAudio(page));
      growing = [...after]
        .filter(([peer, bytes]) => bytes > (before.get(peer) ?? 0) && bytes > 0)
        .map(([peer]) => peer);
      return growing.length >= sources;
    },
    timeoutMs,
    `audio from ${sources} sources`,
  );
  return growing;
}
