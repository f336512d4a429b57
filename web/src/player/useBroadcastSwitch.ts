import type { LiveStream } from '@hearth/protocol';
import { computed, onScopeDispose, shallowRef, watch, type Ref } from 'vue';
import { info } from '../log';
import type { SpectatorState } from '../voice/spectator-client';
import type { PlaybackReadings } from './playback';
import type { HlsPlayer, PlayerSource } from './useHlsPlayer';
import type { ChannelShare } from './useStreamStatus';

/** The HLS player as the switch drives it: its phase and position, and its sound. */
export type SwitchPlayer = Pick<HlsPlayer, 'phase' | 'readings' | 'setMuted'>;

/** The WebRTC spectator as the switch drives it. */
export interface SwitchSpectator {
  /** The spectator while it watches a share over WebRTC; null while it does not. */
  state: Readonly<Ref<Pick<SpectatorState, 'audioMuted' | 'audioBlocked'> | null>>;
  /** Stops watching over WebRTC now, closing its transport and consumers. */
  close(): void;
}

/** Settings of `useBroadcastSwitch`. */
export interface UseBroadcastSwitchOptions<P extends SwitchPlayer, S extends SwitchSpectator> {
  /** The channel's live share, and whether it plays as the channel's HLS stream. */
  share: Readonly<Ref<ChannelShare | null>>;
  /** The channel's current or just ended stream. */
  stream: Readonly<Ref<LiveStream | null>>;
  /** Creates the page's HLS player, which plays what `source` names. */
  createPlayer(source: Readonly<Ref<PlayerSource | null>>): P;
  /** Creates the page's spectator, which watches the share `share` names over WebRTC. */
  createSpectator(share: Readonly<Ref<ChannelShare | null>>): S;
  /** How long the hidden player may take to show frames before a switch is given up. */
  switchTimeoutMs?: number;
}

/**
 * How the page watches. `webrtc`: a share over WebRTC, and the channel's stream only while the
 * spectator shows nothing. `switching`: the share over WebRTC while its broadcast loads in the
 * hidden player. `broadcast`: the share as the channel's HLS stream, with no spectator.
 */
export type WatchPath = 'webrtc' | 'switching' | 'broadcast';

/** A move of this page from WebRTC onto the share's broadcast. */
export interface BroadcastMove {
  /** About how far the broadcast runs behind live, in whole seconds, or null when unknown. */
  behindSeconds: number | null;
}

/** What `useBroadcastSwitch` returns. */
export interface BroadcastSwitch<P, S> {
  /** The page's HLS player. */
  player: P;
  /** The page's WebRTC spectator. */
  spectator: S;
  /** How the page watches. */
  path: Readonly<Ref<WatchPath>>;
  /** Set once the page moved from WebRTC onto the broadcast, until it leaves the broadcast. */
  moved: Readonly<Ref<BroadcastMove | null>>;
}

// Long enough for a cold hls.js start on a slow edge (master, media playlist, two segments);
// the viewer keeps watching over WebRTC meanwhile, so waiting costs nothing.
const SWITCH_TIMEOUT_MS = 15_000;

/**
 * Decides between a channel's share over WebRTC and its bridge onto the channel's HLS stream.
 * A page that finds the share already on the broadcast plays HLS and never opens WebRTC. A page
 * watching over WebRTC stays there while only new spectators go to the broadcast; when the api
 * moves WebRTC spectators too, it loads HLS in the hidden player, and once its frames advance
 * shows it, carries the sound over and closes the spectator; if HLS does not play in time, it
 * stays on WebRTC and tries again on the next status change. A page on the broadcast stays
 * there until the broadcast ends. It owns the player and the spectator it creates, and its timer.
 */
export function useBroadcastSwitch<P extends SwitchPlayer, S extends SwitchSpectator>(
  options: UseBroadcastSwitchOptions<P, S>,
): BroadcastSwitch<P, S> {
  const timeoutMs = options.switchTimeoutMs ?? SWITCH_TIMEOUT_MS;
  const path = shallowRef<WatchPath>(options.share.value?.broadcast ? 'broadcast' : 'webrtc');
  const moved = shallowRef<BroadcastMove | null>(null);
  let switchTimer: ReturnType<typeof setTimeout> | null = null;
  // Position of the hidden player's first reading while playing: frames advance past it.
  let firstPlayingTime: number | null = null;

  // The spectator once it exists: which share it is given depends on its state.
  const created = shallowRef<SwitchSpectator | null>(null);
  const spectator = options.createSpectator(
    computed(() => {
      const share = options.share.value;
      if (!share || path.value === 'broadcast') return null;
      // A share already on the broadcast is never opened over WebRTC; one watched there stays
      // until the switch closes it.
      return !share.broadcast || created.value?.state.value ? share : null;
    }),
  );
  created.value = spectator;
  const watchingOverWebRtc = () => spectator.state.value !== null;
  const liveSource = computed<PlayerSource | null>(() => {
    const stream = options.stream.value;
    return stream?.state === 'live' ? { url: stream.playbackUrl, streamId: stream.id } : null;
  });
  const player = options.createPlayer(
    computed(() => (path.value === 'webrtc' && watchingOverWebRtc() ? null : liveSource.value)),
  );

  function decide(): void {
    const share = options.share.value;
    if (!share) {
      endSwitch();
      path.value = 'webrtc';
      moved.value = null;
    } else if (!share.broadcast) {
      // New spectators go to WebRTC again; a page already on the broadcast stays there while it
      // plays, and one still switching keeps WebRTC.
      if (path.value === 'switching') {
        endSwitch();
        path.value = 'webrtc';
      } else if (path.value === 'broadcast' && liveSource.value === null) {
        path.value = 'webrtc';
        moved.value = null;
      }
    } else if (path.value === 'webrtc') {
      if (!watchingOverWebRtc()) path.value = 'broadcast';
      else if (share.moveWebrtc) beginSwitch();
    }
  }

  function beginSwitch(): void {
    path.value = 'switching';
    firstPlayingTime = null;
    switchTimer = setTimeout(() => {
      switchTimer = null;
      giveUp(`the broadcast did not play within ${timeoutMs / 1000} s`);
    }, timeoutMs);
  }

  function onPlayer(): void {
    if (path.value !== 'switching') return;
    const phase = player.phase.value;
    if (phase === 'error') {
      giveUp('the broadcast failed to play');
      return;
    }
    const time = player.readings.value?.currentTime;
    // A stall or a reload starts the count again: the frames must advance while playing.
    if (phase !== 'playing' || time === undefined) firstPlayingTime = null;
    else if (firstPlayingTime === null) firstPlayingTime = time;
    else if (time > firstPlayingTime) completeSwitch();
  }

  function completeSwitch(): void {
    endSwitch();
    const watched = spectator.state.value;
    const audible = watched !== null && !watched.audioMuted && !watched.audioBlocked;
    path.value = 'broadcast';
    spectator.close();
    if (audible) player.setMuted(false);
    moved.value = { behindSeconds: broadcastDelaySeconds(player.readings.value) };
  }

  // Nothing the viewer needs to know: the share goes on over WebRTC (or, if the spectator
  // stopped meanwhile, in the player, which shows its own state).
  function giveUp(reason: string): void {
    endSwitch();
    path.value = watchingOverWebRtc() ? 'webrtc' : 'broadcast';
    info(`no switch to the broadcast: ${reason}; trying again on the next status change`);
  }

  function endSwitch(): void {
    if (switchTimer) clearTimeout(switchTimer);
    switchTimer = null;
  }

  watch([options.share, options.stream], decide);
  watch([player.phase, player.readings], onPlayer);
  // A spectator that stopped by itself while the share is on the broadcast is not reopened.
  watch(watchingOverWebRtc, (watching) => {
    if (!watching && path.value === 'webrtc' && options.share.value?.broadcast) {
      path.value = 'broadcast';
    }
  });

  onScopeDispose(endSwitch);

  return { player, spectator, path, moved };
}

// Target durations a player of a playlist without parts sits behind live: hls.js's default.
const PLAIN_HLS_TARGET_DURATIONS_BEHIND = 3;

/**
 * About how far a broadcast runs behind live, in whole seconds: the player's own latency figure
 * (program date-time, or the distance to the live edge), or else the most it can be, for a
 * playlist without parts, from its target duration. Null before the player knows either.
 */
export function broadcastDelaySeconds(readings: PlaybackReadings | null): number | null {
  if (readings?.latencySeconds != null) return Math.max(1, Math.round(readings.latencySeconds));
  if (readings?.targetDuration != null) {
    return Math.round(readings.targetDuration * PLAIN_HLS_TARGET_DURATIONS_BEHIND);
  }
  return null;
}
