import type http from 'node:http';
import { EDGE_SECRET_HEADER, PRIVATE_KEY_PREFIX, cacheRuleFor } from '@hearth/cdn-config';
import { secretMatches, type Logger } from '@hearth/server-common';
import type { CutSegment, LivePart } from './part-cutter';
import { LivePlaylist, PLAYLIST_NAME, type LivePlaylistOptions } from './live-playlist';

/** Settings of a LiveOrigin. */
export interface LiveOriginOptions {
  /** Requests held open at once, over every stream; more get 503 at once. */
  readonly maxBlockedRequests: number;
  /** Complete segments each live playlist lists. */
  readonly windowSegments: number;
  /** Hears of every request the origin answers for a stream, by what was asked. */
  readonly onRequest?: (kind: OriginRequestKind) => void;
  /**
   * The secret the CDN edge sends in X-Hearth-Edge-Secret: with it, requests without it are
   * refused; without it, private streams are never served (the edge reads them from S3).
   */
  readonly edgeSecret?: string | undefined;
}

/** What a request to the origin asked for. */
export type OriginRequestKind = 'master' | 'playlist' | 'blocking-playlist' | 'media';

/** Requests held open at once by default: a few per rendition per edge is the normal load. */
export const DEFAULT_MAX_BLOCKED_REQUESTS = 2000;

// Blocking requests wait at most three target durations, then get 503 (RFC 8216bis 6.2.5.2).
const BLOCK_TARGET_DURATIONS = 3;
// A request may ask for at most two segments past the last one (RFC 8216bis 6.2.5.2).
const MAX_MSN_AHEAD = 2;
// `/<prefix>/<rendition>/<file>`, where the prefix is `live/<channel>` or `private/<channel>`.
const PATH =
  /^\/((?:live|private)\/[A-Za-z0-9][A-Za-z0-9_-]{0,63})\/(?:(master\.m3u8)|([A-Za-z0-9_-]+)\/([A-Za-z0-9._-]+))$/;
const MASTER_NAME = 'master.m3u8';
const COUNT = /^\d{1,9}$/;

interface Waiter {
  readonly ready: () => boolean;
  readonly wake: () => void;
}

/** One stream as the origin serves it: a live playlist per rendition. */
export class OriginStream {
  readonly #origin: LiveOrigin;
  /** Where it is served: `live/<channel>` or `private/<channel>`. */
  readonly prefix: string;
  readonly #playlists = new Map<string, LivePlaylist>();
  readonly #segmentSeconds: number;
  #masterPlaylist: string;
  /** Requests waiting on this stream. */
  readonly waiters = new Set<Waiter>();

  constructor(
    origin: LiveOrigin,
    prefix: string,
    options: Omit<LivePlaylistOptions, 'partTargetSec'> & {
      renditions: readonly { name: string; partTargetSec: number }[];
      masterPlaylist: string;
    },
  ) {
    this.#origin = origin;
    this.prefix = prefix;
    this.#segmentSeconds = options.segmentSeconds;
    this.#masterPlaylist = options.masterPlaylist;
    for (const { name, partTargetSec } of options.renditions) {
      this.#playlists.set(name, new LivePlaylist({ ...options, partTargetSec }));
    }
  }

  /** Longest time a blocking request waits on this stream. */
  get blockTimeoutMs(): number {
    return BLOCK_TARGET_DURATIONS * Math.ceil(this.#segmentSeconds) * 1000;
  }

  /**
   * The master playlist, once every rendition has a part: a player that reads it finds every
   * variant it lists playable.
   */
  get masterPlaylist(): string | undefined {
    const playable = [...this.#playlists.values()].every(
      (playlist) => playlist.position !== undefined || playlist.ended,
    );
    return playable ? this.#masterPlaylist : undefined;
  }

  /** Replaces the master playlist, for a ladder that lost a rung. */
  replaceMasterPlaylist(text: string): void {
    this.#masterPlaylist = text;
  }

  /** The playlist of a rendition, if the stream has it. */
  playlist(rendition: string): LivePlaylist | undefined {
    return this.#playlists.get(rendition);
  }

  /** A rendition's media from now on uses this init segment (ffmpeg run `run`). */
  setInit(rendition: string, run: number, bytes: Buffer): void {
    this.#playlists.get(rendition)?.setInit(run, bytes);
    this.#wake();
  }

  /** Adds a rendition's next part. */
  addPart(rendition: string, part: LivePart, discontinuity: boolean): void {
    this.#playlists.get(rendition)?.addPart(part, discontinuity);
    this.#wake();
  }

  /** Completes a rendition's segment made of the parts added since the last one. */
  finishSegment(
    rendition: string,
    segment: Pick<CutSegment, 'msn' | 'durationSec' | 'programDateTime'>,
  ): void {
    this.#playlists.get(rendition)?.finishSegment(segment);
    this.#wake();
  }

  /** Ends the playlists of `renditions` (all by default): blocked requests get the final ones. */
  end(renditions: readonly string[] = [...this.#playlists.keys()]): void {
    for (const name of renditions) this.#playlists.get(name)?.end();
    this.#wake();
  }

  /** Stops serving the stream, if it is still the one served under its prefix. */
  close(): void {
    this.#origin.release(this);
  }

  /** Every rendition's playlist, with reports of the others' positions. */
  render(rendition: string): string | undefined {
    const playlist = this.#playlists.get(rendition);
    if (!playlist) return undefined;
    const reports = [...this.#playlists]
      .filter(([name]) => name !== rendition)
      .map(([name, other]) => ({ uri: `../${name}/${PLAYLIST_NAME}`, position: other.position }));
    return playlist.render(reports);
  }

  #wake(): void {
    for (const waiter of this.waiters) if (waiter.ready()) waiter.wake();
  }
}

/**
 * The ingest node as the origin of its streams' live playlists, parts and recent segments,
 * served from memory: requests for a playlist with `_HLS_msn` (and `_HLS_part`) are held until
 * the playlist holds that segment (or part), and requests for the part a preload hint names are
 * held until it exists, at most three target durations and `maxBlockedRequests` at once.
 */
export class LiveOrigin {
  readonly #streams = new Map<string, OriginStream>();
  readonly #options: LiveOriginOptions;
  readonly #logger: Logger;
  #blocked = 0;

  constructor(options: LiveOriginOptions, logger: Logger) {
    this.#options = options;
    this.#logger = logger;
  }

  /** Requests held open now. */
  get blockedRequests(): number {
    return this.#blocked;
  }

  /** Starts serving a stream under `prefix`, in place of any earlier stream there. */
  open(
    prefix: string,
    options: {
      streamId: string;
      segmentSeconds: number;
      renditions: readonly { name: string; partTargetSec: number }[];
      masterPlaylist: string;
    },
  ): OriginStream {
    const stream = new OriginStream(this, prefix, {
      ...options,
      windowSegments: this.#options.windowSegments,
    });
    const previous = this.#streams.get(prefix);
    this.#streams.set(prefix, stream);
    if (previous) this.#releaseWaiters(previous);
    return stream;
  }

  /** Stops serving `stream` unless a newer stream replaced it under its prefix. */
  release(stream: OriginStream): void {
    if (this.#streams.get(stream.prefix) !== stream) return;
    this.#streams.delete(stream.prefix);
    this.#releaseWaiters(stream);
  }

  /**
   * Answers a request when its path is the origin's (`/live/...` or `/private/...`); returns
   * false for any other path, which the caller handles.
   */
  handle(request: http.IncomingMessage, response: http.ServerResponse): boolean {
    const url = URL.parse(request.url ?? '/', 'http://origin');
    const match = url && PATH.exec(url.pathname);
    if (!match) return false;
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      respond(response, 405, 'method not allowed');
      return true;
    }
    const [, prefix, master, rendition, file] = match;
    if (!this.#admits(request, prefix!)) {
      respond(response, 403, 'only the CDN edge may ask');
      return true;
    }
    const stream = this.#streams.get(prefix!);
    if (master && stream?.masterPlaylist) {
      this.#options.onRequest?.('master');
      sendBody(response, request, MASTER_NAME, [Buffer.from(stream.masterPlaylist)]);
      return true;
    }
    const playlist = rendition === undefined ? undefined : stream?.playlist(rendition);
    if (!stream || !playlist) {
      respond(response, 404, 'no live stream here');
      return true;
    }
    if (file === PLAYLIST_NAME) this.#servePlaylist(stream, rendition!, url!, request, response);
    else this.#serveMedia(stream, rendition!, file!, request, response);
    return true;
  }

  // Private streams need the edge's secret, which the edge sends only after checking a signed
  // path; with a secret configured, every request needs it.
  #admits(request: http.IncomingMessage, prefix: string): boolean {
    const secret = this.#options.edgeSecret;
    if (secret === undefined) return !prefix.startsWith(`${PRIVATE_KEY_PREFIX}/`);
    const presented = request.headers[EDGE_SECRET_HEADER];
    return secretMatches(typeof presented === 'string' ? presented : undefined, secret);
  }

  #servePlaylist(
    stream: OriginStream,
    rendition: string,
    url: URL,
    request: http.IncomingMessage,
    response: http.ServerResponse,
  ): void {
    const playlist = stream.playlist(rendition)!;
    // An empty parameter is no parameter: the edge forwards both, empty when a player sent none.
    const msnParam = url.searchParams.get('_HLS_msn') || null;
    const partParam = url.searchParams.get('_HLS_part') || null;
    if (msnParam === null) {
      if (partParam !== null) return respond(response, 400, '_HLS_part without _HLS_msn');
      this.#options.onRequest?.('playlist');
      return sendPlaylist(stream, rendition, request, response);
    }
    this.#options.onRequest?.('blocking-playlist');
    if (!COUNT.test(msnParam) || (partParam !== null && !COUNT.test(partParam))) {
      return respond(response, 400, 'bad _HLS_msn or _HLS_part');
    }
    const msn = Number(msnParam);
    const part = partParam === null ? undefined : Number(partParam);
    const position = playlist.position;
    if (position && msn > position.msn + MAX_MSN_AHEAD) {
      return respond(response, 400, 'that segment is too far ahead');
    }
    this.#whenReady(
      stream,
      () => playlist.reached(msn, part) || this.#streams.get(stream.prefix) !== stream,
      request,
      response,
      () => sendPlaylist(stream, rendition, request, response),
    );
  }

  #serveMedia(
    stream: OriginStream,
    rendition: string,
    file: string,
    request: http.IncomingMessage,
    response: http.ServerResponse,
  ): void {
    const playlist = stream.playlist(rendition)!;
    this.#options.onRequest?.('media');
    const send = () => {
      const chunks = playlist.media(file);
      if (!chunks) return respond(response, 404, 'not on this origin');
      sendBody(response, request, file, chunks);
    };
    // The part a preload hint names (which cannot exist yet) is held until it exists; anything
    // else is answered now, found or not.
    if (!playlist.isUpcomingPart(file)) return send();
    this.#whenReady(
      stream,
      () => playlist.media(file) !== undefined || playlist.ended,
      request,
      response,
      send,
    );
  }

  // Runs `send` once `ready()` holds, or answers 503 after the stream's block timeout.
  #whenReady(
    stream: OriginStream,
    ready: () => boolean,
    request: http.IncomingMessage,
    response: http.ServerResponse,
    send: () => void,
  ): void {
    if (ready()) return send();
    if (this.#blocked >= this.#options.maxBlockedRequests) {
      return respond(response, 503, 'too many blocked requests');
    }
    this.#blocked += 1;
    let done = false;
    const finish = (action: () => void) => {
      if (done) return;
      done = true;
      this.#blocked -= 1;
      clearTimeout(timer);
      stream.waiters.delete(waiter);
      request.off('close', onClose);
      action();
    };
    const waiter: Waiter = { ready, wake: () => finish(send) };
    const timer = setTimeout(
      () => finish(() => respond(response, 503, 'not available in time')),
      stream.blockTimeoutMs,
    );
    const onClose = () => finish(() => undefined);
    request.on('close', onClose);
    stream.waiters.add(waiter);
  }

  // A stream that stops being served answers its waiters now (with what it has, or 404).
  #releaseWaiters(stream: OriginStream): void {
    for (const waiter of [...stream.waiters]) waiter.wake();
    this.#logger.debug('origin stream released');
  }
}

function sendPlaylist(
  stream: OriginStream,
  rendition: string,
  request: http.IncomingMessage,
  response: http.ServerResponse,
): void {
  const text = stream.render(rendition);
  if (text === undefined) return respond(response, 404, 'no such rendition');
  sendBody(response, request, PLAYLIST_NAME, [Buffer.from(text)]);
}

function sendBody(
  response: http.ServerResponse,
  request: http.IncomingMessage,
  file: string,
  chunks: readonly Buffer[],
): void {
  const rule = cacheRuleFor(file);
  const length = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
  response.writeHead(200, {
    'content-type': rule?.contentType ?? 'application/octet-stream',
    'cache-control': rule?.cacheControl ?? 'no-cache',
    'content-length': length,
  });
  if (request.method === 'HEAD') return void response.end();
  for (const chunk of chunks) response.write(chunk);
  response.end();
}

function respond(response: http.ServerResponse, status: number, message: string): void {
  if (response.headersSent) return;
  response.writeHead(status, { 'content-type': 'text/plain', 'cache-control': 'no-cache' });
  response.end(`${message}\n`);
}
