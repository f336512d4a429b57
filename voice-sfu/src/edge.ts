import type { types } from 'mediasoup';
import { AppError, SerialQueue, type Logger } from '@hearth/server-common';
import { routerMediaCodecs } from './media-codecs';
import type { Peer } from './peer';
import type { WorkerPool } from './worker-pool';

/** An edge router of a channel: it holds listeners' consumers, fed from the core by pipes. */
export class Edge {
  /** The mediasoup router. */
  readonly router: types.Router;
  /** Index of the worker the router lives on. */
  readonly workerIndex: number;
  /** Peers whose receive transport lives on this edge. */
  readonly peers = new Set<Peer>();
  /** Producers piped from the core, by producer id; the promise settles when the pipe is up. */
  readonly piped = new Map<string, Promise<void>>();

  constructor(router: types.Router, workerIndex: number) {
    this.router = router;
    this.workerIndex = workerIndex;
  }

  /** Consumers admitted to this edge, counting reservations of peers still opening theirs. */
  get load(): number {
    let load = 0;
    for (const peer of this.peers) load += peer.edgeLoad;
    return load;
  }
}

/** Where an edge is and how loaded, for `Channel.layout()`. */
export interface EdgeLayout {
  routerId: string;
  workerIndex: number;
  peerIds: string[];
  consumers: number;
}

/**
 * The edges of one channel: which edge admits each listener, and the pipes that carry the core's
 * producers to them. Edges fill in order, so a channel uses as few pipes as it can.
 */
export class EdgeSet {
  readonly #core: types.Router;
  readonly #coreWorkerIndex: number;
  readonly #pool: WorkerPool;
  readonly #maxConsumersPerEdge: number;
  readonly #logger: Logger;
  readonly #edges = new Map<string, Edge>();
  readonly #queue = new SerialQueue();
  #closed = false;

  constructor(options: {
    core: types.Router;
    coreWorkerIndex: number;
    pool: WorkerPool;
    maxConsumersPerEdge: number;
    logger: Logger;
  }) {
    this.#core = options.core;
    this.#coreWorkerIndex = options.coreWorkerIndex;
    this.#pool = options.pool;
    this.#maxConsumersPerEdge = options.maxConsumersPerEdge;
    this.#logger = options.logger;
  }

  /**
   * Admits a peer to the first edge where the `reserve` consumers it will open now still fit,
   * opening one if none has room. Admissions run one at a time, so two joins never both see the
   * same free room or both open a new edge.
   */
  admit(peer: Peer, reserve: number): Promise<Edge> {
    return this.#queue.push(async () => {
      this.#assertOpen();
      let edge = [...this.#edges.values()].find(
        (candidate) => candidate.load + reserve <= this.#maxConsumersPerEdge,
      );
      if (!edge) edge = await this.#open();
      if (peer.closed) throw new AppError('not_joined', 'the peer left while joining');
      peer.reservedConsumers = reserve;
      peer.edge = edge;
      edge.peers.add(peer);
      return edge;
    });
  }

  /** Takes a peer off its edge; an edge left empty closes (the core router stays). */
  release(peer: Peer): void {
    const edge = peer.edge;
    if (!edge) return;
    edge.peers.delete(peer);
    peer.edge = undefined;
    if (edge.peers.size === 0) {
      if (edge.router !== this.#core) edge.router.close();
      this.#edges.delete(edge.router.id);
      this.#logger.info({ edge: edge.router.id }, 'edge closed');
    }
  }

  /** Makes a core producer available on an edge; concurrent callers share one pipe. */
  async pipe(producer: types.Producer, edge: Edge): Promise<void> {
    if (edge.router === this.#core) return;
    let piped = edge.piped.get(producer.id);
    if (!piped) {
      piped = this.#core
        .pipeToRouter({ producerId: producer.id, router: edge.router })
        .then(({ pipeProducer }) => {
          pipeProducer?.observer.once('close', () => edge.piped.delete(producer.id));
        });
      piped.catch(() => edge.piped.delete(producer.id));
      edge.piped.set(producer.id, piped);
    }
    await piped;
  }

  /** Where each edge is, its peers and their consumers. */
  layout(): EdgeLayout[] {
    return [...this.#edges.values()].map((edge) => ({
      routerId: edge.router.id,
      workerIndex: edge.workerIndex,
      peerIds: [...edge.peers].map((peer) => peer.id),
      consumers: [...edge.peers].reduce((sum, peer) => sum + peer.consumers.size, 0),
    }));
  }

  /** Whether an edge lives on a worker. */
  usesWorker(index: number): boolean {
    return [...this.#edges.values()].some((edge) => edge.workerIndex === index);
  }

  /** Closes every edge router but the core's. */
  close(): void {
    this.#closed = true;
    for (const edge of this.#edges.values()) {
      if (edge.router !== this.#core) edge.router.close();
    }
    this.#edges.clear();
  }

  // mediasoup 3.12 keys producers by id within a worker and pipeToRouter keeps the id, so a
  // producer can be piped into only one router per worker. A channel therefore has at most one
  // edge per worker, and on the core's worker the core router itself serves as the edge.
  async #open(): Promise<Edge> {
    const edgeWorkers = new Set([...this.#edges.values()].map((edge) => edge.workerIndex));
    const slot = this.#pool.leastLoaded(
      (candidate) => candidate.index !== this.#coreWorkerIndex && !edgeWorkers.has(candidate.index),
    );
    if (!slot) {
      if (!edgeWorkers.has(this.#coreWorkerIndex))
        return this.#add(this.#core, this.#coreWorkerIndex);
      const fallback = [...this.#edges.values()].reduce((best, edge) =>
        edge.load < best.load ? edge : best,
      );
      this.#logger.warn(
        { edge: fallback.router.id, load: fallback.load, max: this.#maxConsumersPerEdge },
        'every worker has a full edge of this channel; overfilling the least-loaded one',
      );
      return fallback;
    }
    const router = await slot.worker.createRouter({ mediaCodecs: routerMediaCodecs });
    if (this.#closed) {
      router.close();
      throw new AppError('unavailable', 'the channel closed');
    }
    return this.#add(router, slot.index);
  }

  #add(router: types.Router, workerIndex: number): Edge {
    const edge = new Edge(router, workerIndex);
    this.#edges.set(router.id, edge);
    this.#logger.info({ edge: router.id, worker: workerIndex }, 'edge opened');
    return edge;
  }

  #assertOpen(): void {
    if (this.#closed) throw new AppError('unavailable', 'the channel closed');
  }
}
