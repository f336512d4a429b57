import { Redis } from 'ioredis';
import { ServiceUnavailableError } from '@hearth/server-common';
import { DEFAULT_REDIS_COMMAND_TIMEOUT_MS } from '../nodes/registry';

/** A seat reserved for one join token, and the cap on its identity's live reservations. */
export interface SeatReservation {
  /** The token's id (`jti`). */
  readonly id: string;
  /** Who joins: an account id or a guest session id. */
  readonly identity: string;
  /** The node the seat is on. */
  readonly nodeId: string;
  /** When the token expires, in milliseconds since the epoch. */
  readonly expiresAt: number;
  /** Live reservations the identity may hold at once. */
  readonly max: number;
}

/**
 * Seats reserved by joins whose token has not been admitted yet, per identity: an identity holds
 * at most a few at once, and each is taken back exactly once, when its token is admitted or when
 * it expires. In Redis it is shared by every api instance; in process it serves one.
 */
export interface ReservationStore {
  /**
   * Records a reservation on a node unless the identity already holds `max` live ones; resolves
   * false then.
   */
  hold(reservation: SeatReservation): Promise<boolean>;
  /** Takes a reservation back; resolves its node the first time, undefined after. */
  settle(id: string): Promise<string | undefined>;
  /** Releases connections. */
  close(): Promise<void>;
}

/** The reservations of a single api instance. */
export class InMemoryReservationStore implements ReservationStore {
  readonly #held = new Map<string, SeatReservation>();
  readonly #byIdentity = new Map<string, Set<string>>();

  async hold(reservation: SeatReservation): Promise<boolean> {
    const ids = this.#byIdentity.get(reservation.identity) ?? new Set<string>();
    for (const id of ids) {
      if ((this.#held.get(id)?.expiresAt ?? 0) <= Date.now()) ids.delete(id);
    }
    if (ids.size >= reservation.max) return false;
    ids.add(reservation.id);
    this.#byIdentity.set(reservation.identity, ids);
    this.#held.set(reservation.id, reservation);
    return true;
  }

  async settle(id: string): Promise<string | undefined> {
    const held = this.#held.get(id);
    if (!held) return undefined;
    this.#held.delete(id);
    const ids = this.#byIdentity.get(held.identity);
    ids?.delete(id);
    if (ids?.size === 0) this.#byIdentity.delete(held.identity);
    return held.nodeId;
  }

  async close(): Promise<void> {}
}

// KEYS: identity set, reservation hash. ARGV: id, node, expiresAt, now, max, ttl ms.
const HOLD = `
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[5]) then return 0 end
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
  redis.call('HSET', KEYS[2], 'node', ARGV[2], 'identity', KEYS[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
  return 1`;

// KEYS: reservation hash. ARGV: id. Returns the node, or false when already settled.
const SETTLE = `
  local held = redis.call('HMGET', KEYS[1], 'node', 'identity')
  if not held[1] then return false end
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', held[2], ARGV[1])
  return held[1]`;

/** Reservations in Redis, shared by every api instance. */
export class RedisReservationStore implements ReservationStore {
  readonly #redis: Redis;
  readonly #prefix: string;

  constructor(options: { url: string; prefix?: string }) {
    this.#redis = new Redis(options.url, {
      maxRetriesPerRequest: 3,
      enableAutoPipelining: true,
      commandTimeout: DEFAULT_REDIS_COMMAND_TIMEOUT_MS,
    });
    // Failures show as rejected commands, which callers handle.
    this.#redis.on('error', () => undefined);
    this.#prefix = options.prefix ?? 'hearth:';
  }

  async hold(reservation: SeatReservation): Promise<boolean> {
    const now = Date.now();
    const held = await this.#eval(
      HOLD,
      2,
      `${this.#prefix}reservations:${reservation.identity}`,
      `${this.#prefix}reservation:${reservation.id}`,
      reservation.id,
      reservation.nodeId,
      String(reservation.expiresAt),
      String(now),
      String(reservation.max),
      String(Math.max(1, reservation.expiresAt - now) + 60_000),
    );
    return held === 1;
  }

  async settle(id: string): Promise<string | undefined> {
    const node = await this.#eval(SETTLE, 1, `${this.#prefix}reservation:${id}`, id);
    return typeof node === 'string' ? node : undefined;
  }

  // A join during a Redis outage answers 503, not 500.
  async #eval(script: string, keys: number, ...args: string[]): Promise<unknown> {
    try {
      return await this.#redis.eval(script, keys, ...args);
    } catch (error) {
      throw new ServiceUnavailableError('join reservations', { cause: error });
    }
  }

  async close(): Promise<void> {
    this.#redis.disconnect();
  }
}

/**
 * Ties join tokens to the seats reserved for them: `hold` when a token is issued (refused past
 * the per-identity cap), and the seat given back when the node admits the token or, for a join
 * that never connects, when the token expires.
 */
export class JoinReservations {
  readonly #store: ReservationStore;
  readonly #releaseSeat: (nodeId: string) => Promise<void>;
  readonly #timers = new Set<NodeJS.Timeout>();

  constructor(options: {
    store: ReservationStore;
    /** Gives a node's reserved seat back to placement. */
    releaseSeat: (nodeId: string) => Promise<void>;
  }) {
    this.#store = options.store;
    this.#releaseSeat = options.releaseSeat;
  }

  /** Records a token's reservation; false when the identity already holds `max` live ones. */
  async hold(reservation: SeatReservation): Promise<boolean> {
    if (!(await this.#store.hold(reservation))) return false;
    const timer = setTimeout(
      () => {
        this.#timers.delete(timer);
        void this.settle(reservation.id);
      },
      Math.max(0, reservation.expiresAt - Date.now()),
    );
    timer.unref();
    this.#timers.add(timer);
    return true;
  }

  /** Gives the seat of a reservation back, once, whoever asks first. */
  async settle(id: string): Promise<void> {
    const nodeId = await this.#store.settle(id);
    if (nodeId !== undefined) await this.#releaseSeat(nodeId);
  }

  /** Stops the expiry timers and releases the store. */
  async close(): Promise<void> {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    await this.#store.close();
  }
}
