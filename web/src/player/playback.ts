import Hls, { type ErrorData, type HlsConfig, type Level } from 'hls.js';
import { TypedEmitter } from '../voice/emitter';

/** Which engine plays the stream: hls.js on MediaSource, or the browser's own HLS (Safari). */
export type PlaybackEngine = 'hls.js' | 'native';

/** Where a playback is: waiting for media, showing frames, or stopped by an error. */
export type PlaybackPhase = 'loading' | 'playing' | 'error';

/** One quality level (variant) of the stream. */
export interface PlaybackLevel {
  /** Index to pass to `setLevel`. */
  index: number;
  /** Frame width in pixels, 0 for audio-only variants. */
  width: number;
  /** Frame height in pixels, 0 for audio-only variants. */
  height: number;
  /** Frames per second from the playlist, 0 when it does not say. */
  frameRate: number;
  /** Peak bitrate from the playlist, in bits per second. */
  bitrate: number;
  /** Short name such as "720p30". */
  label: string;
}

/** What a latency figure measures. */
export type LatencySource = 'program-date-time' | 'live-edge';

/** Values that change with every frame, read on demand. */
export interface PlaybackReadings {
  /** `currentTime` of the video element, in seconds. */
  currentTime: number;
  /** How far behind the broadcast playback is, in seconds, or null before it is known. */
  latencySeconds: number | null;
  /**
   * `program-date-time`: wall clock now minus the wall-clock time the ingest stamped on the frame
   * being shown. `live-edge`: distance to the newest media the playlist lists.
   */
  latencySource: LatencySource | null;
  /** Wall-clock time (ms since the epoch) of the frame being shown, from PROGRAM-DATE-TIME. */
  programDateTime: number | null;
  /** EXT-X-TARGETDURATION of the playlist being played, in seconds, once hls.js loaded it. */
  targetDuration: number | null;
}

/** Everything there is to show about a playback. Each change produces a new object. */
export interface PlaybackState {
  /** The engine in use. */
  engine: PlaybackEngine;
  /** Where the playback is. */
  phase: PlaybackPhase;
  /** Quality levels, lowest first; empty with the native engine, which picks by itself. */
  levels: readonly PlaybackLevel[];
  /** Index of the level being played, or -1 while unknown. */
  currentLevel: number;
  /** The level the viewer picked, or -1 for automatic selection. */
  selectedLevel: number;
  /** The browser refused to start playback without a click; call `play()` from one. */
  playBlocked: boolean;
  /** Why playback stopped, when `phase` is `error`. */
  error: string | null;
}

/** Events of a playback. */
export type PlaybackEvents = {
  /** The state changed; the argument is the new state. */
  state: [PlaybackState];
};

// Live playback tuned for LL-HLS: hls.js loads the parts the origin lists, asks for the next one
// with blocking playlist reloads, and plays PART-HOLD-BACK (three part targets, about 0.7 s)
// behind the live edge. A playlist without parts (storage's, when the origin does not serve the
// stream) is played hls.js's default three target durations behind.
const HLS_CONFIG: Partial<HlsConfig> = {
  lowLatencyMode: true,
  // Behind its target, it catches up by playing at most 10 % faster, which is barely audible.
  // (No liveMaxLatencyDurationCount: hls.js accepts one only with a liveSyncDurationCount,
  // which would override PART-HOLD-BACK.)
  maxLiveSyncPlaybackRate: 1.1,
  // Nobody seeks back in this player, so old media is dropped early to keep memory flat over
  // hours of watching.
  backBufferLength: 10,
};

// Fatal errors are retried within a budget; a stream that keeps failing is reported instead of
// looping. The budget refills as old failures fall out of the window.
const RECOVERY_WINDOW_MS = 60_000;
const MAX_NETWORK_RECOVERIES = 6;
const MAX_MEDIA_RECOVERIES = 3;
// hls.js has retried a request by its own policy before it declares a network error fatal, so
// the first recovery already waits a little, and later ones longer.
const NETWORK_RECOVERY_DELAY_MS = 1_000;

const HLS_MIME_TYPE = 'application/vnd.apple.mpegurl';

/**
 * One stream played in one video element: hls.js where MediaSource works, the browser's own HLS
 * otherwise (Safari on iOS). Fatal hls.js errors are recovered by type within a bounded budget.
 * A playback serves one source; after `close()` it is done, and playing again takes a new one.
 */
export class Playback {
  /** State changes. */
  readonly events = new TypedEmitter<PlaybackEvents>();
  readonly #video: HTMLVideoElement;
  readonly #url: string;
  readonly #hls: Hls | null;
  readonly #networkRecoveries: number[] = [];
  readonly #mediaRecoveries: number[] = [];
  readonly #videoListeners: [keyof HTMLMediaElementEventMap, () => void][];
  #recoveryTimer: ReturnType<typeof setTimeout> | null = null;
  #state: PlaybackState;
  #closed = false;

  constructor(video: HTMLVideoElement, url: string) {
    this.#video = video;
    this.#url = url;
    // hls.js is preferred even where native HLS exists (desktop Safari has both): it gives the
    // quality picker, the live catch-up and the error recovery.
    this.#hls = Hls.isSupported() ? new Hls(HLS_CONFIG) : null;
    this.#state = {
      engine: this.#hls ? 'hls.js' : 'native',
      phase: 'loading',
      levels: [],
      currentLevel: -1,
      selectedLevel: -1,
      playBlocked: false,
      error: null,
    };
    // Frames that were buffered before a fatal error may still play; they do not revive a
    // playback that gave up.
    this.#videoListeners = [
      ['playing', () => this.#updateUnlessFailed({ phase: 'playing', playBlocked: false })],
      ['waiting', () => this.#updateUnlessFailed({ phase: 'loading' })],
    ];
    if (!this.#hls) this.#videoListeners.push(['error', () => this.#onNativeError()]);
    for (const [name, listener] of this.#videoListeners) video.addEventListener(name, listener);

    if (this.#hls) {
      this.#listen(this.#hls);
      this.#hls.loadSource(url);
      this.#hls.attachMedia(video);
    } else if (video.canPlayType(HLS_MIME_TYPE)) {
      video.src = url;
      this.#play();
    } else {
      this.#fail('This browser cannot play HLS streams.');
    }
  }

  /** The current state. */
  get state(): PlaybackState {
    return this.#state;
  }

  /** Reads the playback position, latency and program date-time as of now. */
  readings(): PlaybackReadings {
    const video = this.#video;
    const programDateTime = this.#programDateTime();
    // Without a decoded frame the position is a guess, and so would the latency be.
    const hasFrame = video.readyState >= HTMLMediaElement.HAVE_CURRENT_DATA;
    let latencySeconds: number | null = null;
    let latencySource: LatencySource | null = null;
    if (hasFrame && programDateTime !== null) {
      latencySeconds = (Date.now() - programDateTime) / 1000;
      latencySource = 'program-date-time';
    } else if (hasFrame) {
      const behindEdge = this.#hls ? this.#hls.latency : nativeDistanceToEdge(video);
      if (behindEdge !== null && behindEdge > 0) {
        latencySeconds = behindEdge;
        latencySource = 'live-edge';
      }
    }
    return {
      currentTime: video.currentTime,
      latencySeconds,
      latencySource,
      programDateTime,
      targetDuration: this.#hls?.latestLevelDetails?.targetduration ?? null,
    };
  }

  /**
   * Picks a quality level, or -1 for automatic selection. The switch happens at the next
   * segment, without flushing what is buffered, so playback does not stall for it.
   */
  setLevel(index: number): void {
    const hls = this.#hls;
    if (!hls || this.#closed) return;
    if (index !== -1 && !this.#state.levels.some((level) => level.index === index)) {
      throw new RangeError(`no quality level ${index}; there are ${this.#state.levels.length}`);
    }
    hls.nextLevel = index;
    this.#update({ selectedLevel: index });
  }

  /** Starts playback that the autoplay policy blocked; call it from a click. */
  play(): void {
    if (!this.#closed) this.#play();
  }

  /** Stops loading and playing, and leaves the video element empty. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#recoveryTimer) clearTimeout(this.#recoveryTimer);
    this.#recoveryTimer = null;
    for (const [name, listener] of this.#videoListeners) {
      this.#video.removeEventListener(name, listener);
    }
    if (this.#hls) {
      // Detaching removes the MediaSource from the element as part of destroy().
      this.#hls.destroy();
    } else {
      this.#video.removeAttribute('src');
      this.#video.load();
    }
    this.events.removeAllListeners();
  }

  #listen(hls: Hls): void {
    hls.on(Hls.Events.MANIFEST_PARSED, (_event, data) => {
      this.#update({ levels: describeLevels(data.levels) });
      this.#play();
    });
    hls.on(Hls.Events.LEVELS_UPDATED, (_event, data) => {
      this.#update({ levels: describeLevels(data.levels) });
    });
    hls.on(Hls.Events.LEVEL_SWITCHED, (_event, data) => {
      this.#update({ currentLevel: data.level });
    });
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (data.fatal) this.#onFatalError(hls, data);
    });
  }

  #onFatalError(hls: Hls, data: ErrorData): void {
    switch (data.type) {
      case Hls.ErrorTypes.NETWORK_ERROR: {
        const attempt = takeRecovery(this.#networkRecoveries, MAX_NETWORK_RECOVERIES);
        if (attempt === null) {
          this.#fail(`The stream cannot be loaded (${data.details}).`);
          return;
        }
        // The phase stays as it is: buffered media keeps playing while loading resumes, and the
        // element reports `waiting` by itself if it runs dry.
        this.#recoveryTimer = setTimeout(() => {
          this.#recoveryTimer = null;
          // startLoad() resumes level and segment loading, but it never asks for the master
          // playlist again: when that is what failed, only loading the source again recovers.
          if (hls.levels.length === 0) hls.loadSource(this.#url);
          else hls.startLoad();
        }, NETWORK_RECOVERY_DELAY_MS * attempt);
        return;
      }
      case Hls.ErrorTypes.MEDIA_ERROR:
        if (takeRecovery(this.#mediaRecoveries, MAX_MEDIA_RECOVERIES) === null) {
          this.#fail(`The stream cannot be decoded (${data.details}).`);
          return;
        }
        // Recovery re-attaches the media element, which plays again (and says so) once it can.
        this.#update({ phase: 'loading' });
        hls.recoverMediaError();
        return;
      default:
        this.#fail(`Playback failed (${data.details}).`);
    }
  }

  #onNativeError(): void {
    const error = this.#video.error;
    this.#fail(`Playback failed${error?.message ? `: ${error.message}` : ''}.`);
  }

  #fail(message: string): void {
    if (this.#recoveryTimer) clearTimeout(this.#recoveryTimer);
    this.#recoveryTimer = null;
    // A failed hls.js instance would keep retrying segment requests in the background.
    this.#hls?.stopLoad();
    this.#update({ phase: 'error', error: message, playBlocked: false });
  }

  #play(): void {
    this.#video.play().then(
      () => {
        if (!this.#closed) this.#update({ playBlocked: false });
      },
      (error: unknown) => {
        // NotAllowedError is the autoplay policy; an AbortError only means a newer load or a
        // close interrupted this call, which the state already reflects.
        if (this.#closed || !(error instanceof DOMException)) return;
        if (error.name === 'NotAllowedError') this.#update({ playBlocked: true });
      },
    );
  }

  #programDateTime(): number | null {
    if (this.#hls) return this.#hls.playingDate?.getTime() ?? null;
    // Safari maps PROGRAM-DATE-TIME to media time 0 through this non-standard method.
    const start = (this.#video as VideoWithStartDate).getStartDate?.().getTime();
    return start !== undefined && Number.isFinite(start)
      ? start + this.#video.currentTime * 1000
      : null;
  }

  #updateUnlessFailed(patch: Partial<PlaybackState>): void {
    if (this.#state.phase !== 'error') this.#update(patch);
  }

  #update(patch: Partial<PlaybackState>): void {
    if (this.#closed) return;
    this.#state = { ...this.#state, ...patch };
    this.events.safeEmit('state', this.#state);
  }
}

interface VideoWithStartDate extends HTMLVideoElement {
  getStartDate?: () => Date;
}

// Records a recovery attempt if the budget allows one; returns its number within the window
// (1 for the first), or null when the budget is spent.
function takeRecovery(attempts: number[], max: number): number | null {
  const now = Date.now();
  while (attempts.length > 0 && now - attempts[0]! > RECOVERY_WINDOW_MS) attempts.shift();
  if (attempts.length >= max) return null;
  attempts.push(now);
  return attempts.length;
}

function nativeDistanceToEdge(video: HTMLVideoElement): number | null {
  const ranges = video.seekable;
  if (ranges.length === 0) return null;
  return ranges.end(ranges.length - 1) - video.currentTime;
}

function describeLevels(levels: readonly Level[]): PlaybackLevel[] {
  return levels.map((level, index) => ({
    index,
    width: level.width,
    height: level.height,
    frameRate: level.frameRate,
    bitrate: level.bitrate,
    label: levelLabel(level),
  }));
}

// A level's short name: "1080p60" from its height and frame rate, or its bitrate for audio.
function levelLabel(level: Pick<Level, 'height' | 'frameRate' | 'bitrate'>): string {
  if (level.height <= 0) return formatBitrate(level.bitrate);
  return `${level.height}p${level.frameRate > 0 ? Math.round(level.frameRate) : ''}`;
}

/** A bitrate for people: "850 kbps", "4.5 Mbps". */
export function formatBitrate(bitsPerSecond: number): string {
  if (bitsPerSecond >= 1_000_000) return `${(bitsPerSecond / 1_000_000).toFixed(1)} Mbps`;
  return `${Math.round(bitsPerSecond / 1000)} kbps`;
}
