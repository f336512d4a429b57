// One virtual viewer of a live HLS stream, behaving as hls.js does with its default live settings:
// it loads the master playlist once and stays on one rung, starts three segments behind the
// newest one (liveSyncDurationCount), reloads the media playlist once per target duration (half
// of it when nothing new was listed), loads each new segment once and in order, and jumps back to
// the live position when the segment it wanted has left the playlist's window.
import {
  PlaylistParseError,
  parseMediaPlaylist,
  type MediaPlaylist,
} from '../../stream-ingest/src/media-playlist-parser';
import type { EdgeClient } from './edge-client';

// hls.js's liveSyncDurationCount: playback starts this many segments behind the newest one.
const LIVE_SYNC_SEGMENTS = 3;
// After a failed load hls.js retries after about a second (its first retry delay).
const RETRY_MS = 1000;

/** One variant of the master playlist. */
export interface Rung {
  /** Rung name: the folder of its media playlist, e.g. `720p30`. */
  readonly name: string;
  /** Path of its media playlist on the edge. */
  readonly playlistPath: string;
  /** Peak bits per second, as BANDWIDTH announces it. */
  readonly bandwidth: number;
}

/** The variants of a master playlist, highest BANDWIDTH first. */
export function parseMasterPlaylist(text: string, masterPath: string): Rung[] {
  const lines = text.split(/\r?\n/).map((line) => line.trim());
  const rungs: Rung[] = [];
  lines.forEach((line, index) => {
    if (!line.startsWith('#EXT-X-STREAM-INF:')) return;
    const uri = lines[index + 1] ?? '';
    const bandwidth = Number(/(?:^|[:,])BANDWIDTH=(\d+)/.exec(line)?.[1] ?? Number.NaN);
    const playlistPath = new URL(uri, `http://edge${masterPath}`).pathname;
    rungs.push({ name: uri.split('/')[0] ?? uri, playlistPath, bandwidth });
  });
  return rungs.sort((a, b) => b.bandwidth - a.bandwidth);
}

/**
 * What all viewers share: parsed playlists (many viewers get the same text, which is parsed
 * once) and the newest segment any viewer has seen listed per rung, the live edge.
 */
export class SharedPlaylists {
  readonly #masters = new Map<string, Rung[]>();
  readonly #media = new Map<string, { text: string; playlist: MediaPlaylist }>();
  readonly #newest = new Map<string, number>();
  readonly #invalid: number[] = [];

  /** The rungs of a master playlist text. */
  master(text: string, masterPath: string): Rung[] {
    let rungs = this.#masters.get(text);
    if (!rungs) {
      rungs = parseMasterPlaylist(text, masterPath);
      this.#masters.set(text, rungs);
    }
    return rungs;
  }

  /**
   * A media playlist of `rung` parsed, noting its newest segment; undefined (and counted) when
   * the edge answered 200 with something that is not a media playlist.
   */
  media(rung: string, text: string): MediaPlaylist | undefined {
    const last = this.#media.get(rung);
    if (last?.text === text) return last.playlist;
    let playlist: MediaPlaylist;
    try {
      playlist = parseMediaPlaylist(text);
    } catch (error) {
      if (!(error instanceof PlaylistParseError)) throw error;
      this.#invalid.push(Buffer.byteLength(text));
      return undefined;
    }
    this.#media.set(rung, { text, playlist });
    const newest = playlist.segments.at(-1)?.sequence;
    if (newest !== undefined && newest > (this.#newest.get(rung) ?? -1)) {
      this.#newest.set(rung, newest);
    }
    return playlist;
  }

  /** Sizes in bytes of the answers that were not media playlists, in order. */
  get invalidPlaylistBytes(): readonly number[] {
    return this.#invalid;
  }

  /** Sequence number of the newest segment seen listed in `rung`, -1 before any. */
  newest(rung: string): number {
    return this.#newest.get(rung) ?? -1;
  }
}

/** What one viewer did and how its playback went. */
export interface ViewerOutcome {
  /** Rung it watched. */
  readonly rung: string;
  /** From its start to its first segment loaded (playback could begin), ms; NaN if never. */
  readonly startupMs: number;
  /** performance.now() when its first segment was loaded; NaN if never. */
  readonly firstSegmentAt: number;
  /** Segments loaded. */
  readonly segmentsLoaded: number;
  /** Bytes of the segments loaded. */
  readonly segmentBytes: number;
  /** Segments it never loaded because they left the playlist's window before it got to them. */
  readonly segmentsSkipped: number;
  /** Times playback ran out of buffer after it had started. */
  readonly stalls: number;
  /** Seconds playback was stalled, including a stall still going on at the end. */
  readonly stalledSeconds: number;
  /** Seconds from its first segment loaded to the end of the run. */
  readonly watchedSeconds: number;
  /** Segments between the newest listed in its rung and the last it loaded, at the end. */
  readonly backlogSegments: number;
}

/** One hls.js-like viewer; `run()` plays until `stop()`. */
export class Viewer {
  readonly #client: EdgeClient;
  readonly #shared: SharedPlaylists;
  readonly #masterPath: string;
  // Where in [0, 1) this viewer falls among the audience: decides its rung.
  readonly #rungPosition: number;
  readonly #rungShares: readonly number[];
  #running = true;
  readonly #wakers = new Set<() => void>();
  #rung: Rung | undefined;
  #playlist: MediaPlaylist | undefined;
  #nextSequence: number | undefined;
  #loadingSegments = false;
  #startedAt = Number.NaN;
  #firstSegmentAt = Number.NaN;
  #segmentsLoaded = 0;
  #segmentsSkipped = 0;
  #segmentBytes = 0;
  // Playback model in content seconds: the playhead moves at wall-clock speed from the anchor
  // until it reaches the end of what is loaded, where it stalls.
  #bufferedEnd = 0;
  #anchorContent = 0;
  #anchorWall = Number.NaN;
  #stalls = 0;
  #stalledSeconds = 0;

  constructor(options: {
    client: EdgeClient;
    shared: SharedPlaylists;
    masterPath: string;
    rungPosition: number;
    rungShares: readonly number[];
  }) {
    this.#client = options.client;
    this.#shared = options.shared;
    this.#masterPath = options.masterPath;
    this.#rungPosition = options.rungPosition;
    this.#rungShares = options.rungShares;
  }

  /** Loads the master playlist, then keeps reloading the media playlist until `stop()`. */
  async run(): Promise<void> {
    this.#startedAt = performance.now();
    while (this.#running && !this.#rung) {
      const answer = await this.#client.get(this.#masterPath, 'master', true);
      if (answer) this.#rung = this.#chooseRung(this.#shared.master(answer.text, this.#masterPath));
      if (!this.#rung) await this.#sleep(RETRY_MS);
    }
    while (this.#running && this.#rung) {
      const loadStartedAt = performance.now();
      const answer = await this.#client.get(this.#rung.playlistPath, 'playlist', true);
      let intervalMs = RETRY_MS;
      // An answer that is not a playlist is retried like a failed load, as hls.js does.
      const playlist = answer && this.#shared.media(this.#rung.name, answer.text);
      if (playlist) {
        const targetMs = (playlist.targetDurationSec ?? 2) * 1000;
        intervalMs = this.#update(playlist) ? targetMs : targetMs / 2;
      }
      await this.#sleep(loadStartedAt + intervalMs - performance.now());
    }
  }

  /** Ends the viewer's loops: nothing more is requested. */
  stop(): void {
    this.#running = false;
    for (const wake of this.#wakers) wake();
  }

  /** The viewer's playback as of now. */
  outcome(newestSequence: number): ViewerOutcome {
    const now = performance.now();
    const watchedSeconds = Number.isNaN(this.#firstSegmentAt)
      ? 0
      : (now - this.#firstSegmentAt) / 1000;
    const ongoingStall = Number.isNaN(this.#anchorWall)
      ? 0
      : Math.max(0, this.#playhead(now) - this.#bufferedEnd);
    const lastLoaded = (this.#nextSequence ?? newestSequence + 1) - 1;
    return {
      rung: this.#rung?.name ?? '-',
      startupMs: this.#firstSegmentAt - this.#startedAt,
      firstSegmentAt: this.#firstSegmentAt,
      segmentsLoaded: this.#segmentsLoaded,
      segmentBytes: this.#segmentBytes,
      segmentsSkipped: this.#segmentsSkipped,
      stalls: this.#stalls + (ongoingStall > 0 ? 1 : 0),
      stalledSeconds: this.#stalledSeconds + ongoingStall,
      watchedSeconds,
      backlogSegments: Math.max(0, newestSequence - lastLoaded),
    };
  }

  /** The rung the viewer watches, once it has loaded the master playlist. */
  get rung(): string | undefined {
    return this.#rung?.name;
  }

  #chooseRung(rungs: readonly Rung[]): Rung | undefined {
    let cumulative = 0;
    for (const [index, rung] of rungs.entries()) {
      cumulative += this.#rungShares[index] ?? 0;
      if (this.#rungPosition < cumulative) return rung;
    }
    return rungs.at(-1);
  }

  // Takes a reloaded playlist; true when it lists a segment the viewer had not seen listed.
  #update(playlist: MediaPlaylist): boolean {
    const previousNewest = this.#playlist?.segments.at(-1)?.sequence ?? -1;
    this.#playlist = playlist;
    const newest = playlist.segments.at(-1)?.sequence ?? -1;
    if (this.#nextSequence === undefined && playlist.segments.length > 0) {
      this.#nextSequence = Math.max(playlist.mediaSequence, newest - LIVE_SYNC_SEGMENTS + 1);
    }
    void this.#loadSegments();
    return newest > previousNewest;
  }

  async #loadSegments(): Promise<void> {
    if (this.#loadingSegments) return;
    this.#loadingSegments = true;
    try {
      while (this.#running && this.#playlist && this.#nextSequence !== undefined) {
        const { segments, mediaSequence } = this.#playlist;
        const newest = segments.at(-1)?.sequence ?? -1;
        if (this.#nextSequence < mediaSequence) {
          // Fallen out of the window: hls.js seeks back to the live sync position.
          const resumeAt = Math.max(mediaSequence, newest - LIVE_SYNC_SEGMENTS + 1);
          this.#segmentsSkipped += resumeAt - this.#nextSequence;
          this.#nextSequence = resumeAt;
        }
        const segment = segments[this.#nextSequence - mediaSequence];
        if (!segment) return;
        const path = new URL(segment.uri, `http://edge${this.#rung!.playlistPath}`).pathname;
        const answer = await this.#client.get(path, 'segment', false);
        if (answer === undefined) {
          await this.#sleep(RETRY_MS);
          continue;
        }
        this.#buffered(segment.durationSec, performance.now());
        this.#segmentsLoaded += 1;
        this.#segmentBytes += answer.bytes;
        this.#nextSequence = segment.sequence + 1;
      }
    } finally {
      this.#loadingSegments = false;
    }
  }

  #playhead(now: number): number {
    return this.#anchorContent + (now - this.#anchorWall) / 1000;
  }

  #buffered(durationSec: number, now: number): void {
    if (Number.isNaN(this.#anchorWall)) {
      this.#firstSegmentAt = now;
      this.#anchorWall = now;
      this.#bufferedEnd = durationSec;
      return;
    }
    const playhead = this.#playhead(now);
    if (playhead > this.#bufferedEnd) {
      this.#stalls += 1;
      this.#stalledSeconds += playhead - this.#bufferedEnd;
      this.#anchorContent = this.#bufferedEnd;
      this.#anchorWall = now;
    }
    this.#bufferedEnd += durationSec;
  }

  #sleep(ms: number): Promise<void> {
    if (!this.#running) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#wakers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, Math.max(0, ms));
      this.#wakers.add(wake);
    });
  }
}
