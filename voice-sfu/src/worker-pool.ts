import * as mediasoup from 'mediasoup';
import type { types } from 'mediasoup';
import { TypedEmitter, type Logger } from '@hearth/server-common';
import type { VoiceConfig } from './config';

/** One mediasoup worker with its WebRtcServer and live object counts. */
export interface WorkerSlot {
  /** Position in the pool; a replacement worker takes the same index and ports. */
  readonly index: number;
  /** The mediasoup worker process. */
  readonly worker: types.Worker;
  /** The worker's single WebRtcServer: one UDP and one TCP port for every transport. */
  readonly webRtcServer: types.WebRtcServer;
  /** Routers living on the worker. */
  routers: number;
  /** Transports of every kind living on the worker. */
  transports: number;
  /** Producers living on the worker, pipe producers included. */
  producers: number;
  /** Consumers living on the worker, pipe consumers included. */
  consumers: number;
}

/** Events of a WorkerPool. */
export type WorkerPoolEvents = {
  /** A worker died; its routers are gone. A replacement is being started. */
  workerDied: [index: number, error: Error];
  /** A replacement worker is up at the given index. */
  workerReplaced: [index: number];
};

/** Object counts of one worker, for load decisions, metrics and cleanup checks. */
export type WorkerLoad = Pick<
  WorkerSlot,
  'index' | 'routers' | 'transports' | 'producers' | 'consumers'
>;

/** Starts and supervises the mediasoup workers of one node. */
export class WorkerPool {
  readonly #config: VoiceConfig;
  readonly #logger: Logger;
  readonly #slots = new Map<number, WorkerSlot>();
  #closed = false;
  /** Pool events: deaths and replacements. */
  readonly events: TypedEmitter<WorkerPoolEvents>;

  private constructor(config: VoiceConfig, logger: Logger) {
    this.#config = config;
    this.#logger = logger;
    this.events = new TypedEmitter((error, event) =>
      logger.error({ err: error, event }, 'worker pool listener failed'),
    );
  }

  /** Starts `config.numWorkers` workers, each with its own WebRtcServer. */
  static async create(config: VoiceConfig, logger: Logger): Promise<WorkerPool> {
    const pool = new WorkerPool(config, logger);
    try {
      for (let index = 0; index < config.numWorkers; index++) {
        await pool.#startSlot(index);
      }
    } catch (error) {
      pool.close();
      throw error;
    }
    return pool;
  }

  /** Workers the pool runs when whole. */
  get size(): number {
    return this.#config.numWorkers;
  }

  /** Every live slot, ordered by index. */
  get slots(): WorkerSlot[] {
    return [...this.#slots.values()].sort((a, b) => a.index - b.index);
  }

  /** The slot at an index; throws when that worker is down. */
  slot(index: number): WorkerSlot {
    const slot = this.#slots.get(index);
    if (!slot) throw new Error(`worker ${index} is not running`);
    return slot;
  }

  /** The live slot with the fewest objects among those `accept` allows, if any. */
  leastLoaded(accept: (slot: WorkerSlot) => boolean = () => true): WorkerSlot | undefined {
    const weight = (slot: WorkerSlot) => slot.consumers + slot.transports;
    let best: WorkerSlot | undefined;
    for (const slot of this.slots) {
      if (accept(slot) && (!best || weight(slot) < weight(best))) best = slot;
    }
    return best;
  }

  /** Object counts of every worker. */
  loads(): WorkerLoad[] {
    return this.slots.map(({ index, routers, transports, producers, consumers }) => ({
      index,
      routers,
      transports,
      producers,
      consumers,
    }));
  }

  /** Closes every worker; no replacement is started afterwards. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const slot of this.#slots.values()) slot.worker.close();
    this.#slots.clear();
  }

  async #startSlot(index: number): Promise<void> {
    const worker = await mediasoup.createWorker({
      logLevel: this.#config.workerLogLevel,
      appData: { index },
    });
    const port = this.#config.rtcBasePort === 0 ? undefined : this.#config.rtcBasePort + index;
    const listen = {
      ip: this.#config.listenIp,
      announcedIp: this.#config.announcedAddress,
      port,
    };
    let webRtcServer: types.WebRtcServer;
    try {
      webRtcServer = await worker.createWebRtcServer({
        listenInfos: [
          { ...listen, protocol: 'udp' },
          { ...listen, protocol: 'tcp' },
        ],
      });
    } catch (error) {
      worker.close();
      throw error;
    }
    const slot: WorkerSlot = {
      index,
      worker,
      webRtcServer,
      routers: 0,
      transports: 0,
      producers: 0,
      consumers: 0,
    };
    this.#countObjects(slot);
    worker.on('died', (error) => this.#onDied(slot, error));
    this.#slots.set(index, slot);
    this.#logger.info({ worker: index, pid: worker.pid, port }, 'mediasoup worker started');
  }

  // Counting through observers reflects what the worker really holds, pipe objects included,
  // rather than what the channel code believes it created.
  #countObjects(slot: WorkerSlot): void {
    slot.worker.observer.on('newrouter', (router) => {
      slot.routers++;
      router.observer.once('close', () => slot.routers--);
      router.observer.on('newtransport', (transport) => {
        slot.transports++;
        transport.observer.once('close', () => slot.transports--);
        transport.observer.on('newproducer', (producer) => {
          slot.producers++;
          producer.observer.once('close', () => slot.producers--);
        });
        transport.observer.on('newconsumer', (consumer) => {
          slot.consumers++;
          consumer.observer.once('close', () => slot.consumers--);
        });
      });
    });
  }

  #onDied(slot: WorkerSlot, error: Error): void {
    if (this.#slots.get(slot.index) !== slot) return;
    this.#slots.delete(slot.index);
    this.#logger.error({ worker: slot.index, pid: slot.worker.pid, err: error }, 'worker died');
    this.events.safeEmit('workerDied', slot.index, error);
    if (!this.#closed) void this.#replace(slot.index, 1);
  }

  async #replace(index: number, attempt: number): Promise<void> {
    if (this.#closed) return;
    try {
      await this.#startSlot(index);
      if (this.#closed) {
        this.#slots.get(index)?.worker.close();
        return;
      }
      this.events.safeEmit('workerReplaced', index);
    } catch (error) {
      // The old process may still hold the port for a moment; retry with a growing delay.
      const delayMs = Math.min(5000, 100 * 2 ** attempt);
      this.#logger.error({ worker: index, err: error, attempt, delayMs }, 'worker restart failed');
      setTimeout(() => void this.#replace(index, attempt + 1), delayMs).unref();
    }
  }
}
