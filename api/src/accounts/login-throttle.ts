import { KeyedRateLimiter, LruMap } from '@hearth/server-common';

/** Settings of a login throttle. */
export interface LoginThrottleOptions {
  /** Failed logins one client address may make in a burst before it is refused. */
  readonly addressFailureBurst: number;
  /** Failed logins per minute an address regains once its burst is spent. */
  readonly addressFailuresPerMinute: number;
  /** Failures of one username answered without delay. */
  readonly usernameFreeFailures: number;
  /** Delay of the first delayed failure of a username, in milliseconds; it doubles each time. */
  readonly usernameBaseDelayMs: number;
  /** Longest delay a failure waits, in milliseconds. */
  readonly usernameMaxDelayMs: number;
  /** A username's failures are forgotten this many milliseconds after its last one. */
  readonly usernameMemoryMs: number;
  /** Addresses, and usernames, tracked at most; past it the least recently used go first. */
  readonly maxKeys?: number;
  /** Clock in milliseconds, for tests. */
  readonly now?: () => number;
}

/**
 * The api's settings: an address may fail 20 times at once, then twice a minute; a username's
 * failures past the third wait 250 ms, doubling up to 2 s, and are forgotten after 15 quiet minutes.
 */
export const DEFAULT_LOGIN_THROTTLE: LoginThrottleOptions = {
  addressFailureBurst: 20,
  addressFailuresPerMinute: 2,
  usernameFreeFailures: 3,
  usernameBaseDelayMs: 250,
  usernameMaxDelayMs: 2000,
  usernameMemoryMs: 15 * 60_000,
};

interface UsernameFailures {
  count: number;
  lastAt: number;
}

/**
 * Slows password guessing without ever locking out the owner of an account. The attacker's
 * address is what gets refused: each address has a small allowance of failed logins that refills
 * slowly, and a correct password gives its attempt back. A username under attack only makes
 * failures slower, by a delay that grows with its failures up to a bound; a correct password,
 * from any address with allowance left, is answered at once. State is per process, in bounded
 * memory (least recently used keys are forgotten one at a time).
 */
export class LoginThrottle {
  readonly #addresses: KeyedRateLimiter;
  readonly #usernames: LruMap<UsernameFailures>;
  readonly #options: LoginThrottleOptions;
  readonly #now: () => number;

  constructor(options: LoginThrottleOptions) {
    this.#options = options;
    this.#now = options.now ?? (() => Date.now());
    const maxKeys = options.maxKeys ?? 10_000;
    this.#addresses = new KeyedRateLimiter({
      ratePerSecond: options.addressFailuresPerMinute / 60,
      burst: options.addressFailureBurst,
      maxKeys,
      now: this.#now,
    });
    this.#usernames = new LruMap(maxKeys);
  }

  /**
   * Takes one attempt from the address's allowance before the password is checked, so attempts
   * in flight at once count too; false when the address must be refused.
   */
  admit(address: string): boolean {
    return this.#addresses.take(address);
  }

  /**
   * Counts a wrong password for a username (whatever its case, and whether or not the account
   * exists) and returns how many milliseconds to wait before answering it.
   */
  failed(username: string): number {
    const key = username.toLowerCase();
    const now = this.#now();
    const known = this.#usernames.get(key);
    const failures =
      known && now - known.lastAt < this.#options.usernameMemoryMs
        ? { count: known.count + 1, lastAt: now }
        : { count: 1, lastAt: now };
    this.#usernames.set(key, failures);
    const delayed = failures.count - this.#options.usernameFreeFailures;
    if (delayed <= 0) return 0;
    return Math.min(
      this.#options.usernameMaxDelayMs,
      this.#options.usernameBaseDelayMs * 2 ** Math.min(delayed - 1, 30),
    );
  }

  /**
   * A correct password gives the address its attempt back. The username's failures stay: its
   * owner signing in must not hand an attacker a fresh run of undelayed guesses.
   */
  succeeded(address: string): void {
    this.#addresses.refund(address);
  }
}
