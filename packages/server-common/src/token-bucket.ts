/** A token bucket rate limiter: `ratePerSecond` sustained, `burst` at once. */
export class TokenBucket {
  readonly #ratePerSecond: number;
  readonly #burst: number;
  readonly #now: () => number;
  #tokens: number;
  #updatedAt: number;

  constructor(ratePerSecond: number, burst: number, now: () => number = () => performance.now()) {
    this.#ratePerSecond = ratePerSecond;
    this.#burst = burst;
    this.#now = now;
    this.#tokens = burst;
    this.#updatedAt = now();
  }

  /** Takes one token; false when the bucket is empty and the action must be refused. */
  take(): boolean {
    const now = this.#now();
    this.#tokens = Math.min(
      this.#burst,
      this.#tokens + ((now - this.#updatedAt) / 1000) * this.#ratePerSecond,
    );
    this.#updatedAt = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  /** Gives back a token taken for an action that turned out not to count. */
  refund(): void {
    this.#tokens = Math.min(this.#burst, this.#tokens + 1);
  }
}

/**
 * A Map bounded to `maxKeys` entries: past it, the least recently used entry is forgotten, one at
 * a time. `get` and `set` both count as use.
 */
export class LruMap<V> {
  readonly #maxKeys: number;
  // Map order is use order: an entry is moved to the end each time it is used.
  readonly #entries = new Map<string, V>();

  constructor(maxKeys: number) {
    this.#maxKeys = maxKeys;
  }

  /** Entries held now. */
  get size(): number {
    return this.#entries.size;
  }

  /** The entry of `key`, marked as just used; undefined when there is none. */
  get(key: string): V | undefined {
    const value = this.#entries.get(key);
    if (value === undefined) return undefined;
    this.#entries.delete(key);
    this.#entries.set(key, value);
    return value;
  }

  /** Stores the entry of `key` as the most recently used, forgetting the least used when full. */
  set(key: string, value: V): void {
    this.#entries.delete(key);
    if (this.#entries.size >= this.#maxKeys) {
      this.#entries.delete(this.#entries.keys().next().value!);
    }
    this.#entries.set(key, value);
  }

  /** Forgets the entry of `key`. */
  delete(key: string): void {
    this.#entries.delete(key);
  }
}

/**
 * Token buckets by key (a client address) in bounded memory: past `maxKeys`, the least recently
 * used bucket is forgotten, one at a time. A client that keeps knocking stays tracked, so many
 * other addresses coming by cannot give it a fresh burst.
 */
export class KeyedRateLimiter {
  readonly #ratePerSecond: number;
  readonly #burst: number;
  readonly #now: () => number;
  readonly #buckets: LruMap<TokenBucket>;

  constructor(options: {
    ratePerSecond: number;
    burst: number;
    maxKeys?: number;
    now?: () => number;
  }) {
    this.#ratePerSecond = options.ratePerSecond;
    this.#burst = options.burst;
    this.#buckets = new LruMap(options.maxKeys ?? 10_000);
    this.#now = options.now ?? (() => performance.now());
  }

  /** Keys tracked now. */
  get size(): number {
    return this.#buckets.size;
  }

  /** Takes one token for `key`; false when its bucket is empty. */
  take(key: string): boolean {
    let bucket = this.#buckets.get(key);
    if (!bucket) {
      bucket = new TokenBucket(this.#ratePerSecond, this.#burst, this.#now);
      this.#buckets.set(key, bucket);
    }
    return bucket.take();
  }

  /** Gives `key` back a token it took for an action that turned out not to count. */
  refund(key: string): void {
    this.#buckets.get(key)?.refund();
  }
}
