// The load generator's HTTP side: a fixed pool of keep-alive connections to the edge, a cap on
// the requests in flight with a first-come first-served waiting line beyond it, a deadline on
// every request, and a record of what each request took and what the edge said about its cache.
import http from 'node:http';
import { percentile, round } from '../stats';

/** What a request fetches. */
export type RequestKind = 'master' | 'playlist' | 'segment';

/** Every request kind, in the order reports list them. */
export const REQUEST_KINDS: readonly RequestKind[] = ['master', 'playlist', 'segment'];

/** p50, p95, p99 and max of a list of durations, in ms. */
export interface Spread {
  /** Median. */
  readonly p50: number;
  /** 95th percentile, by nearest rank. */
  readonly p95: number;
  /** 99th percentile, by nearest rank. */
  readonly p99: number;
  /** Largest. */
  readonly max: number;
}

/** What the requests of one kind did, as the viewers saw it. */
export interface KindSummary {
  /** Requests sent and ended (answered, failed or timed out). */
  readonly count: number;
  /** Requests answered 200 with the whole body. */
  readonly ok: number;
  /** Failed requests by reason: an HTTP status, `timeout`, or a socket error code. */
  readonly errors: Record<string, number>;
  /** Body bytes received. */
  readonly bytes: number;
  /** Answers by their `X-Cache-Status` header (`-` when absent). */
  readonly cacheStatus: Record<string, number>;
  /** From the request leaving for the edge to the last byte of the answer. */
  readonly latencyMs: Spread;
  /** From the request leaving for the edge to the answer's headers. */
  readonly firstByteMs: Spread;
  /** Time a request waited for a free slot under the in-flight cap before it was sent. */
  readonly waitMs: Spread;
}

/** Requests ended and bytes received in one second of the run. */
export interface TimelineSecond {
  /** Seconds since the run started. */
  readonly second: number;
  /** Requests that ended in this second. */
  readonly ended: number;
  /** Body bytes received in this second. */
  readonly bytes: number;
  /** Requests waiting for a slot, sampled once in the second (NaN when the sample was missed). */
  readonly waiting: number;
}

/** A request answered 200 in full. */
export interface Answer {
  /** The body as text when it was asked for, else empty. */
  readonly text: string;
  /** Body bytes received. */
  readonly bytes: number;
}

/** Limits of the client. */
export interface EdgeClientOptions {
  /** Keep-alive connections to the edge, at most. */
  readonly connections: number;
  /** Requests in flight at once, at most; more wait in line. */
  readonly inFlight: number;
  /** A request not answered in full by then is aborted and counted as `timeout`. */
  readonly timeoutMs: number;
}

// Columns of one request kind: one entry per ended request.
class KindLog {
  count = 0;
  ok = 0;
  bytes = 0;
  readonly errors = new Map<string, number>();
  readonly cacheStatus = new Map<string, number>();
  readonly latencyMs: number[] = [];
  readonly firstByteMs: number[] = [];
  readonly waitMs: number[] = [];

  summary(): KindSummary {
    return {
      count: this.count,
      ok: this.ok,
      errors: Object.fromEntries(this.errors),
      bytes: this.bytes,
      cacheStatus: Object.fromEntries(this.cacheStatus),
      latencyMs: spreadOf(this.latencyMs),
      firstByteMs: spreadOf(this.firstByteMs),
      waitMs: spreadOf(this.waitMs),
    };
  }
}

/** The percentiles of `values`, rounded to 0.1 ms; NaN when empty. */
export function spreadOf(values: readonly number[]): Spread {
  return {
    p50: round(percentile(values, 50)),
    p95: round(percentile(values, 95)),
    p99: round(percentile(values, 99)),
    max: values.length === 0 ? Number.NaN : round(values.reduce((a, b) => Math.max(a, b))),
  };
}

function increment(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

/** A GET client for one edge, bounded in connections, requests in flight and time. */
export class EdgeClient {
  readonly #agent: http.Agent;
  readonly #options: EdgeClientOptions;
  readonly #origin: URL;
  readonly #logs = new Map<RequestKind, KindLog>(
    REQUEST_KINDS.map((kind) => [kind, new KindLog()]),
  );
  // Waiting line as an array with a moving head, so taking the first is O(1).
  #waiting: ((granted: boolean) => void)[] = [];
  #head = 0;
  #inFlight = 0;
  #closed = false;
  #startedAt = performance.now();
  #seconds: { ended: number; bytes: number }[] = [];
  #waitingSamples: number[] = [];
  #timelineTimer: NodeJS.Timeout | undefined;

  constructor(origin: URL, options: EdgeClientOptions) {
    this.#origin = origin;
    this.#options = options;
    this.#agent = new http.Agent({
      keepAlive: true,
      maxSockets: options.connections,
      maxTotalSockets: options.connections,
      maxFreeSockets: options.connections,
    });
  }

  /** Starts the per-second timeline; its seconds count from this call. */
  startTimeline(): void {
    this.#startedAt = performance.now();
    this.#seconds = [];
    this.#waitingSamples = [];
    this.#timelineTimer = setInterval(() => {
      this.#waitingSamples[Math.floor((performance.now() - this.#startedAt) / 1000)] = this.waiting;
    }, 1000);
  }

  /** Requests waiting for a slot now. */
  get waiting(): number {
    return this.#waiting.length - this.#head;
  }

  /** Requests in flight now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /**
   * GETs `path` from the edge. Resolves with the answer (its body as text only when `wantBody`
   * is set, for playlists), or undefined when the request failed or the client stopped sending
   * before its turn came. Never rejects.
   */
  async get(path: string, kind: RequestKind, wantBody: boolean): Promise<Answer | undefined> {
    const queuedAt = performance.now();
    if (!(await this.#acquire())) return undefined;
    const sentAt = performance.now();
    try {
      return await this.#send(path, kind, wantBody, sentAt, sentAt - queuedAt);
    } finally {
      this.#release();
    }
  }

  /** Per-kind summaries of every request that ended. */
  summaries(): Record<RequestKind, KindSummary> {
    return {
      master: this.#logs.get('master')!.summary(),
      playlist: this.#logs.get('playlist')!.summary(),
      segment: this.#logs.get('segment')!.summary(),
    };
  }

  /** Requests and bytes of each whole second since `startTimeline()`. */
  get timeline(): TimelineSecond[] {
    const whole = Math.floor((performance.now() - this.#startedAt) / 1000);
    return Array.from({ length: whole }, (_, second) => ({
      second,
      ended: this.#seconds[second]?.ended ?? 0,
      bytes: this.#seconds[second]?.bytes ?? 0,
      waiting: this.#waitingSamples[second] ?? Number.NaN,
    }));
  }

  /** Sends nothing more: requests still waiting resolve undefined; returns how many there were. */
  stopSending(): number {
    const dropped = this.waiting;
    this.#closed = true;
    for (let index = this.#head; index < this.#waiting.length; index++)
      this.#waiting[index]!(false);
    this.#waiting = [];
    this.#head = 0;
    return dropped;
  }

  /** Stops the timeline and closes every connection. */
  close(): void {
    this.stopSending();
    clearInterval(this.#timelineTimer);
    this.#agent.destroy();
  }

  #acquire(): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    if (this.#inFlight < this.#options.inFlight) {
      this.#inFlight += 1;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  #release(): void {
    if (this.#head < this.#waiting.length) {
      // The slot passes straight to the first in line; the in-flight count stays the same.
      const next = this.#waiting[this.#head]!;
      this.#waiting[this.#head] = () => undefined;
      this.#head += 1;
      if (this.#head > 4096 && this.#head * 2 > this.#waiting.length) {
        this.#waiting = this.#waiting.slice(this.#head);
        this.#head = 0;
      }
      next(true);
      return;
    }
    this.#inFlight -= 1;
  }

  #send(
    path: string,
    kind: RequestKind,
    wantBody: boolean,
    sentAt: number,
    waitMs: number,
  ): Promise<Answer | undefined> {
    const log = this.#logs.get(kind)!;
    return new Promise((resolve) => {
      let settled = false;
      let firstByteAt = Number.NaN;
      let bytes = 0;
      const chunks: Buffer[] = [];
      const finish = (error: string | undefined, cacheStatus: string | undefined) => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        const endedAt = performance.now();
        log.count += 1;
        log.bytes += bytes;
        log.waitMs.push(waitMs);
        const second = Math.floor((endedAt - this.#startedAt) / 1000);
        const slot = (this.#seconds[second] ??= { ended: 0, bytes: 0 });
        slot.ended += 1;
        slot.bytes += bytes;
        if (cacheStatus !== undefined) increment(log.cacheStatus, cacheStatus);
        if (error !== undefined) {
          increment(log.errors, error);
          resolve(undefined);
          return;
        }
        log.ok += 1;
        log.latencyMs.push(endedAt - sentAt);
        log.firstByteMs.push(firstByteAt - sentAt);
        resolve({ text: wantBody ? Buffer.concat(chunks).toString('utf8') : '', bytes });
      };
      const request = http.request(
        {
          agent: this.#agent,
          host: this.#origin.hostname,
          port: this.#origin.port,
          path,
          method: 'GET',
        },
        (response) => {
          firstByteAt = performance.now();
          const header = response.headers['x-cache-status'];
          const cacheStatus = typeof header === 'string' ? header : '-';
          response.on('data', (chunk: Buffer) => {
            bytes += chunk.length;
            if (wantBody) chunks.push(chunk);
          });
          response.on('end', () =>
            finish(
              response.statusCode === 200 ? undefined : `HTTP ${response.statusCode}`,
              cacheStatus,
            ),
          );
          response.on('error', (error: NodeJS.ErrnoException) =>
            finish(error.code ?? error.message, cacheStatus),
          );
          // A connection closed before the whole body arrived ends without 'end'.
          response.on('close', () => finish('truncated', cacheStatus));
        },
      );
      const deadline = setTimeout(() => {
        finish('timeout', undefined);
        request.destroy();
      }, this.#options.timeoutMs);
      request.on('error', (error: NodeJS.ErrnoException) =>
        finish(error.code ?? error.message, undefined),
      );
      request.end();
    });
  }
}
