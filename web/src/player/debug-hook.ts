// `window.__hearthPlayer` exists for automated browser tests and benchmarks: they open a watch
// page, read what the player shows (status, quality levels, latency, the program date-time of the
// frame on screen, viewers) and switch quality levels through it. The app itself never reads it.
import { onScopeDispose, type Ref } from 'vue';
import type { HlsPlayer } from './useHlsPlayer';
import type { StreamStatusState } from './useStreamStatus';
import type { WatchStatus } from './watch-status';

/** One quality level as `window.__hearthPlayer.state()` reports it. */
export interface HearthPlayerLevel {
  /** Index to pass to `setLevel`. */
  index: number;
  /** Frame width in pixels. */
  width: number;
  /** Frame height in pixels. */
  height: number;
  /** Frames per second from the master playlist, 0 when it does not say. */
  frameRate: number;
  /** Peak bitrate from the master playlist, in bits per second. */
  bitrate: number;
}

/** What `window.__hearthPlayer.state()` reports. */
export interface HearthPlayerState {
  /** The status the page shows in `data-testid="player-status"`. */
  status: WatchStatus;
  /** `currentTime` of the video element, in seconds. */
  currentTime: number;
  /** Quality levels of the stream; empty before its master playlist loaded or in native HLS. */
  levels: HearthPlayerLevel[];
  /** Index of the level being played, or -1 while unknown. */
  currentLevel: number;
  /** True while the player picks levels by itself. */
  autoLevel: boolean;
  /**
   * Seconds behind the broadcast: from PROGRAM-DATE-TIME when the stream has it, otherwise the
   * distance to the playlist's live edge; null before a frame is shown.
   */
  latencySeconds: number | null;
  /** Wall-clock time (ms since the epoch) of the frame on screen, from PROGRAM-DATE-TIME. */
  programDateTime: number | null;
  /** People watching the channel, this page included. */
  viewers: number;
  /** The error the page shows, if any. */
  error: string | null;
}

/** The test and benchmark hook installed as `window.__hearthPlayer` by the watch view. */
export interface HearthPlayerHook {
  /** A snapshot of the player, read at the time of the call. */
  state(): HearthPlayerState;
  /** Picks a quality level by index, or -1 for automatic selection. */
  setLevel(index: number): void;
}

declare global {
  interface Window {
    /** Test and benchmark hook of the open watch view; see `HearthPlayerHook`. */
    __hearthPlayer?: HearthPlayerHook;
  }
}

/**
 * Exposes a watch page's stream status and player as `window.__hearthPlayer` until the calling
 * scope is disposed.
 */
export function usePlayerDebugHook(
  stream: StreamStatusState,
  player: HlsPlayer,
  status: Readonly<Ref<WatchStatus>>,
): void {
  const hook: HearthPlayerHook = {
    state() {
      const playback = player.playback.value;
      const readings = player.readNow();
      return {
        status: status.value,
        currentTime: readings?.currentTime ?? 0,
        levels: (playback?.levels ?? []).map(({ index, width, height, frameRate, bitrate }) => ({
          index,
          width,
          height,
          frameRate,
          bitrate,
        })),
        currentLevel: playback?.currentLevel ?? -1,
        autoLevel: (playback?.selectedLevel ?? -1) === -1,
        latencySeconds: readings?.latencySeconds ?? null,
        programDateTime: readings?.programDateTime ?? null,
        viewers: stream.viewers.value,
        error: playback?.error ?? stream.error.value,
      };
    },
    setLevel: (index) => player.setLevel(index),
  };
  window.__hearthPlayer = hook;
  onScopeDispose(() => {
    if (window.__hearthPlayer === hook) delete window.__hearthPlayer;
  });
}
