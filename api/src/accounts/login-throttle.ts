/** Settings of a login throttle. */
export interface LoginThrottleOptions {
  /** Failed logins one username may have within `windowMs` before further attempts wait. */
  readonly maxFailures: number;
  /** Length of the counting window, in milliseconds. */
  readonly windowMs: number;
  /** Clock, for tests. */
  readonly now?: () => number;
}

interface FailureCount {
  failures: number;
  windowStart: number;
}

// Entries kept at most; expired ones go first. The per-address rate limit on /api/auth bounds
// how fast anyone can fill the table.
const MAX_TRACKED = 10_000;

/**
 * Counts failed logins per username (whatever its case, and whether or not the account exists)
 * and holds further attempts back once a username had too many, so passwords cannot be guessed
 * quickly from many addresses. Per process: each api instance counts its own attempts.
 */
export class LoginThrottle {
  readonly #maxFailures: number;
  readonly #windowMs: number;
  readonly #now: () => number;
  readonly #counts = new Map<string, FailureCount>();

  constructor(options: LoginThrottleOptions) {
    this.#maxFailures = options.maxFailures;
    this.#windowMs = options.windowMs;
    this.#now = options.now ?? (() => Date.now());
  }

  /** Milliseconds until this username may try again; 0 when it may try now. */
  retryAfterMs(username: string): number {
    const count = this.#current(username.toLowerCase());
    if (!count || count.failures < this.#maxFailures) return 0;
    return count.windowStart + this.#windowMs - this.#now();
  }

  /** Counts a failed login of this username. */
  failed(username: string): void {
    const key = username.toLowerCase();
    const count = this.#current(key);
    if (count) {
      count.failures++;
      return;
    }
    if (this.#counts.size >= MAX_TRACKED) this.#prune();
    this.#counts.set(key, { failures: 1, windowStart: this.#now() });
  }

  /** Forgets the failures of a username that logged in. */
  succeeded(username: string): void {
    this.#counts.delete(username.toLowerCase());
  }

  #current(key: string): FailureCount | undefined {
    const count = this.#counts.get(key);
    if (count && this.#now() - count.windowStart >= this.#windowMs) {
      this.#counts.delete(key);
      return undefined;
    }
    return count;
  }

  // Drops expired windows; when every window is still open, the oldest go (Maps keep insertion
  // order), which only ever grants those usernames a fresh allowance.
  #prune(): void {
    for (const key of [...this.#counts.keys()]) this.#current(key);
    for (const key of this.#counts.keys()) {
      if (this.#counts.size < MAX_TRACKED) break;
      this.#counts.delete(key);
    }
  }
}
