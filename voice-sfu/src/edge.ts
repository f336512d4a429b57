import type { types } from 'mediasoup';
import type { Peer } from './peer';

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
