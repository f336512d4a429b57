import { EventEmitter } from 'node:events';

/** An event map: event name to the tuple of its listener arguments. */
export type EventMap = Record<string, unknown[]>;

/**
 * An EventEmitter typed by an event map whose `safeEmit` contains a listener's exception,
 * so one faulty listener cannot break the emitter's own bookkeeping.
 */
export class TypedEmitter<E extends EventMap> {
  readonly #emitter = new EventEmitter();
  readonly #onListenerError: (error: unknown, event: string) => void;

  constructor(onListenerError: (error: unknown, event: string) => void) {
    this.#onListenerError = onListenerError;
    this.#emitter.setMaxListeners(Infinity);
  }

  /** Adds a listener. */
  on<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this {
    this.#emitter.on(event, listener as (...args: unknown[]) => void);
    return this;
  }

  /** Adds a listener that runs once. */
  once<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this {
    this.#emitter.once(event, listener as (...args: unknown[]) => void);
    return this;
  }

  /** Removes a listener. */
  off<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this {
    this.#emitter.off(event, listener as (...args: unknown[]) => void);
    return this;
  }

  /** Calls every listener; an exception in one is reported and does not reach the caller. */
  safeEmit<K extends keyof E & string>(event: K, ...args: E[K]): void {
    for (const listener of this.#emitter.rawListeners(event)) {
      try {
        (listener as (...a: E[K]) => void)(...args);
      } catch (error) {
        this.#onListenerError(error, event);
      }
    }
  }

  /** Number of listeners of one event. */
  listenerCount<K extends keyof E & string>(event: K): number {
    return this.#emitter.listenerCount(event);
  }
}
