// Reads the edge's access log (cdn-config's `edge` log format) for a stretch of a run: what the
// edge answered, how long nginx took ($request_time), and which requests went to the origin. A
// request went to the origin exactly when nginx logged an upstream response time for it.
import fs from 'node:fs';
import { spreadOf, type RequestKind, type Spread } from './edge-client';

// `$remote_addr [$time_local] "$request_method $uri $protocol" $status $body_bytes_sent
// cache=$upstream_cache_status upstream=$upstream_response_time rt=$request_time`
const LINE = /"\S+ (\S+) [^"]*" (\d{3}) \d+ cache=(\S+) upstream=(.+) rt=([\d.]+)$/;

/** What the access log says about the requests of one kind. */
export interface EdgeLogKind {
  /** Requests logged. */
  readonly requests: number;
  /** Requests by HTTP status. */
  readonly statuses: Record<string, number>;
  /** Requests by `$upstream_cache_status` (`-` when the cache was not involved). */
  readonly cacheStatus: Record<string, number>;
  /** Requests to the origin they caused (nginx's upstream attempts). */
  readonly originRequests: number;
  /** Requests answered without an origin request. */
  readonly servedByEdge: number;
  /** nginx's `$request_time`: first byte read from the viewer to the last byte handed to the kernel. */
  readonly requestTimeMs: Spread;
  /** Different URIs asked for. */
  readonly distinctUris: number;
}

/** The access log of a stretch of a run, by request kind. */
export type EdgeLogSummary = Record<RequestKind | 'other', EdgeLogKind>;

/** Size of the access log now: where the next request's line will start. */
export function logOffset(file: string): number {
  return fs.existsSync(file) ? fs.statSync(file).size : 0;
}

function kindOf(uri: string): RequestKind | 'other' {
  if (uri.endsWith('master.m3u8')) return 'master';
  if (uri.endsWith('.m3u8')) return 'playlist';
  if (uri.endsWith('.m4s') || uri.endsWith('.mp4')) return 'segment';
  return 'other';
}

class KindTally {
  requests = 0;
  originRequests = 0;
  servedByEdge = 0;
  readonly statuses = new Map<string, number>();
  readonly cacheStatus = new Map<string, number>();
  readonly requestTimeMs: number[] = [];
  readonly uris = new Set<string>();

  add(uri: string, status: string, cache: string, upstream: string, requestTime: string): void {
    this.requests += 1;
    this.statuses.set(status, (this.statuses.get(status) ?? 0) + 1);
    this.cacheStatus.set(cache, (this.cacheStatus.get(cache) ?? 0) + 1);
    // Several upstream attempts are listed as "t1, t2" (or "t1 : t2" across internal redirects).
    const attempts = upstream === '-' ? 0 : upstream.split(/,|:/).length;
    this.originRequests += attempts;
    if (attempts === 0) this.servedByEdge += 1;
    this.requestTimeMs.push(Number(requestTime) * 1000);
    this.uris.add(uri);
  }

  summary(): EdgeLogKind {
    return {
      requests: this.requests,
      statuses: Object.fromEntries(this.statuses),
      cacheStatus: Object.fromEntries(this.cacheStatus),
      originRequests: this.originRequests,
      servedByEdge: this.servedByEdge,
      requestTimeMs: spreadOf(this.requestTimeMs),
      distinctUris: this.uris.size,
    };
  }
}

/** Summarizes the log lines between two offsets (from `logOffset`). */
export function readEdgeLog(file: string, from: number, to: number): EdgeLogSummary {
  const tallies = {
    master: new KindTally(),
    playlist: new KindTally(),
    segment: new KindTally(),
    other: new KindTally(),
  };
  const buffer = Buffer.alloc(Math.max(0, to - from));
  const handle = fs.openSync(file, 'r');
  try {
    fs.readSync(handle, buffer, 0, buffer.length, from);
  } finally {
    fs.closeSync(handle);
  }
  for (const line of buffer.toString('utf8').split('\n')) {
    const match = LINE.exec(line);
    if (!match) continue;
    const [, uri, status, cache, upstream, requestTime] = match as unknown as string[];
    tallies[kindOf(uri!)].add(uri!, status!, cache!, upstream!, requestTime!);
  }
  return {
    master: tallies.master.summary(),
    playlist: tallies.playlist.summary(),
    segment: tallies.segment.summary(),
    other: tallies.other.summary(),
  };
}
