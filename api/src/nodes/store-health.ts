import type { ChannelAssignment, NodeLoad, NodeRegistration } from '@hearth/protocol';
import { ServiceUnavailableError, type Logger } from '@hearth/server-common';
import type { NodeRecord, NodeRegistry } from './registry';

/**
 * Whether the registry's store has been answering long enough for silence to mean something.
 * While the store fails, heartbeats cannot be written, so a node's silence in the registry says
 * nothing about the node. Once the store answers again, every node gets a grace period of one
 * node timeout, from that moment, to be heard from before the failure detector may mark it down.
 */
export class StoreHealth {
  readonly #clock: () => number;
  readonly #graceMs: number;
  readonly #logger: Logger;
  #failingSince: number | undefined;
  #answeringSince: number;
  #graceUntil = 0;

  constructor(options: { clock: () => number; graceMs: number; logger: Logger }) {
    this.#clock = options.clock;
    this.#graceMs = options.graceMs;
    this.#logger = options.logger;
    this.#answeringSince = this.#clock();
  }

  /** Since when the store has answered without a break (or since this was made), epoch ms. */
  get answeringSince(): number {
    return this.#answeringSince;
  }

  /** Whether the last call to the store failed for want of the store. */
  get failing(): boolean {
    return this.#failingSince !== undefined;
  }

  /** Whether the detector may read a node's silence as its failure now. */
  get silenceMeaningful(): boolean {
    return !this.failing && this.#clock() >= this.#graceUntil;
  }

  /** Records that the store answered (with data or with its own error). */
  answered(): void {
    if (this.#failingSince === undefined) return;
    const now = this.#clock();
    this.#logger.warn(
      { outageMs: now - this.#failingSince, graceMs: this.#graceMs },
      'node registry store is back; nodes get a grace period before silence counts',
    );
    this.#failingSince = undefined;
    this.#answeringSince = now;
    this.#graceUntil = now + this.#graceMs;
  }

  /** Records that a call could not reach the store. */
  unreachable(error: unknown): void {
    if (this.#failingSince !== undefined) return;
    this.#failingSince = this.#clock();
    this.#logger.error({ err: error }, 'node registry store unreachable; no node is marked down');
  }

  /** Runs one store call and records what it showed of the store's health. */
  async track<T>(call: () => Promise<T>): Promise<T> {
    try {
      const result = await call();
      this.answered();
      return result;
    } catch (error) {
      if (error instanceof ServiceUnavailableError) this.unreachable(error);
      else this.answered();
      throw error;
    }
  }
}

/** A registry whose every call reports to a `StoreHealth`; it delegates everything else. */
export class HealthTrackedRegistry implements NodeRegistry {
  readonly #inner: NodeRegistry;
  readonly #health: StoreHealth;

  constructor(inner: NodeRegistry, health: StoreHealth) {
    this.#inner = inner;
    this.#health = health;
  }

  /** The registry the calls go to. */
  get inner(): NodeRegistry {
    return this.#inner;
  }

  register(registration: NodeRegistration, now: number): Promise<NodeRecord> {
    return this.#health.track(() => this.#inner.register(registration, now));
  }

  heartbeat(id: string, load: NodeLoad, now: number): Promise<void> {
    return this.#health.track(() => this.#inner.heartbeat(id, load, now));
  }

  list(): Promise<NodeRecord[]> {
    return this.#health.track(() => this.#inner.list());
  }

  get(id: string): Promise<NodeRecord | undefined> {
    return this.#health.track(() => this.#inner.get(id));
  }

  markDown(id: string, options?: { lastHeartbeatBefore?: number }): Promise<boolean> {
    return this.#health.track(() => this.#inner.markDown(id, options));
  }

  remove(id: string): Promise<boolean> {
    return this.#health.track(() => this.#inner.remove(id));
  }

  addPending(id: string, delta?: number, now?: number): Promise<number | undefined> {
    return this.#health.track(() => this.#inner.addPending(id, delta, now));
  }

  assignment(channel: string): Promise<ChannelAssignment | undefined> {
    return this.#health.track(() => this.#inner.assignment(channel));
  }

  compareAndSetAssignment(
    channel: string,
    expectedVersion: number | undefined,
    next: ChannelAssignment | undefined,
  ): Promise<boolean> {
    return this.#health.track(() =>
      this.#inner.compareAndSetAssignment(channel, expectedVersion, next),
    );
  }

  assignments(): Promise<ChannelAssignment[]> {
    return this.#health.track(() => this.#inner.assignments());
  }

  channelsOnNode(id: string): Promise<string[]> {
    return this.#health.track(() => this.#inner.channelsOnNode(id));
  }

  vouch(instanceId: string, at: number): Promise<Map<string, number>> {
    return this.#health.track(() => this.#inner.vouch(instanceId, at));
  }

  forgetInstance(instanceId: string): Promise<void> {
    return this.#health.track(() => this.#inner.forgetInstance(instanceId));
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}
