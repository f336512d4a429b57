import type { PlayerPhase } from './useHlsPlayer';
import type { StreamStatus } from './useStreamStatus';

/** What a watch page shows, combining the channel's broadcast status with the player's phase. */
export type WatchStatus = 'offline' | 'starting' | 'loading' | 'playing' | 'ended' | 'error';

/**
 * The watch page's status. `loading` covers both the first status request and a live stream
 * whose first frames are on the way; `error` is a failed playback, or a status that could not be
 * read at all.
 */
export function watchStatus(
  stream: StreamStatus,
  player: PlayerPhase,
  statusError: string | null,
): WatchStatus {
  switch (stream) {
    case 'unknown':
      return statusError === null ? 'loading' : 'error';
    case 'live':
      if (player === 'playing' || player === 'error') return player;
      return 'loading';
    default:
      return stream;
  }
}
