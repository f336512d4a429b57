import { computed, onScopeDispose, ref, shallowRef, watch, type Ref } from 'vue';
import {
  Playback,
  type PlaybackPhase,
  type PlaybackReadings,
  type PlaybackState,
} from './playback';

/** A stream to play. */
export interface PlayerSource {
  /** Master playlist URL. */
  url: string;
  /** Identifies the broadcast: a new stream at the same URL must be loaded afresh. */
  streamId: string;
}

/** Settings of `useHlsPlayer`. */
export interface UseHlsPlayerOptions {
  /** The element to play in; playback starts once it is mounted. */
  video: Readonly<Ref<HTMLVideoElement | null>>;
  /** What to play; null stops playback. */
  source: Readonly<Ref<PlayerSource | null>>;
}

/** Where the player is: `idle` without a source, otherwise the playback's phase. */
export type PlayerPhase = 'idle' | PlaybackPhase;

/** What `useHlsPlayer` returns: the player's state and the actions on it. */
export interface HlsPlayer {
  /** Where the player is. */
  phase: Readonly<Ref<PlayerPhase>>;
  /** State of the current playback, or null while idle. */
  playback: Readonly<Ref<PlaybackState | null>>;
  /** Position and latency, refreshed twice a second while playing. */
  readings: Readonly<Ref<PlaybackReadings | null>>;
  /** Whether the video is muted; it starts muted, as browsers only autoplay muted video. */
  muted: Readonly<Ref<boolean>>;
  /** Picks a quality level, or -1 for automatic selection. */
  setLevel(index: number): void;
  /** Mutes or unmutes; unmuting must come from a click. */
  setMuted(muted: boolean): void;
  /** Starts playback that the autoplay policy blocked; call it from a click. */
  play(): void;
  /** Loads the source again after an error. */
  retry(): void;
  /** Position and latency as of now, for callers that cannot wait for the next refresh. */
  readNow(): PlaybackReadings | null;
}

const READINGS_INTERVAL_MS = 500;

/**
 * An HLS player on a video element. It owns one playback per source, replacing it when the
 * source changes, and its readings timer; it stops both and empties the element when the
 * calling scope is disposed.
 */
export function useHlsPlayer(options: UseHlsPlayerOptions): HlsPlayer {
  const playbackState = shallowRef<PlaybackState | null>(null);
  const readings = shallowRef<PlaybackReadings | null>(null);
  const muted = ref(true);
  let playback: Playback | null = null;
  let readingsTimer: ReturnType<typeof setInterval> | null = null;

  function stop(): void {
    playback?.close();
    playback = null;
    if (readingsTimer) clearInterval(readingsTimer);
    readingsTimer = null;
    playbackState.value = null;
    readings.value = null;
  }

  function start(): void {
    stop();
    const video = options.video.value;
    const source = options.source.value;
    if (!video || !source) return;
    video.muted = muted.value;
    const next = new Playback(video, source.url);
    next.events.on('state', (value) => {
      playbackState.value = value;
    });
    playback = next;
    playbackState.value = next.state;
    readingsTimer = setInterval(() => {
      readings.value = next.readings();
    }, READINGS_INTERVAL_MS);
  }

  // The element can also be muted from outside (keyboard media keys, picture-in-picture controls).
  function onVolumeChange(event: Event): void {
    muted.value = (event.target as HTMLVideoElement).muted;
  }

  watch(
    options.video,
    (video, previous) => {
      previous?.removeEventListener('volumechange', onVolumeChange);
      video?.addEventListener('volumechange', onVolumeChange);
    },
    { immediate: true },
  );
  // Keyed by URL and stream id rather than the source object, which is rebuilt whenever anything
  // about the stream changes, such as its viewer count.
  watch(
    [options.video, () => options.source.value?.url, () => options.source.value?.streamId],
    start,
    { immediate: true },
  );

  onScopeDispose(() => {
    options.video.value?.removeEventListener('volumechange', onVolumeChange);
    stop();
  });

  return {
    phase: computed(() => playbackState.value?.phase ?? 'idle'),
    playback: playbackState,
    readings,
    muted,
    setLevel: (index) => playback?.setLevel(index),
    setMuted(value) {
      muted.value = value;
      const video = options.video.value;
      if (video) video.muted = value;
    },
    play: () => playback?.play(),
    retry: start,
    readNow: () => playback?.readings() ?? null,
  };
}
