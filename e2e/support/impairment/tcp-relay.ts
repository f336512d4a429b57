import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { ImpairmentDice } from './dice';
import { randomSeed } from './random';
import { applyPatch, NO_IMPAIRMENT, type ImpairmentPatch, type RelayImpairment } from './settings';
import type { DirectionStats } from './stats';
import { StreamDirection, StreamPipe } from './stream-link';
import type { Endpoint } from './udp-relay';

/** How to start a TCP impairment relay. */
export interface TcpRelayOptions {
  /** The server the relay forwards to. */
  target: Endpoint;
  /** Address the relay listens on for clients; loopback unless given. */
  listenHost?: string;
  /** Port the relay listens on; a free one unless given. */
  listenPort?: number;
  /** Seed of the random impairments; a random one unless given (see `relay.seed`). */
  seed?: number;
  /** Impairments from the start; none unless given. */
  impairment?: ImpairmentPatch;
  /** Most connections served at once; further ones are closed at once. Default 64. */
  maxConnections?: number;
  /** A connection with no byte either way for this long is destroyed, in ms. Default 60 s. */
  idleTimeoutMs?: number;
  /** Bytes one direction of one connection holds before it stops reading. Default 256 KiB. */
  maxBufferedBytes?: number;
}

/** Counters of a TCP relay; its packets are segments of at most `SEGMENT_BYTES`. */
export interface TcpRelayStats {
  /** Client to server. */
  upstream: DirectionStats;
  /** Server to client. */
  downstream: DirectionStats;
  /** Connections: one upstream connection per client connection. */
  connections: {
    /** Open now. */
    active: number;
    /** Accepted so far. */
    opened: number;
    /** Destroyed after their idle timeout. */
    expired: number;
    /** Closed at once because every slot was taken. */
    refused: number;
    /** Ended by an error on either side (reset, refused upstream). */
    failed: number;
  };
}

interface Connection {
  client: net.Socket;
  server: net.Socket;
  pipes: StreamPipe[];
  lastActiveAt: number;
  openSockets: number;
}

function checkCount(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`${name} must be a positive integer, got ${value}`);
  }
  return value;
}

/**
 * A TCP forwarder between clients and one server that impairs what it forwards, for signaling,
 * ICE-TCP and TURN over TCP. Each client connection gets its own connection to the server. Both
 * directions keep bytes intact and in order; `StreamDirection` says how each impairment acts on
 * a stream. Connections and buffered bytes are bounded.
 */
export class TcpImpairmentRelay {
  readonly #server: net.Server;
  readonly #target: Endpoint;
  readonly #seed: number;
  readonly #maxConnections: number;
  readonly #idleTimeoutMs: number;
  readonly #maxBufferedBytes: number;
  readonly #connections = new Set<Connection>();
  readonly #upstream: StreamDirection;
  readonly #downstream: StreamDirection;
  readonly #sweepTimer: NodeJS.Timeout;
  readonly #connectionCounts = { opened: 0, expired: 0, refused: 0, failed: 0 };
  #impairment: RelayImpairment;
  #closed = false;

  private constructor(server: net.Server, options: TcpRelayOptions) {
    this.#server = server;
    this.#target = options.target;
    this.#seed = options.seed ?? randomSeed();
    this.#maxConnections = checkCount(options.maxConnections ?? 64, 'maxConnections');
    this.#idleTimeoutMs = checkCount(options.idleTimeoutMs ?? 60_000, 'idleTimeoutMs');
    this.#maxBufferedBytes = checkCount(options.maxBufferedBytes ?? 256 * 1024, 'maxBufferedBytes');
    this.#impairment = applyPatch(
      { upstream: NO_IMPAIRMENT, downstream: NO_IMPAIRMENT },
      options.impairment ?? {},
    );
    this.#upstream = new StreamDirection(
      new ImpairmentDice(this.#seed, 'upstream'),
      this.#impairment.upstream,
    );
    this.#downstream = new StreamDirection(
      new ImpairmentDice(this.#seed, 'downstream'),
      this.#impairment.downstream,
    );
    server.on('connection', (client) => this.#onClient(client));
    this.#sweepTimer = setInterval(
      () => this.#destroyIdleConnections(),
      Math.min(1000, Math.max(10, this.#idleTimeoutMs / 4)),
    );
    this.#sweepTimer.unref();
  }

  /** Starts a relay listening for clients; throws on bad options or if the port is taken. */
  static async start(options: TcpRelayOptions): Promise<TcpImpairmentRelay> {
    if (net.isIP(options.target.host) === 0) {
      throw new TypeError(`target.host must be an IP address, got "${options.target.host}"`);
    }
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.listenPort ?? 0, options.listenHost ?? '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    try {
      return new TcpImpairmentRelay(server, options);
    } catch (error) {
      server.close();
      throw error;
    }
  }

  /** Where clients connect: the relay's listening address. */
  get address(): Endpoint {
    const { address, port } = this.#server.address() as net.AddressInfo;
    return { host: address, port };
  }

  /** The relay's listening port. */
  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  /** The seed of the random impairments, to replay a run. */
  get seed(): number {
    return this.#seed;
  }

  /** The impairments in force, per direction. */
  get impairment(): RelayImpairment {
    return structuredClone(this.#impairment);
  }

  /** Changes impairments mid-run; throws, changing nothing, on a bad field. */
  set(patch: ImpairmentPatch): void {
    this.#impairment = applyPatch(this.#impairment, patch);
    this.#upstream.update(this.#impairment.upstream);
    this.#downstream.update(this.#impairment.downstream);
  }

  /** A snapshot of the counters. */
  stats(): TcpRelayStats {
    return {
      upstream: this.#upstream.stats(),
      downstream: this.#downstream.stats(),
      connections: { active: this.#connections.size, ...this.#connectionCounts },
    };
  }

  /** Destroys every connection and stops listening; idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#sweepTimer);
    for (const connection of [...this.#connections]) this.#destroy(connection);
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #onClient(client: net.Socket): void {
    if (this.#closed || this.#connections.size >= this.#maxConnections) {
      this.#connectionCounts.refused++;
      client.destroy();
      return;
    }
    this.#connectionCounts.opened++;
    const server = net.connect({
      host: this.#target.host,
      port: this.#target.port,
      allowHalfOpen: true,
    });
    // The relay paces segments itself; Nagle's algorithm would add its own delay on top.
    client.setNoDelay(true);
    server.setNoDelay(true);
    const connection: Connection = {
      client,
      server,
      pipes: [],
      lastActiveAt: performance.now(),
      openSockets: 2,
    };
    const onActivity = () => (connection.lastActiveAt = performance.now());
    connection.pipes = [
      new StreamPipe({
        source: client,
        sink: server,
        direction: this.#upstream,
        maxBufferedBytes: this.#maxBufferedBytes,
        onActivity,
      }),
      new StreamPipe({
        source: server,
        sink: client,
        direction: this.#downstream,
        maxBufferedBytes: this.#maxBufferedBytes,
        onActivity,
      }),
    ];
    this.#connections.add(connection);
    for (const socket of [client, server]) {
      socket.on('error', () => {
        if (this.#connections.has(connection)) this.#connectionCounts.failed++;
        this.#destroy(connection);
      });
      socket.on('close', () => {
        connection.openSockets--;
        if (connection.openSockets === 0) this.#destroy(connection);
      });
    }
    client.resume();
  }

  #destroyIdleConnections(): void {
    const now = performance.now();
    for (const connection of [...this.#connections]) {
      if (now - connection.lastActiveAt < this.#idleTimeoutMs) continue;
      this.#connectionCounts.expired++;
      this.#destroy(connection);
    }
  }

  #destroy(connection: Connection): void {
    if (!this.#connections.delete(connection)) return;
    for (const pipe of connection.pipes) pipe.close();
    connection.client.destroy();
    connection.server.destroy();
  }
}
