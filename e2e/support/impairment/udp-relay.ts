import dgram from 'node:dgram';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { DatagramLink, type PacketDestination } from './datagram-link';
import { ImpairmentDice } from './dice';
import { randomSeed } from './random';
import { applyPatch, NO_IMPAIRMENT, type ImpairmentPatch, type RelayImpairment } from './settings';
import type { DirectionStats } from './stats';

/** An IP address and port. */
export interface Endpoint {
  /** An IP literal (a relay compares reply sources with it, so no host names). */
  host: string;
  /** The port. */
  port: number;
}

/** How to start a UDP impairment relay. */
export interface UdpRelayOptions {
  /** The server the relay forwards to. */
  target: Endpoint;
  /** Address the relay listens on for clients; loopback unless given. */
  listenHost?: string;
  /** Port the relay listens on; a free one unless given. */
  listenPort?: number;
  /** Address each session's upstream socket binds to; `listenHost` unless given. */
  upstreamHost?: string;
  /** Seed of the random impairments; a random one unless given (see `relay.seed`). */
  seed?: number;
  /** Impairments from the start; none unless given. */
  impairment?: ImpairmentPatch;
  /** Most client addresses served at once; packets from further ones are dropped. Default 64. */
  maxSessions?: number;
  /** A session with no packet either way and none held for this long is closed, in ms. Default 30 s. */
  idleTimeoutMs?: number;
  /** Most packets held per direction (queue, delay, reordering). Default 10 000. */
  maxInFlightPackets?: number;
  /** Most bytes held per direction. Default 8 MiB. */
  maxInFlightBytes?: number;
}

/** Counters of a UDP relay. */
export interface UdpRelayStats {
  /** Client to server. */
  upstream: DirectionStats;
  /** Server to client. */
  downstream: DirectionStats;
  /** Sessions: one per client address. */
  sessions: {
    /** Open now. */
    active: number;
    /** Opened so far. */
    opened: number;
    /** Closed after their idle timeout. */
    expired: number;
    /** Client addresses turned away because every slot was taken (counted once per packet). */
    refused: number;
  };
  /** Sends the operating system refused (for example ICMP port unreachable reported back). */
  sendErrors: number;
}

/** One client address's session, as the relay reports it. */
export interface UdpSessionInfo {
  /** The client's address and port. */
  client: Endpoint;
  /** The local port of the session's upstream socket, which the server sees as the source. */
  upstreamPort: number | null;
}

interface Session {
  client: Endpoint;
  socket: dgram.Socket;
  upstreamPort: number | null;
  lastActiveAt: number;
  // Packets of this session the links hold; a session is not idle while any are on their way.
  heldPackets: number;
  toServer: PacketDestination;
  toClient: PacketDestination;
  closed: boolean;
}

function socketType(host: string): 'udp4' | 'udp6' {
  return net.isIPv6(host) ? 'udp6' : 'udp4';
}

function checkCount(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`${name} must be a positive integer, got ${value}`);
  }
  return value;
}

/**
 * A UDP forwarder between clients and one server that impairs what it forwards. Each client
 * address gets its own upstream socket (so the server sees distinct sources, and replies go back
 * to the client they answer), and each direction goes through one `DatagramLink`, shared by all
 * sessions like one bottleneck. Sessions, held packets and bytes are bounded.
 */
export class UdpImpairmentRelay {
  readonly #listenSocket: dgram.Socket;
  readonly #target: Endpoint;
  readonly #upstreamHost: string;
  readonly #seed: number;
  readonly #maxSessions: number;
  readonly #idleTimeoutMs: number;
  readonly #sessions = new Map<string, Session>();
  readonly #upstream: DatagramLink;
  readonly #downstream: DatagramLink;
  readonly #sweepTimer: NodeJS.Timeout;
  readonly #sessionCounts = { opened: 0, expired: 0, refused: 0 };
  #impairment: RelayImpairment;
  #sendErrors = 0;
  #closed = false;

  private constructor(listenSocket: dgram.Socket, options: UdpRelayOptions) {
    this.#listenSocket = listenSocket;
    this.#target = options.target;
    this.#upstreamHost = options.upstreamHost ?? options.listenHost ?? '127.0.0.1';
    this.#seed = options.seed ?? randomSeed();
    this.#maxSessions = checkCount(options.maxSessions ?? 64, 'maxSessions');
    this.#idleTimeoutMs = checkCount(options.idleTimeoutMs ?? 30_000, 'idleTimeoutMs');
    const bounds = {
      maxInFlightPackets: checkCount(options.maxInFlightPackets ?? 10_000, 'maxInFlightPackets'),
      maxInFlightBytes: checkCount(options.maxInFlightBytes ?? 8 * 1024 * 1024, 'maxInFlightBytes'),
    };
    this.#impairment = applyPatch(
      { upstream: NO_IMPAIRMENT, downstream: NO_IMPAIRMENT },
      options.impairment ?? {},
    );
    this.#upstream = new DatagramLink(
      new ImpairmentDice(this.#seed, 'upstream'),
      this.#impairment.upstream,
      bounds,
    );
    this.#downstream = new DatagramLink(
      new ImpairmentDice(this.#seed, 'downstream'),
      this.#impairment.downstream,
      bounds,
    );
    listenSocket.on('message', (packet, from) => this.#onClientPacket(packet, from));
    listenSocket.on('error', () => this.#sendErrors++);
    this.#sweepTimer = setInterval(
      () => this.#closeIdleSessions(),
      Math.min(1000, Math.max(10, this.#idleTimeoutMs / 4)),
    );
    this.#sweepTimer.unref();
  }

  /** Starts a relay listening for clients; throws on bad options or if the port is taken. */
  static async start(options: UdpRelayOptions): Promise<UdpImpairmentRelay> {
    if (net.isIP(options.target.host) === 0) {
      throw new TypeError(`target.host must be an IP address, got "${options.target.host}"`);
    }
    const listenHost = options.listenHost ?? '127.0.0.1';
    const socket = dgram.createSocket(socketType(listenHost));
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(options.listenPort ?? 0, listenHost, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    try {
      return new UdpImpairmentRelay(socket, options);
    } catch (error) {
      socket.close();
      throw error;
    }
  }

  /** Where clients send: the relay's listening address. */
  get address(): Endpoint {
    const { address, port } = this.#listenSocket.address();
    return { host: address, port };
  }

  /** The relay's listening port. */
  get port(): number {
    return this.#listenSocket.address().port;
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
  stats(): UdpRelayStats {
    return {
      upstream: this.#upstream.stats(),
      downstream: this.#downstream.stats(),
      sessions: { active: this.#sessions.size, ...this.#sessionCounts },
      sendErrors: this.#sendErrors,
    };
  }

  /** The open sessions. */
  sessions(): UdpSessionInfo[] {
    return [...this.#sessions.values()].map((session) => ({
      client: { ...session.client },
      upstreamPort: session.upstreamPort,
    }));
  }

  /** Closes every socket and drops what is held; idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#sweepTimer);
    this.#upstream.close();
    this.#downstream.close();
    for (const session of this.#sessions.values()) this.#closeSession(session);
    this.#sessions.clear();
    await new Promise<void>((resolve) => this.#listenSocket.close(() => resolve()));
  }

  #onClientPacket(packet: Buffer, from: dgram.RemoteInfo): void {
    if (this.#closed) return;
    const key = `${from.address}|${from.port}`;
    let session = this.#sessions.get(key);
    if (!session) {
      if (this.#sessions.size >= this.#maxSessions) {
        this.#sessionCounts.refused++;
        this.#upstream.refuse(packet, 'sessionLimit');
        return;
      }
      session = this.#openSession(key, { host: from.address, port: from.port });
    }
    session.lastActiveAt = performance.now();
    if (this.#upstream.push(packet, session.toServer)) session.heldPackets++;
  }

  #openSession(key: string, client: Endpoint): Session {
    const socket = dgram.createSocket(socketType(this.#target.host));
    const settle = () => {
      session.heldPackets--;
      session.lastActiveAt = performance.now();
    };
    const session: Session = {
      client,
      socket,
      upstreamPort: null,
      lastActiveAt: performance.now(),
      heldPackets: 0,
      toServer: {
        deliver: (packet) => {
          settle();
          if (session.closed) return false;
          socket.send(packet, this.#target.port, this.#target.host);
          return true;
        },
        discarded: settle,
      },
      toClient: {
        deliver: (packet) => {
          settle();
          if (session.closed) return false;
          this.#listenSocket.send(packet, client.port, client.host);
          return true;
        },
        discarded: settle,
      },
      closed: false,
    };
    this.#sessions.set(key, session);
    this.#sessionCounts.opened++;
    socket.on('error', () => this.#sendErrors++);
    socket.on('listening', () => (session.upstreamPort = socket.address().port));
    socket.on('message', (packet, from) => {
      if (from.address !== this.#target.host || from.port !== this.#target.port) {
        this.#downstream.refuse(packet, 'foreignSource');
        return;
      }
      session.lastActiveAt = performance.now();
      if (this.#downstream.push(packet, session.toClient)) session.heldPackets++;
    });
    // Node queues sends made while the bind is in progress, so packets can flow at once.
    socket.bind(0, this.#upstreamHost);
    return session;
  }

  #closeIdleSessions(): void {
    const now = performance.now();
    for (const [key, session] of this.#sessions) {
      if (session.heldPackets > 0 || now - session.lastActiveAt < this.#idleTimeoutMs) continue;
      this.#sessions.delete(key);
      this.#sessionCounts.expired++;
      this.#closeSession(session);
    }
  }

  #closeSession(session: Session): void {
    if (session.closed) return;
    session.closed = true;
    session.socket.close();
  }
}
