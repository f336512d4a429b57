import { AppError, TypedEmitter, type Logger } from '@hearth/server-common';
import {
  StorageError,
  isTransientSystemError,
  type ObjectBody,
  type ObjectMeta,
  type ObjectStorage,
} from './storage/object-storage';

/** What an uploaded object is, for logs and metrics. */
export type UploadKind = 'segment' | 'init' | 'playlist' | 'master';

/** What a queued job does: an upload of one kind, or a cleanup that deletes keys. */
export type JobKind = UploadKind | 'cleanup';

/** An object to upload. */
export interface PutJob {
  /** Object key. */
  readonly key: string;
  /** What the object is. */
  readonly kind: UploadKind;
  /** Its content. */
  readonly body: ObjectBody;
  /** Its Content-Type and Cache-Control. */
  readonly meta: ObjectMeta;
  /**
   * Jobs that must have succeeded first; if one fails for good, this job fails too. A put counts
   * as succeeded once it or a newer put of the same key is uploaded.
   */
  readonly dependsOn?: readonly number[] | undefined;
  /** Time after which a `slowUpload` is reported, in ms from enqueueing (a segment's duration). */
  readonly expectedMs?: number | undefined;
}

/** Objects to delete. */
export interface DeleteJob {
  /** Keys to delete; the storage batches them. */
  readonly keys: readonly string[];
  /** Jobs that must have finished first, whether they succeeded or failed. */
  readonly dependsOn?: readonly number[] | undefined;
}

/** How transient failures are retried. */
export interface RetryPolicy {
  /** Delay before the first retry, in ms; each further retry doubles it. */
  readonly baseDelayMs: number;
  /** Longest delay between two attempts, in ms. */
  readonly maxDelayMs: number;
  /** Failed attempts after which a job is reported as stalled; it stays queued. */
  readonly attemptBudget: number;
}

/**
 * 200 ms doubling to 5 s: a blip is retried at once, an outage costs one request per job every
 * few seconds. Six attempts span about 6 s, three live segments, before a job counts as stalled.
 */
export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  baseDelayMs: 200,
  maxDelayMs: 5_000,
  attemptBudget: 6,
};

/** Uploads in flight at once by default. */
export const DEFAULT_UPLOAD_CONCURRENCY = 4;

/** Which job an event is about. */
export interface JobInfo {
  /** Job id, as returned by `put()` or `delete()`. */
  readonly id: number;
  /** What the job does. */
  readonly kind: JobKind;
  /** Object key; for a cleanup, the first key it deletes. */
  readonly key: string;
}

/** A job that succeeded. */
export interface UploadedInfo extends JobInfo {
  /** Duration of the successful request, in ms. */
  readonly ms: number;
  /** Time from enqueueing to success, in ms: queueing, dependencies and retries included. */
  readonly latencyMs: number;
  /** Attempts it took. */
  readonly attempts: number;
}

/** A transient failure that will be retried. */
export interface RetryInfo extends JobInfo {
  /** The attempt that failed, from 1. */
  readonly attempt: number;
  /** Delay before the next attempt, in ms. */
  readonly delayMs: number;
  /** Why it failed. */
  readonly error: StorageError;
}

/** A job that used up its attempt budget and keeps being retried at the longest delay. */
export interface StalledInfo extends JobInfo {
  /** Attempts so far. */
  readonly attempts: number;
  /** The last failure. */
  readonly error: StorageError;
}

/** A job still unfinished after its expected time. */
export interface SlowUploadInfo extends JobInfo {
  /** The time it was expected to take, in ms. */
  readonly expectedMs: number;
  /** Time since it was enqueued, in ms. */
  readonly elapsedMs: number;
  /** Attempts so far. */
  readonly attempts: number;
}

/** A job given up for good. */
export interface FailedInfo extends JobInfo {
  /** A permanent storage error, or a dependency that failed. */
  readonly reason: 'permanent-error' | 'dependency-failed' | 'dropped';
  /** The storage error, or for a dependency failure an error naming the dependency. */
  readonly error: StorageError;
}

/** Events of an UploadQueue; `uploaded` and `depth` feed the metrics. */
export type UploadQueueEvents = {
  /** A job succeeded. */
  uploaded: [UploadedInfo];
  /** An attempt failed transiently; the job is retried after a delay. */
  retry: [RetryInfo];
  /** A job used up its attempt budget; it stays queued. */
  stalled: [StalledInfo];
  /** A job with an expected time is still unfinished after it. */
  slowUpload: [SlowUploadInfo];
  /** A job failed for good and left the queue. */
  failed: [FailedInfo];
  /** The number of unfinished jobs changed. */
  depth: [number];
};

/** Settings of an UploadQueue. */
export interface UploadQueueOptions {
  /** Where the objects go. */
  readonly storage: ObjectStorage;
  /** Logger for retries, stalls, slow uploads and failures. */
  readonly logger: Logger;
  /** Jobs running at once (default 4). */
  readonly concurrency?: number | undefined;
  /** Retry delays and attempt budget; unset fields keep `DEFAULT_RETRY_POLICY`. */
  readonly retry?: Partial<RetryPolicy> | undefined;
}

// One put() or delete() call; its id is what dependencies and drain() refer to.
interface Job {
  readonly id: number;
  readonly kind: JobKind;
  readonly key: string;
  readonly deps: readonly number[];
  readonly expectedMs: number | undefined;
  readonly enqueuedAt: number;
  slowTimer: NodeJS.Timeout | undefined;
  slowReported: boolean;
}

// A version of an object's content: one put() call.
interface Version extends Job {
  readonly body: ObjectBody;
  readonly meta: ObjectMeta;
}

// What runs as one request: the pending versions of one key, or one delete.
type Unit = {
  readonly keys: readonly string[];
  running: boolean;
  // Failed attempts since the last success.
  attempts: number;
  retryTimer: NodeJS.Timeout | undefined;
} & (
  | { readonly op: 'put'; readonly versions: Version[] }
  | { readonly op: 'delete'; readonly job: Job }
);

interface DrainWaiter {
  readonly lastId: number;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
}

/**
 * The upload jobs of one stream, run oldest first with these guarantees:
 * - Requests touching the same key run one at a time, in the order they were enqueued.
 * - A put starts only after every job it depends on succeeded, so a playlist is never visible
 *   before its segments; if a dependency fails for good, the put fails as `dependency-failed`.
 *   A delete only waits for its dependencies to finish, whatever the outcome.
 * - Puts of the same key coalesce: each request uploads the newest version whose dependencies
 *   are all up, and every older version counts as succeeded with it (only `uploaded` for the
 *   version sent is emitted). A version waiting for a slow segment therefore never holds back an
 *   older one that is ready, and a playlist keeps advancing while uploads lag behind.
 * - Transient failures never drop a job. The request is retried after `baseDelayMs`, doubling up
 *   to `maxDelayMs`, each delay drawn at random between half and all of that value (jitter, so
 *   jobs failed by one outage do not retry in lockstep). After `attemptBudget` failed attempts it
 *   is reported as stalled (`stalled` event, warning) and keeps being retried at the longest
 *   delay until it succeeds, fails permanently, or the queue is aborted. During an outage jobs
 *   wait in memory (file bodies stay on disk) and resume in order when storage is back.
 * - A permanent failure (403, missing bucket, invalid request, unreadable file) is not retried:
 *   the job leaves the queue with a `failed` event and an error log, older versions of the same
 *   key fail with it silently, and the puts depending on any of them fail as `dependency-failed`.
 */
export class UploadQueue {
  /** Upload events for metrics, logs and the publisher's bookkeeping. */
  readonly events: TypedEmitter<UploadQueueEvents>;
  readonly #storage: ObjectStorage;
  readonly #logger: Logger;
  readonly #concurrency: number;
  readonly #retry: RetryPolicy;
  // Unfinished jobs by id; a Map iterates in insertion order, which is id order, so oldest first.
  readonly #jobs = new Map<number, Job>();
  readonly #unitOf = new Map<Job, Unit>();
  // Unfinished units touching each key, oldest first; only the first may run.
  readonly #byKey = new Map<string, Unit[]>();
  // Ids of jobs that failed for good; any other id below #nextId that is not queued succeeded.
  readonly #failed = new Set<number>();
  // Waiting versions of a key replaced by a newer one before they ran: what depended on them
  // waits for the newer one. Entries go once that one has succeeded.
  readonly #supersededBy = new Map<number, number>();
  readonly #supersedes = new Map<number, number[]>();
  #drainWaiters: DrainWaiter[] = [];
  #nextId = 1;
  #inFlight = 0;
  #pumping = false;
  #pumpAgain = false;
  #failingSince: number | undefined;
  #closed = false;

  constructor(options: UploadQueueOptions) {
    this.#storage = options.storage;
    this.#logger = options.logger;
    this.#concurrency = options.concurrency ?? DEFAULT_UPLOAD_CONCURRENCY;
    this.#retry = { ...DEFAULT_RETRY_POLICY, ...options.retry };
    if (!Number.isInteger(this.#concurrency) || this.#concurrency < 1) {
      throw new TypeError(`concurrency must be an integer >= 1, got ${this.#concurrency}`);
    }
    const { baseDelayMs, maxDelayMs, attemptBudget } = this.#retry;
    if (!(baseDelayMs > 0 && maxDelayMs >= baseDelayMs && attemptBudget >= 1)) {
      throw new TypeError(
        'retry policy needs 0 < baseDelayMs <= maxDelayMs and attemptBudget >= 1',
      );
    }
    this.events = new TypedEmitter((error, event) =>
      this.#logger.error({ err: error, event }, 'upload queue listener failed'),
    );
  }

  /** Unfinished jobs: queued, waiting to retry, or running. */
  get size(): number {
    return this.#jobs.size;
  }

  /** True once `abort()` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Queues an upload and returns its job id. */
  put(job: PutJob): number {
    this.#assertOpen();
    if (job.key === '') throw new TypeError('put() needs a non-empty key');
    if (job.expectedMs !== undefined && !(job.expectedMs > 0)) {
      throw new TypeError(`expectedMs must be > 0, got ${job.expectedMs}`);
    }
    const version: Version = {
      ...this.#newJob(job.kind, job.key, job.dependsOn, job.expectedMs),
      body: job.body,
      meta: job.meta,
    };
    const tail = this.#byKey.get(job.key)?.at(-1);
    if (tail?.op === 'put') {
      this.#supersedeWaiting(tail, version);
      tail.versions.push(version);
      this.#track(version, tail);
    } else {
      const unit: Unit = {
        op: 'put',
        keys: [job.key],
        versions: [version],
        running: false,
        attempts: 0,
        retryTimer: undefined,
      };
      this.#track(version, unit);
      this.#addUnit(unit);
    }
    this.#pump();
    return version.id;
  }

  /** Queues a deletion of keys and returns its job id. */
  delete(job: DeleteJob): number {
    this.#assertOpen();
    if (job.keys.length === 0 || job.keys.some((key) => key === '')) {
      throw new TypeError('delete() needs at least one key, none of them empty');
    }
    const keys = [...new Set(job.keys)];
    const entry = this.#newJob('cleanup', keys[0]!, job.dependsOn, undefined);
    const unit: Unit = {
      op: 'delete',
      keys,
      job: entry,
      running: false,
      attempts: 0,
      retryTimer: undefined,
    };
    this.#track(entry, unit);
    this.#addUnit(unit);
    this.#pump();
    return entry.id;
  }

  /**
   * Takes a put out of the queue before it runs, as a failure with reason `dropped` (puts that
   * depend on it then fail as `dependency-failed`). False when the job is unknown, already
   * finished, a delete, or running now.
   */
  drop(jobId: number): boolean {
    const job = this.#jobs.get(jobId);
    const unit = job && this.#unitOf.get(job);
    if (!job || !unit || unit.op !== 'put' || unit.running) return false;
    unit.versions.splice(unit.versions.indexOf(job as Version), 1);
    this.#forget(job);
    if (unit.versions.length === 0) this.#removeUnit(unit);
    this.#failed.add(job.id);
    const error = new StorageError('dropped from a full upload spool', {
      transient: false,
      key: job.key,
    });
    this.events.safeEmit('failed', { ...this.#info(job), reason: 'dropped', error });
    this.#settled();
    this.#pump();
    return true;
  }

  /** Drops every queued put of `key` that is not running now (see `drop`); returns how many. */
  dropKey(key: string): number {
    const ids = [...this.#jobs.values()]
      .filter((job) => job.key === key && job.kind !== 'cleanup')
      .map((job) => job.id);
    return ids.filter((id) => this.drop(id)).length;
  }

  /** Resolves once every job queued before the call has finished (succeeded or failed). */
  drain(): Promise<void> {
    if (this.#closed) return Promise.reject(this.#abortedError());
    const lastId = this.#nextId - 1;
    if (this.#oldestId() > lastId) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.#drainWaiters.push({ lastId, resolve, reject });
    });
  }

  /**
   * Stops for good: queued jobs are dropped, timers cleared, pending `drain()` calls rejected.
   * Requests in flight finish on their own (bounded by the storage's timeout); their results are
   * ignored.
   */
  abort(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const [job, unit] of this.#unitOf) {
      clearTimeout(job.slowTimer);
      clearTimeout(unit.retryTimer);
    }
    this.#jobs.clear();
    this.#unitOf.clear();
    this.#byKey.clear();
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const waiter of waiters) waiter.reject(this.#abortedError());
  }

  #newJob(
    kind: JobKind,
    key: string,
    dependsOn: readonly number[] | undefined,
    expectedMs: number | undefined,
  ): Job {
    const deps = [...new Set(dependsOn ?? [])];
    for (const id of deps) {
      if (!Number.isInteger(id) || id < 1 || id >= this.#nextId) {
        throw new TypeError(`unknown dependency job id ${id}`);
      }
    }
    return {
      id: this.#nextId++,
      kind,
      key,
      deps,
      expectedMs,
      enqueuedAt: performance.now(),
      slowTimer: undefined,
      slowReported: false,
    };
  }

  #track(job: Job, unit: Unit): void {
    this.#jobs.set(job.id, job);
    this.#unitOf.set(job, unit);
    if (job.expectedMs !== undefined) {
      // Diagnostic only: it must not keep the process alive.
      job.slowTimer = setTimeout(() => this.#reportSlow(job), job.expectedMs).unref();
    }
    this.events.safeEmit('depth', this.#jobs.size);
  }

  #addUnit(unit: Unit): void {
    for (const key of unit.keys) {
      const list = this.#byKey.get(key);
      if (list) list.push(unit);
      else this.#byKey.set(key, [unit]);
    }
  }

  #pump(): void {
    // Events emitted while pumping can enqueue jobs; those runs are folded into this loop.
    if (this.#pumping) {
      this.#pumpAgain = true;
      return;
    }
    this.#pumping = true;
    try {
      do {
        this.#pumpAgain = false;
        this.#pumpOnce();
      } while (this.#pumpAgain && !this.#closed);
    } finally {
      this.#pumping = false;
    }
  }

  // Keeps a waiting unit to its oldest version and the newest: the versions in between would
  // only ever be overtaken (puts of one key coalesce), and during a long outage they would pile
  // up in memory, one per segment. What depends on them now depends on the newest.
  #supersedeWaiting(unit: Unit & { op: 'put' }, newest: Version): void {
    if (unit.running || unit.versions.length < 2) return;
    for (const middle of unit.versions.splice(1)) {
      this.#forget(middle);
      this.#supersededBy.set(middle.id, newest.id);
      this.#supersedes.set(newest.id, [
        ...(this.#supersedes.get(newest.id) ?? []),
        ...(this.#supersedes.get(middle.id) ?? []),
        middle.id,
      ]);
      this.#supersedes.delete(middle.id);
    }
  }

  // The job that carries a dependency now: the newest version that superseded it, if any.
  #resolve(id: number): number {
    let current = id;
    for (let next = this.#supersededBy.get(current); next !== undefined;) {
      current = next;
      next = this.#supersededBy.get(current);
    }
    return current;
  }

  #pumpOnce(): void {
    const seen = new Set<Unit>();
    for (const job of this.#jobs.values()) {
      if (this.#closed) return;
      const unit = this.#unitOf.get(job)!;
      if (unit.op === 'put') {
        const failed = job.deps.find((id) => this.#failed.has(this.#resolve(id)));
        if (failed !== undefined) {
          this.#failDependent(unit, job as Version, failed);
          continue;
        }
      }
      if (seen.has(unit)) continue;
      seen.add(unit);
      if (unit.running || unit.retryTimer || this.#inFlight >= this.#concurrency) continue;
      if (unit.keys.some((key) => this.#byKey.get(key)?.[0] !== unit)) continue;
      if (unit.op === 'delete') {
        if (!unit.job.deps.some((id) => this.#jobs.has(this.#resolve(id)))) {
          void this.#run(unit, unit.job);
        }
        continue;
      }
      const ready = unit.versions.findLast((version) =>
        version.deps.every((id) => {
          const carrier = this.#resolve(id);
          return !this.#jobs.has(carrier) && !this.#failed.has(carrier);
        }),
      );
      if (ready) void this.#run(unit, ready);
    }
  }

  async #run(unit: Unit, job: Job): Promise<void> {
    unit.running = true;
    this.#inFlight += 1;
    const started = performance.now();
    let failure: StorageError | undefined;
    try {
      if (unit.op === 'put') {
        const version = job as Version;
        await this.#storage.put(version.key, version.body, version.meta);
      } else await this.#storage.deleteMany(unit.keys);
    } catch (error) {
      failure =
        error instanceof StorageError
          ? error
          : new StorageError(error instanceof Error ? error.message : String(error), {
              transient: isTransientSystemError(error),
              key: job.key,
              cause: error,
            });
    }
    this.#inFlight -= 1;
    unit.running = false;
    if (this.#closed) return;
    if (!failure) this.#succeed(unit, job, performance.now() - started);
    else if (failure.transient) this.#scheduleRetry(unit, job, failure);
    else this.#failPermanently(unit, job, failure);
    this.#pump();
  }

  #succeed(unit: Unit, job: Job, ms: number): void {
    const latencyMs = performance.now() - job.enqueuedAt;
    // The slow timer may be due but not yet run when the upload finishes in the same tick.
    if (job.expectedMs !== undefined && latencyMs > job.expectedMs) this.#reportSlow(job);
    const attempts = unit.attempts + 1;
    unit.attempts = 0;
    for (const finished of this.#finish(unit, job)) {
      // Superseded versions of what succeeded are done too; their entries are not needed.
      for (const superseded of this.#supersedes.get(finished.id) ?? []) {
        this.#supersededBy.delete(superseded);
      }
      this.#supersedes.delete(finished.id);
    }
    if (this.#failingSince !== undefined) {
      this.#logger.info(
        { failingMs: Math.round(performance.now() - this.#failingSince) },
        'storage reachable again',
      );
      this.#failingSince = undefined;
    }
    this.events.safeEmit('uploaded', { ...this.#info(job), ms, latencyMs, attempts });
    this.#settled();
  }

  #scheduleRetry(unit: Unit, job: Job, error: StorageError): void {
    unit.attempts += 1;
    const { baseDelayMs, maxDelayMs, attemptBudget } = this.#retry;
    const ceiling = Math.min(maxDelayMs, baseDelayMs * 2 ** (unit.attempts - 1));
    const delayMs = ceiling / 2 + (Math.random() * ceiling) / 2;
    if (this.#failingSince === undefined) {
      this.#failingSince = performance.now();
      this.#logger.warn(
        { err: error, key: job.key },
        'storage failing, uploads stay queued and are retried',
      );
    }
    this.#logger.debug(
      { key: job.key, attempt: unit.attempts, delayMs: Math.round(delayMs) },
      'retrying upload',
    );
    unit.retryTimer = setTimeout(() => {
      unit.retryTimer = undefined;
      this.#pump();
    }, delayMs);
    this.events.safeEmit('retry', { ...this.#info(job), attempt: unit.attempts, delayMs, error });
    if (unit.attempts === attemptBudget) {
      this.#logger.warn(
        { err: error, key: job.key, attempts: unit.attempts },
        'upload stalled, retrying at the longest delay',
      );
      this.events.safeEmit('stalled', { ...this.#info(job), attempts: unit.attempts, error });
    }
  }

  #failPermanently(unit: Unit, job: Job, error: StorageError): void {
    unit.attempts = 0;
    for (const finished of this.#finish(unit, job)) this.#failed.add(finished.id);
    this.#logger.error({ err: error, key: job.key, kind: job.kind }, 'upload failed');
    this.events.safeEmit('failed', { ...this.#info(job), reason: 'permanent-error', error });
    this.#settled();
  }

  #failDependent(unit: Unit & { op: 'put' }, version: Version, dependency: number): void {
    unit.versions.splice(unit.versions.indexOf(version), 1);
    this.#forget(version);
    if (unit.versions.length === 0) this.#removeUnit(unit);
    this.#failed.add(version.id);
    const error = new StorageError(`dependency job ${dependency} failed`, {
      transient: false,
      key: version.key,
    });
    this.#logger.warn({ key: version.key, kind: version.kind }, error.message);
    this.events.safeEmit('failed', { ...this.#info(version), reason: 'dependency-failed', error });
    this.#settled();
  }

  // Removes a finished job and, for a put, the older versions it supersedes; returns them all.
  #finish(unit: Unit, job: Job): Job[] {
    let finished: Job[] = [job];
    if (unit.op === 'put') {
      const index = unit.versions.indexOf(job as Version);
      finished = unit.versions.splice(0, index + 1);
    }
    for (const done of finished) this.#forget(done);
    if (unit.op === 'delete' || unit.versions.length === 0) this.#removeUnit(unit);
    return finished;
  }

  #forget(job: Job): void {
    clearTimeout(job.slowTimer);
    job.slowTimer = undefined;
    this.#jobs.delete(job.id);
    this.#unitOf.delete(job);
  }

  #removeUnit(unit: Unit): void {
    clearTimeout(unit.retryTimer);
    unit.retryTimer = undefined;
    for (const key of unit.keys) {
      const list = this.#byKey.get(key);
      if (!list) continue;
      const index = list.indexOf(unit);
      if (index >= 0) list.splice(index, 1);
      if (list.length === 0) this.#byKey.delete(key);
    }
  }

  #reportSlow(job: Job): void {
    if (job.slowReported || job.expectedMs === undefined) return;
    job.slowReported = true;
    const elapsedMs = performance.now() - job.enqueuedAt;
    const attempts = this.#unitOf.get(job)?.attempts ?? 0;
    this.#logger.warn(
      { key: job.key, expectedMs: job.expectedMs, elapsedMs: Math.round(elapsedMs), attempts },
      'upload slower than the segment duration',
    );
    this.events.safeEmit('slowUpload', {
      ...this.#info(job),
      expectedMs: job.expectedMs,
      elapsedMs,
      attempts,
    });
  }

  #settled(): void {
    this.events.safeEmit('depth', this.#jobs.size);
    const oldest = this.#oldestId();
    const done = this.#drainWaiters.filter((waiter) => waiter.lastId < oldest);
    if (done.length === 0) return;
    this.#drainWaiters = this.#drainWaiters.filter((waiter) => waiter.lastId >= oldest);
    for (const waiter of done) waiter.resolve();
  }

  #oldestId(): number {
    const first = this.#jobs.keys().next();
    return first.done ? Infinity : first.value;
  }

  #info(job: Job): JobInfo {
    return { id: job.id, kind: job.kind, key: job.key };
  }

  #abortedError(): AppError {
    return new AppError('unavailable', 'the upload queue was aborted');
  }

  #assertOpen(): void {
    if (this.#closed) throw this.#abortedError();
  }
}
