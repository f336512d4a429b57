import { readFile } from 'node:fs/promises';
import {
  StorageError,
  type ObjectBody,
  type ObjectMeta,
  type ObjectStorage,
  type StoredObject,
} from '../../src/storage/object-storage';

/** One storage call as the fake saw it, in the order it happened. */
export interface StorageLogEntry {
  /** `start`/`end`/`error` of a put, or a delete of one batch. */
  readonly op: 'put-start' | 'put-end' | 'put-error' | 'delete';
  /** Object key; for a delete, every key joined by a space. */
  readonly key: string;
  /** For a successful put, the body as text. */
  readonly body?: string;
}

interface Fault {
  readonly match: (key: string) => boolean;
  remaining: number;
  readonly transient: boolean;
}

interface Hold {
  readonly match: (key: string) => boolean;
  readonly released: Promise<void>;
}

function matcher(match: string | RegExp): (key: string) => boolean {
  return typeof match === 'string' ? (key) => key === match : (key) => match.test(key);
}

/**
 * An in-memory ObjectStorage that records the order of every call, and can fail, delay or hold
 * puts on request. It stands in for S3 where a test needs exact ordering or exact failures.
 */
export class MemoryStorage implements ObjectStorage {
  /** Stored objects by key. */
  readonly objects = new Map<string, { body: Buffer; meta: ObjectMeta }>();
  /** Every call in order. */
  readonly log: StorageLogEntry[] = [];
  /** Key batches passed to deleteMany, in order. */
  readonly deletedBatches: string[][] = [];
  /** Delay added to every put, in ms. */
  putDelayMs = 0;
  /** Most puts that were in flight at once. */
  maxInFlight = 0;
  #inFlight = 0;
  readonly #faults: Fault[] = [];
  readonly #holds: Hold[] = [];

  /** Makes the next `times` puts of matching keys throw a StorageError. */
  fail(match: string | RegExp, times: number, transient: boolean): void {
    this.#faults.push({ match: matcher(match), remaining: times, transient });
  }

  /** Makes puts of matching keys wait until `release()` is called. */
  hold(match: string | RegExp): { release: () => void } {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const hold = { match: matcher(match), released };
    this.#holds.push(hold);
    return {
      release: () => {
        this.#holds.splice(this.#holds.indexOf(hold), 1);
        release();
      },
    };
  }

  /** Successful puts of one key, oldest first, as text. */
  putsOf(key: string): string[] {
    return this.log
      .filter((entry) => entry.op === 'put-end' && entry.key === key)
      .map((entry) => entry.body ?? '');
  }

  /** Position of the first log entry matching op and key, or -1. */
  indexOf(op: StorageLogEntry['op'], key: string): number {
    return this.log.findIndex((entry) => entry.op === op && entry.key === key);
  }

  /** Stores the object after any hold, delay or scripted fault. */
  async put(key: string, body: ObjectBody, meta: ObjectMeta): Promise<void> {
    this.log.push({ op: 'put-start', key });
    this.#inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.#inFlight);
    try {
      for (const hold of this.#holds.filter((candidate) => candidate.match(key))) {
        await hold.released;
      }
      if (this.putDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.putDelayMs));
      const fault = this.#faults.find(
        (candidate) => candidate.remaining > 0 && candidate.match(key),
      );
      if (fault) {
        fault.remaining -= 1;
        throw new StorageError(`scripted ${fault.transient ? 'transient' : 'permanent'} failure`, {
          transient: fault.transient,
          key,
        });
      }
      let bytes: Buffer;
      if (typeof body === 'string') bytes = Buffer.from(body);
      else if (Buffer.isBuffer(body)) bytes = body;
      else {
        try {
          bytes = await readFile(body.filePath);
        } catch (error) {
          throw new StorageError(`cannot read ${body.filePath}`, {
            transient: false,
            key,
            cause: error,
          });
        }
      }
      this.objects.set(key, { body: bytes, meta });
      this.log.push({ op: 'put-end', key, body: bytes.toString() });
    } catch (error) {
      this.log.push({ op: 'put-error', key });
      throw error;
    } finally {
      this.#inFlight -= 1;
    }
  }

  /** Removes the keys and records the batch. */
  async deleteMany(keys: readonly string[]): Promise<void> {
    this.deletedBatches.push([...keys]);
    this.log.push({ op: 'delete', key: keys.join(' ') });
    for (const key of keys) this.objects.delete(key);
  }

  /** Reads a stored object. */
  async get(key: string): Promise<StoredObject | undefined> {
    const object = this.objects.get(key);
    return object && { body: object.body, ...object.meta };
  }

  /** Lists stored keys under a prefix. */
  async list(prefix: string): Promise<string[]> {
    return [...this.objects.keys()].filter((key) => key.startsWith(prefix)).sort();
  }
}
