import type { Page } from 'playwright-core';
import type { InboundAudio } from './browser';

/** What `window.__hearthSpectator.state()` of a watch page reports. */
export interface SpectatorState {
  spectating: boolean;
  connection: 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'closed' | null;
  peerId: string | null;
  sharerIds: string[];
  screens: {
    consumerId: string;
    peerId: string;
    spatialLayer: number | null;
    preferredSpatialLayer: number | null;
  }[];
}

/** Reads a watch page's spectator through its test hook. */
export function spectatorState(page: Page): Promise<SpectatorState | null> {
  return page.evaluate(
    () =>
      (
        globalThis as unknown as { __hearthSpectator?: { state(): unknown } }
      ).__hearthSpectator?.state() ?? null,
  ) as Promise<SpectatorState | null>;
}

/** Reads the audio streams a watch page's spectator receives. */
export function spectatorInboundAudio(page: Page): Promise<InboundAudio[]> {
  return page.evaluate(() =>
    (
      globalThis as unknown as { __hearthSpectator: { inboundAudio(): Promise<unknown> } }
    ).__hearthSpectator.inboundAudio(),
  ) as Promise<InboundAudio[]>;
}
