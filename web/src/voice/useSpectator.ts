import { onScopeDispose, shallowRef, watch, type Ref } from 'vue';
import type { ChannelShare } from '../player/useStreamStatus';
import { installSpectatorDebugHook } from './debug-hook';
import { DeviceLoader } from './device-loader';
import { SpectatorClient, type SpectatorState } from './spectator-client';

/** Settings of `useSpectator`. */
export interface UseSpectatorOptions {
  /** The channel to watch. */
  channel: string;
  /** The channel's live share as presence reports it, which starts and ends spectating. */
  share: Readonly<Ref<ChannelShare | null>>;
  /** Name of the guest session to watch as while nobody is signed in. */
  guestName?: string;
  /** Exposes the spectator as `window.__hearthSpectator` for automated tests. */
  debugHook?: boolean;
}

/** What `useSpectator` returns: the spectator's state and the actions on it. */
export interface Spectating {
  /** The spectator while the page watches a share over WebRTC; null while it shows the stream. */
  state: Readonly<Ref<SpectatorState | null>>;
  /** Why watching the last share failed, while the page shows the stream instead. */
  failure: Readonly<Ref<string | null>>;
  /** Asks for the simulcast layer of a share that fits its tile (0 lowest). */
  setScreenLayer(consumerId: string, spatialLayer: number): void;
  /** Mutes or unmutes the share's audio on this page. */
  setAudioMuted(muted: boolean): void;
  /** Starts audio blocked by the autoplay policy; call it from a click. */
  enableAudio(): void;
  /**
   * Stops watching over WebRTC now, closing the spectator's transports and consumers, because the
   * page watches the share another way. Nothing is held against the share: once `share` turns
   * null and then names it again, it is watched again.
   */
  close(): void;
}

// Presence may report a share for a few seconds after it ended. A sharer whose share the
// spectator saw end (or failed to watch) is not watched again until presence drops it or this
// long has passed.
const ENDED_SHARE_HOLD_MS = 10_000;

/**
 * Watches a channel's screen shares over WebRTC as a receive-only spectator whenever presence
 * reports one, and stops once the spectator sees the last share end, so the page can show the
 * channel's stream again. It owns the client it creates and closes it when the scope is disposed.
 */
export function useSpectator(options: UseSpectatorOptions): Spectating {
  const state = shallowRef<SpectatorState | null>(null);
  const failure = shallowRef<string | null>(null);
  const devices = new DeviceLoader();
  let client: SpectatorClient | null = null;
  // The viewer's choice outlives the client of one share.
  let audioMuted = false;
  let stopState: (() => void) | null = null;
  let heldShare: { peerId: string; until: number } | null = null;
  let holdTimer: ReturnType<typeof setTimeout> | null = null;

  function start(): void {
    const next = new SpectatorClient({
      channel: options.channel,
      guestName: options.guestName,
      devices,
    });
    client = next;
    stopState = next.events.on('state', (value) => {
      if (value.shareOver) stop(null);
      else if (value.connection === 'closed') stop(value.error ?? value.closeReason);
      else state.value = value;
    });
    next.setAudioMuted(audioMuted);
    state.value = next.state;
    next.open();
  }

  // Back to the stream: the share ended, or could not be watched for `reason`.
  function stop(reason: string | null): void {
    const peerId = options.share.value?.peerId;
    if (peerId !== undefined) hold(peerId);
    release();
    failure.value = reason;
  }

  function release(): void {
    stopState?.();
    stopState = null;
    client?.close();
    client = null;
    state.value = null;
  }

  function hold(peerId: string): void {
    heldShare = { peerId, until: Date.now() + ENDED_SHARE_HOLD_MS };
    if (holdTimer) clearTimeout(holdTimer);
    holdTimer = setTimeout(() => {
      holdTimer = null;
      heldShare = null;
      follow(options.share.value);
    }, ENDED_SHARE_HOLD_MS);
  }

  function follow(share: ChannelShare | null): void {
    if (share === null) {
      heldShare = null;
      return;
    }
    if (client) return;
    if (heldShare?.peerId === share.peerId && Date.now() < heldShare.until) return;
    failure.value = null;
    start();
  }

  watch(options.share, follow, { immediate: true });
  const removeHook = options.debugHook ? installSpectatorDebugHook(() => client) : null;

  onScopeDispose(() => {
    if (holdTimer) clearTimeout(holdTimer);
    release();
    removeHook?.();
  });

  return {
    state,
    failure,
    setScreenLayer: (consumerId, spatialLayer) => client?.setScreenLayer(consumerId, spatialLayer),
    setAudioMuted(muted) {
      audioMuted = muted;
      client?.setAudioMuted(muted);
    },
    enableAudio: () => void client?.enableAudio(),
    close() {
      release();
      failure.value = null;
    },
  };
}
