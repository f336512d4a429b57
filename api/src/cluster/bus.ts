import { Redis } from 'ioredis';
import type { Logger } from '@hearth/server-common';

/** Receives one message of a topic, already decoded from JSON but not validated. */
export type BusHandler = (message: unknown) => void | Promise<void>;

/**
 * Publish/subscribe between the api instances of a cluster. Messages are JSON values, delivered
 * to every subscriber of the topic on every instance, the publisher's own included, in the order
 * one publisher sent them. Delivery is at most once: an instance that is not subscribed at the time
 * misses the message. Subscribers parse what they receive with their schema.
 */
export interface ClusterBus {
  /** Sends a JSON-serialisable message to every subscriber of the topic. */
  publish(topic: string, message: unknown): Promise<void>;
  /**
   * Adds a handler (adding the same function twice to a topic adds it once); resolves, once
   * messages flow, with a function that removes it.
   */
  subscribe(topic: string, handler: BusHandler): Promise<() => Promise<void>>;
  /** Drops every subscription and connection; later calls reject. */
  close(): Promise<void>;
}

const TOPIC_PATTERN = /^[A-Za-z0-9_.:-]{1,200}$/;

function checkTopic(topic: string): void {
  if (!TOPIC_PATTERN.test(topic)) {
    throw new TypeError(`invalid bus topic ${JSON.stringify(topic)}: use 1-200 of [A-Za-z0-9_.:-]`);
  }
}

function encode(message: unknown): string {
  const text = JSON.stringify(message);
  if (text === undefined) throw new TypeError('a bus message must be a JSON value');
  return text;
}

// Runs one handler so that neither its exception nor its rejection reaches the bus.
function deliver(handler: BusHandler, message: unknown, topic: string, logger: Logger): void {
  const reportError = (error: unknown) =>
    logger.error({ err: error, topic }, 'cluster bus: a subscriber failed');
  try {
    const result = handler(message);
    if (result instanceof Promise) result.catch(reportError);
  } catch (error) {
    reportError(error);
  }
}

/** The bus of a single api process; it still copies messages through JSON like Redis does. */
export class InMemoryClusterBus implements ClusterBus {
  readonly #handlers = new Map<string, Set<BusHandler>>();
  readonly #logger: Logger;
  #closed = false;

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  async publish(topic: string, message: unknown): Promise<void> {
    this.#checkOpen();
    checkTopic(topic);
    const text = encode(message);
    const handlers = [...(this.#handlers.get(topic) ?? [])];
    // Delivered later, as over the network, so a publisher never re-enters its own handler.
    queueMicrotask(() => {
      for (const handler of handlers) {
        if (this.#handlers.get(topic)?.has(handler)) {
          deliver(handler, JSON.parse(text), topic, this.#logger);
        }
      }
    });
  }

  async subscribe(topic: string, handler: BusHandler): Promise<() => Promise<void>> {
    this.#checkOpen();
    checkTopic(topic);
    let handlers = this.#handlers.get(topic);
    if (!handlers) {
      handlers = new Set();
      this.#handlers.set(topic, handlers);
    }
    handlers.add(handler);
    return async () => {
      const current = this.#handlers.get(topic);
      current?.delete(handler);
      if (current?.size === 0) this.#handlers.delete(topic);
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#handlers.clear();
  }

  #checkOpen(): void {
    if (this.#closed) throw new Error('the cluster bus is closed');
  }
}

/**
 * The bus of a cluster, over Redis pub/sub: one connection publishes, another one (in subscriber
 * mode, as Redis requires) listens. Topics map to Redis channels under a prefix (`hearth:bus:`).
 */
export class RedisClusterBus implements ClusterBus {
  readonly #publisher: Redis;
  readonly #subscriber: Redis;
  readonly #logger: Logger;
  readonly #prefix: string;
  readonly #handlers = new Map<string, Set<BusHandler>>();
  // One SUBSCRIBE per topic; later subscribers wait for it so none returns before messages flow.
  readonly #subscribed = new Map<string, Promise<unknown>>();
  #closed = false;

  constructor(options: {
    url: string;
    logger: Logger;
    channelPrefix?: string;
    /** Time a publish may take before it fails, so a hung Redis does not hold up publishers. */
    commandTimeoutMs?: number;
  }) {
    this.#logger = options.logger;
    this.#prefix = options.channelPrefix ?? 'hearth:bus:';
    this.#publisher = new Redis(options.url, {
      maxRetriesPerRequest: 3,
      ...(options.commandTimeoutMs !== undefined
        ? { commandTimeout: options.commandTimeoutMs }
        : {}),
    });
    this.#subscriber = new Redis(options.url);
    for (const [role, client] of [
      ['publisher', this.#publisher],
      ['subscriber', this.#subscriber],
    ] as const) {
      client.on('error', (error: unknown) =>
        this.#logger.warn({ err: error, role }, 'cluster bus: Redis connection error'),
      );
    }
    this.#subscriber.on('message', (channel: string, text: string) =>
      this.#dispatch(channel, text),
    );
  }

  async publish(topic: string, message: unknown): Promise<void> {
    this.#checkOpen();
    checkTopic(topic);
    await this.#publisher.publish(this.#prefix + topic, encode(message));
  }

  async subscribe(topic: string, handler: BusHandler): Promise<() => Promise<void>> {
    this.#checkOpen();
    checkTopic(topic);
    let handlers = this.#handlers.get(topic);
    if (!handlers) {
      handlers = new Set();
      this.#handlers.set(topic, handlers);
      this.#subscribed.set(topic, this.#subscriber.subscribe(this.#prefix + topic));
    }
    handlers.add(handler);
    try {
      await this.#subscribed.get(topic);
    } catch (error) {
      handlers.delete(handler);
      if (handlers.size === 0 && this.#handlers.get(topic) === handlers) {
        this.#handlers.delete(topic);
        this.#subscribed.delete(topic);
      }
      throw error;
    }
    return async () => {
      const current = this.#handlers.get(topic);
      if (!current?.delete(handler) || current.size > 0) return;
      this.#handlers.delete(topic);
      this.#subscribed.delete(topic);
      if (!this.#closed) await this.#subscriber.unsubscribe(this.#prefix + topic);
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#handlers.clear();
    this.#subscribed.clear();
    await Promise.all(
      [this.#publisher, this.#subscriber].map((client) =>
        client.quit().catch(() => client.disconnect()),
      ),
    );
  }

  #dispatch(channel: string, text: string): void {
    if (!channel.startsWith(this.#prefix)) return;
    const topic = channel.slice(this.#prefix.length);
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch {
      this.#logger.warn({ topic }, 'cluster bus: dropped a message that is not JSON');
      return;
    }
    // Each handler gets its own copy, as it would from another instance.
    [...(this.#handlers.get(topic) ?? [])].forEach((handler, index) =>
      deliver(handler, index === 0 ? message : JSON.parse(text), topic, this.#logger),
    );
  }

  #checkOpen(): void {
    if (this.#closed) throw new Error('the cluster bus is closed');
  }
}
