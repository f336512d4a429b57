import { warn } from '../log';

/** Events of an emitter: each event name mapped to the tuple of its listener's arguments. */
export type EventMap = Record<string, unknown[]>;

/** A listener of one event. */
export type Listener<Args extends unknown[]> = (...args: Args) => void;

/**
 * A small typed event emitter. A listener that throws is reported and contained, so one broken
 * subscriber cannot stop the others or the code that emitted.
 */
export class TypedEmitter<Events extends EventMap> {
  #listeners: { [K in keyof Events]?: Set<Listener<Events[K]>> } = {};

  /** Adds a listener and returns the function that removes it. */
  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    const set = this.#listeners[event] ?? new Set<Listener<Events[K]>>();
    this.#listeners[event] = set;
    set.add(listener);
    return () => this.off(event, listener);
  }

  /** Removes a listener added with `on`. */
  off<K extends keyof Events>(event: K, listener: Listener<Events[K]>): void {
    this.#listeners[event]?.delete(listener);
  }

  /** Removes every listener. */
  removeAllListeners(): void {
    this.#listeners = {};
  }

  /** Calls every listener of the event, reporting and containing their exceptions. */
  safeEmit<K extends keyof Events>(event: K, ...args: Events[K]): void {
    const set = this.#listeners[event];
    if (!set) return;
    for (const listener of [...set]) {
      try {
        listener(...args);
      } catch (error) {
        warn(`listener of "${String(event)}" failed`, error);
      }
    }
  }
}
