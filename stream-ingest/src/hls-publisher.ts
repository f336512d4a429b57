import fs from 'node:fs';
import { rm } from 'node:fs/promises';
import { cacheRuleFor } from '@hearth/cdn-config';
import { AppError, TypedEmitter, type Logger } from '@hearth/server-common';
import type { Rendition, SegmentReady } from './hls-types';
import { initUri, segmentUri } from './live-playlist';
import { renderMediaPlaylist, targetDurationFor } from './media-playlist-writer';
import type { ObjectMeta, ObjectStorage } from './storage/object-storage';
import {
  UploadQueue,
  type FailedInfo,
  type RetryInfo,
  type RetryPolicy,
  type SlowUploadInfo,
  type UploadKind,
} from './upload-queue';

/** One object the publisher put in storage. */
export interface PublishedObject {
  /** Object key. */
  readonly key: string;
  /** What the object is. */
  readonly kind: UploadKind;
  /** Duration of the successful request, in ms. */
  readonly ms: number;
  /** Time from enqueueing to success, in ms: queueing, dependencies and retries included. */
  readonly latencyMs: number;
  /** Attempts it took. */
  readonly attempts: number;
}

/** Events of an HlsPublisher. */
export type HlsPublisherEvents = {
  /** A segment, playlist or master playlist is in storage. */
  uploaded: [PublishedObject];
  /** An upload failed transiently and will be retried. */
  retry: [RetryInfo];
  /** A segment was not in storage within its own duration after it was ready. */
  slowUpload: [SlowUploadInfo];
  /** An upload or cleanup failed for good (permanent storage error). */
  error: [FailedInfo];
  /** A segment waiting for upload was dropped because the spool was full. */
  dropped: [{ key: string }];
  /** The master playlist and every rendition's first playlist are up: the stream is playable. */
  live: [];
  /** `end()` finished: final playlists are up and nothing is left to upload. */
  ended: [];
};

/** Settings of an HlsPublisher. */
export interface HlsPublisherOptions {
  /** Where the objects go. */
  readonly storage: ObjectStorage;
  /** Key prefix of the channel, e.g. `live/<channel>`, without leading or trailing slash. */
  readonly prefix: string;
  /** Id of this stream, part of every segment name so that no name is ever reused. */
  readonly streamId: string;
  /** The renditions segments will arrive for; the master playlist lists the same ones. */
  readonly renditions: readonly Rendition[];
  /** Master playlist text, rendered elsewhere, with variant URIs `<rendition>/index.m3u8`. */
  readonly masterPlaylist: string;
  /** Segments listed in each live playlist (default 6). */
  readonly liveWindowSegments?: number | undefined;
  /**
   * Segments kept in storage per rendition while live (default 30, at least the live window).
   * The margin beyond the window serves players still holding an older playlist.
   */
  readonly retainSegments?: number | undefined;
  /** Old segments are deleted once this many are beyond `retainSegments` (default 10). */
  readonly deleteBatchSize?: number | undefined;
  /** Keep every segment and publish `<rendition>/vod.m3u8` at the end (default false). */
  readonly keepVod?: boolean | undefined;
  /** Remove each local segment file once its upload succeeded or failed for good (default true). */
  readonly deleteLocalFiles?: boolean | undefined;
  /** Upload concurrency (default 4). */
  readonly concurrency?: number | undefined;
  /** Retry delays and attempt budget of the upload queue. */
  readonly retry?: Partial<RetryPolicy> | undefined;
  /** Logger; the publisher adds the stream id. */
  readonly logger: Logger;
  /**
   * Bytes of segments that may wait for upload (the spool, on disk); past it the oldest waiting
   * segments are dropped, counted and left out of the playlists. Unlimited when absent.
   */
  readonly maxBacklogBytes?: number | undefined;
}

/** Live playlist length by default: 6 segments, 12 s at 2 s segments. */
export const DEFAULT_LIVE_WINDOW_SEGMENTS = 6;
/** Segments kept in storage per rendition by default: one minute at 2 s segments. */
export const DEFAULT_RETAIN_SEGMENTS = 30;
/** Old segments deleted per request by default. */
export const DEFAULT_DELETE_BATCH_SIZE = 10;

// Names end up in object keys and URIs, so they are kept to characters that need no escaping.
const NAME = /^[A-Za-z0-9_-]+$/;

interface SegmentRecord {
  readonly key: string;
  readonly uri: string;
  readonly jobId: number;
  /** The ffmpeg run whose init segment it needs. */
  readonly run: number;
  readonly durationSec: number;
  readonly programDateTime: Date;
  // Set after the fact only on a segment no uploaded playlist has listed yet (see #dropSegment).
  discontinuity: boolean;
}

interface RenditionState {
  readonly name: string;
  readonly playlistKey: string;
  readonly vodKey: string;
  // Segments of the live playlist, oldest first.
  readonly window: SegmentRecord[];
  // Segments in storage or on their way, oldest first: every segment with keepVod.
  readonly stored: SegmentRecord[];
  // Init segments in storage or on their way, by ffmpeg run.
  readonly inits: Map<
    number,
    { readonly key: string; readonly uri: string; readonly jobId: number }
  >;
  mediaSequence: number;
  discontinuitySequence: number;
  targetDuration: number;
  // The next segment starts a new timeline because the one before it could not be uploaded.
  discontinuityNext: boolean;
  playlistJob: number | undefined;
  playlistUploaded: boolean;
  segmentsAdded: number;
}

function metaFor(key: string): ObjectMeta {
  const rule = cacheRuleFor(key);
  if (!rule) throw new TypeError(`no cache rule for ${key}`);
  return { contentType: rule.contentType, cacheControl: rule.cacheControl };
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new TypeError(`${name} must be an integer >= 1, got ${value}`);
  }
  return value;
}

/**
 * Publishes one stream's HLS output to storage. For each finished segment it uploads the segment,
 * then the rendition's live playlist (a sliding window) once every segment it lists is up, and
 * the master playlist once every rendition has a playlist up. Old segments are deleted in batches
 * after a playlist that no longer lists them is up. Object layout under `prefix`:
 * `master.m3u8`, `<rendition>/index.m3u8`, `<rendition>/<streamId>-<seq>.m4s` (fragmented MP4),
 * `<rendition>/<streamId>-init-<run>.mp4` (the init segment of each ffmpeg run), and with
 * keepVod `<rendition>/vod.m3u8`. Segment names never repeat, which is what lets them be cached forever.
 */
export class HlsPublisher {
  /** Upload, liveness and end events. */
  readonly events: TypedEmitter<HlsPublisherEvents>;
  readonly #queue: UploadQueue;
  readonly #logger: Logger;
  readonly #prefix: string;
  readonly #streamId: string;
  #masterPlaylist: string;
  readonly #liveWindow: number;
  readonly #retain: number;
  readonly #deleteBatch: number;
  readonly #keepVod: boolean;
  readonly #deleteLocalFiles: boolean;
  readonly #renditions = new Map<string, RenditionState>();
  readonly #byPlaylistKey = new Map<string, RenditionState>();
  // Local files of segment jobs, removed once the job is finished.
  readonly #localFiles = new Map<number, string>();
  // Sizes of segments not uploaded yet, by job id.
  readonly #pendingBytes = new Map<number, number>();
  #backlogBytes = 0;
  readonly #maxBacklogBytes: number;
  // Set once a newer stream of the channel publishes the live playlists: this one leaves them.
  #yielded = false;
  // Local file removals in progress; `end()` waits for them so that `ended` means all is tidy.
  readonly #removals = new Set<Promise<void>>();
  #masterQueued = false;
  #live = false;
  #ending: Promise<void> | undefined;
  #aborted = false;

  constructor(options: HlsPublisherOptions) {
    if (options.prefix === '' || options.prefix.startsWith('/') || options.prefix.endsWith('/')) {
      throw new TypeError(`prefix must be non-empty, without leading or trailing "/"`);
    }
    if (!NAME.test(options.streamId)) throw new TypeError(`invalid streamId ${options.streamId}`);
    if (options.renditions.length === 0) throw new TypeError('at least one rendition is needed');
    this.#prefix = options.prefix;
    this.#streamId = options.streamId;
    this.#masterPlaylist = options.masterPlaylist;
    this.#liveWindow = positiveInteger(
      'liveWindowSegments',
      options.liveWindowSegments ?? DEFAULT_LIVE_WINDOW_SEGMENTS,
    );
    this.#retain = positiveInteger(
      'retainSegments',
      options.retainSegments ?? DEFAULT_RETAIN_SEGMENTS,
    );
    if (this.#retain < this.#liveWindow) {
      throw new TypeError('retainSegments must be at least liveWindowSegments');
    }
    this.#deleteBatch = positiveInteger(
      'deleteBatchSize',
      options.deleteBatchSize ?? DEFAULT_DELETE_BATCH_SIZE,
    );
    this.#keepVod = options.keepVod ?? false;
    this.#maxBacklogBytes = options.maxBacklogBytes ?? Infinity;
    this.#deleteLocalFiles = options.deleteLocalFiles ?? true;
    this.#logger = options.logger.child({ stream: options.streamId, prefix: options.prefix });
    for (const { name } of options.renditions) {
      if (!NAME.test(name)) throw new TypeError(`invalid rendition name ${name}`);
      if (this.#renditions.has(name)) throw new TypeError(`duplicate rendition ${name}`);
      const state: RenditionState = {
        name,
        playlistKey: `${this.#prefix}/${name}/index.m3u8`,
        vodKey: `${this.#prefix}/${name}/vod.m3u8`,
        window: [],
        stored: [],
        inits: new Map(),
        mediaSequence: 0,
        discontinuitySequence: 0,
        targetDuration: 0,
        discontinuityNext: false,
        playlistJob: undefined,
        playlistUploaded: false,
        segmentsAdded: 0,
      };
      this.#renditions.set(name, state);
      this.#byPlaylistKey.set(state.playlistKey, state);
    }
    this.events = new TypedEmitter((error, event) =>
      this.#logger.error({ err: error, event }, 'hls publisher listener failed'),
    );
    this.#queue = new UploadQueue({
      storage: options.storage,
      logger: this.#logger,
      concurrency: options.concurrency,
      retry: options.retry,
    });
    this.#queue.events.on('uploaded', (info) => {
      if (info.kind === 'cleanup') return;
      this.#jobFinished(info.id);
      this.events.safeEmit('uploaded', {
        key: info.key,
        kind: info.kind,
        ms: info.ms,
        latencyMs: info.latencyMs,
        attempts: info.attempts,
      });
      if (info.kind === 'playlist') this.#playlistUploaded(info.key);
      else if (info.kind === 'master' && !this.#live) {
        this.#live = true;
        this.#logger.info('stream is live');
        this.events.safeEmit('live');
      }
    });
    this.#queue.events.on('failed', (info) => {
      this.#jobFinished(info.id);
      if (info.kind === 'segment') this.#dropSegment(info.id);
      if (info.reason === 'dropped' && info.kind === 'segment') {
        this.#logger.warn({ key: info.key }, 'upload spool full: oldest waiting segment dropped');
        this.events.safeEmit('dropped', { key: info.key });
      }
      // A dependency failure follows a segment failure that was already reported.
      if (info.reason === 'permanent-error') this.events.safeEmit('error', info);
    });
    this.#queue.events.on('retry', (info) => this.events.safeEmit('retry', info));
    this.#queue.events.on('slowUpload', (info) => this.events.safeEmit('slowUpload', info));
  }

  /** Unfinished upload and cleanup jobs, for a queue depth gauge. */
  get queueDepth(): number {
    return this.#queue.size;
  }

  /** Bytes of segments waiting for upload. */
  get backlogBytes(): number {
    return this.#backlogBytes;
  }

  /** True once the master playlist is up. */
  get live(): boolean {
    return this.#live;
  }

  /**
   * Publishes a rendition's init segment for one ffmpeg run; that run's segments need it and
   * their playlists wait for it. Throws once `end()` or `abort()` was called.
   */
  addInit(rendition: string, run: number, bytes: Buffer): void {
    this.#assertOpen();
    const state = this.#renditions.get(rendition);
    if (!state) throw new TypeError(`unknown rendition ${rendition}`);
    if (state.inits.has(run)) return;
    const uri = initUri(this.#streamId, run);
    const key = `${this.#prefix}/${state.name}/${uri}`;
    const jobId = this.#queue.put({ key, kind: 'init', body: bytes, meta: metaFor(key) });
    state.inits.set(run, { key, uri, jobId });
  }

  /**
   * Publishes a finished segment: queues its upload, then the rendition's new live playlist,
   * which waits for every segment it lists and their init segments. Throws once `end()` or
   * `abort()` was called, or when the segment's run has no init segment.
   */
  addSegment(segment: SegmentReady): void {
    this.#assertOpen();
    const state = this.#renditions.get(segment.rendition);
    if (!state) throw new TypeError(`unknown rendition ${segment.rendition}`);
    if (!state.inits.has(segment.run)) {
      throw new TypeError(`segment of run ${segment.run} before its init segment`);
    }
    if (!Number.isFinite(segment.durationSec) || segment.durationSec <= 0) {
      throw new TypeError(`durationSec must be > 0, got ${segment.durationSec}`);
    }
    if (Number.isNaN(segment.programDateTime.getTime())) {
      throw new TypeError('programDateTime is not a valid date');
    }
    const uri = segmentUri(this.#streamId, segment.sequence);
    const key = `${this.#prefix}/${state.name}/${uri}`;
    const jobId = this.#queue.put({
      key,
      kind: 'segment',
      body: { filePath: segment.localPath },
      meta: metaFor(key),
      expectedMs: segment.durationSec * 1000,
    });
    state.segmentsAdded += 1;
    const bytes = fileSize(segment.localPath);
    this.#pendingBytes.set(jobId, bytes);
    this.#backlogBytes += bytes;
    if (this.#deleteLocalFiles) this.#localFiles.set(jobId, segment.localPath);
    const record: SegmentRecord = {
      key,
      uri,
      jobId,
      run: segment.run,
      durationSec: segment.durationSec,
      programDateTime: segment.programDateTime,
      discontinuity: segment.discontinuity || state.discontinuityNext,
    };
    state.discontinuityNext = false;
    state.targetDuration = targetDurationFor(state.targetDuration, [record]);
    state.window.push(record);
    state.stored.push(record);
    while (state.window.length > this.#liveWindow) {
      const left = state.window.shift()!;
      state.mediaSequence += 1;
      if (left.discontinuity) state.discontinuitySequence += 1;
    }
    this.#publishLive(state, false);
    this.#cleanup(state, false);
    this.#enforceSpool();
  }

  /**
   * Leaves the channel's live and master playlists to a newer stream of the same channel: the
   * queued versions of this stream are dropped and no more are written. Its segments (and VOD
   * playlist) still upload.
   */
  yieldLivePlaylists(): void {
    if (this.#yielded) return;
    this.#yielded = true;
    for (const state of this.#renditions.values()) this.#queue.dropKey(state.playlistKey);
    this.#queue.dropKey(`${this.#prefix}/master.m3u8`);
  }

  // Drops the oldest segments still waiting for upload while the spool is over its size.
  #enforceSpool(): void {
    for (const jobId of [...this.#pendingBytes.keys()]) {
      if (this.#backlogBytes <= this.#maxBacklogBytes) return;
      this.#queue.drop(jobId);
    }
  }

  /**
   * Ends the stream: publishes final playlists with EXT-X-ENDLIST (and VOD playlists with
   * keepVod), waits until everything is uploaded, then emits `ended`. Concurrent calls share one
   * promise. It rejects if `abort()` is called before the uploads finished.
   */
  end(): Promise<void> {
    this.#ending ??= this.#finish();
    return this.#ending;
  }

  /** Stops at once: queued uploads are dropped and local files stay. Idempotent. */
  abort(): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#queue.abort();
  }

  async #finish(): Promise<void> {
    if (this.#aborted) throw new AppError('unavailable', 'the publisher was aborted');
    for (const state of this.#renditions.values()) {
      if (state.segmentsAdded === 0) {
        this.#logger.warn({ rendition: state.name }, 'rendition ended without any segment');
        continue;
      }
      this.#publishLive(state, true);
      if (this.#keepVod) this.#publishVod(state);
      this.#cleanup(state, true);
    }
    // The master playlist is queued by an upload event once the last variant playlist is up,
    // which can happen during a drain, so drain until nothing is left.
    while (this.#queue.size > 0) await this.#queue.drain();
    await Promise.all(this.#removals);
    this.#logger.info('stream ended');
    this.events.safeEmit('ended');
  }

  #publishLive(state: RenditionState, ended: boolean): void {
    if (this.#yielded) return;
    const text = renderMediaPlaylist({
      targetDuration: state.targetDuration,
      mediaSequence: state.mediaSequence,
      discontinuitySequence: state.discontinuitySequence,
      segments: this.#listed(state, state.window),
      ended,
    });
    state.playlistJob = this.#queue.put({
      key: state.playlistKey,
      kind: 'playlist',
      body: text,
      meta: metaFor(state.playlistKey),
      dependsOn: this.#jobsOf(state, state.window),
    });
  }

  #publishVod(state: RenditionState): void {
    this.#queue.put({
      key: state.vodKey,
      kind: 'playlist',
      body: renderMediaPlaylist({
        targetDuration: state.targetDuration,
        mediaSequence: 0,
        discontinuitySequence: 0,
        segments: this.#listed(state, state.stored),
        ended: true,
        playlistType: 'VOD',
      }),
      meta: metaFor(state.vodKey),
      dependsOn: this.#jobsOf(state, state.stored),
    });
  }

  // Segments as a playlist lists them: each with the init segment of its run.
  #listed(state: RenditionState, records: readonly SegmentRecord[]) {
    return records.map((record) => ({ ...record, mapUri: state.inits.get(record.run)!.uri }));
  }

  // Upload jobs a playlist listing `records` waits for: theirs and their init segments'.
  #jobsOf(state: RenditionState, records: readonly SegmentRecord[]): number[] {
    const runs = new Set(records.map((record) => record.run));
    return [
      ...records.map((record) => record.jobId),
      ...[...runs].map((run) => state.inits.get(run)!.jobId),
    ];
  }

  // Deletes the oldest segments beyond `retainSegments`, in batches, after the live playlist
  // that no longer lists them is up; `flush` deletes a last partial batch at the end.
  #cleanup(state: RenditionState, flush: boolean): void {
    if (this.#keepVod || state.playlistJob === undefined) return;
    const excess = state.stored.length - this.#retain;
    if (excess <= 0 || (!flush && excess < this.#deleteBatch)) return;
    const doomed = state.stored.splice(0, excess);
    // Init segments of runs no stored segment needs go too, except the newest run's.
    const newestRun = Math.max(...state.inits.keys());
    const needed = new Set(state.stored.map((record) => record.run).concat(newestRun));
    const doomedInits = [...state.inits].filter(([run]) => !needed.has(run));
    for (const [run] of doomedInits) state.inits.delete(run);
    this.#queue.delete({
      keys: [...doomed.map((record) => record.key), ...doomedInits.map(([, init]) => init.key)],
      dependsOn: [
        state.playlistJob,
        ...doomed.map((record) => record.jobId),
        ...doomedInits.map(([, init]) => init.jobId),
      ],
    });
  }

  /**
   * Replaces the master playlist, for a ladder that lost a rung. Players that load the master from
   * now on see the new ladder; one already uploaded is uploaded again.
   */
  replaceMasterPlaylist(masterPlaylist: string): void {
    this.#masterPlaylist = masterPlaylist;
    if (!this.#masterQueued || this.#aborted || this.#yielded) return;
    const masterKey = `${this.#prefix}/master.m3u8`;
    this.#queue.put({
      key: masterKey,
      kind: 'master',
      body: masterPlaylist,
      meta: metaFor(masterKey),
    });
  }

  #playlistUploaded(key: string): void {
    const state = this.#byPlaylistKey.get(key);
    if (!state || state.playlistUploaded) return;
    state.playlistUploaded = true;
    // A player reading the master playlist must find every variant it lists.
    if (this.#masterQueued || this.#aborted || this.#yielded) return;
    if (![...this.#renditions.values()].every((other) => other.playlistUploaded)) return;
    this.#masterQueued = true;
    const masterKey = `${this.#prefix}/master.m3u8`;
    this.#queue.put({
      key: masterKey,
      kind: 'master',
      body: this.#masterPlaylist,
      meta: metaFor(masterKey),
    });
  }

  // A segment that failed for good leaves the playlists. If the live playlist still listed it,
  // no uploaded playlist has listed it or anything after it (they all waited for it), so the
  // segment after it can still be marked as a discontinuity for the gap in the timeline.
  #dropSegment(jobId: number): void {
    for (const state of this.#renditions.values()) {
      const stored = state.stored.findIndex((record) => record.jobId === jobId);
      if (stored >= 0) state.stored.splice(stored, 1);
      const listed = state.window.findIndex((record) => record.jobId === jobId);
      if (listed >= 0) {
        state.window.splice(listed, 1);
        const next = state.window[listed];
        if (next) next.discontinuity = true;
        else state.discontinuityNext = true;
        this.#publishLive(state, this.#ending !== undefined);
      }
      if (stored >= 0 && this.#keepVod && this.#ending !== undefined) this.#publishVod(state);
      if (stored >= 0 || listed >= 0) return;
    }
  }

  #jobFinished(jobId: number): void {
    this.#backlogBytes -= this.#pendingBytes.get(jobId) ?? 0;
    this.#pendingBytes.delete(jobId);
    const file = this.#localFiles.get(jobId);
    if (file === undefined) return;
    this.#localFiles.delete(jobId);
    const removal = rm(file, { force: true })
      .catch((error: unknown) =>
        this.#logger.warn({ err: error, file }, 'could not remove local segment file'),
      )
      .finally(() => this.#removals.delete(removal));
    this.#removals.add(removal);
  }

  #assertOpen(): void {
    if (this.#aborted) throw new AppError('unavailable', 'the publisher was aborted');
    if (this.#ending) throw new AppError('unavailable', 'the publisher has ended');
  }
}

// A segment that vanished before it was measured counts as empty; its upload reports the loss.
function fileSize(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}
