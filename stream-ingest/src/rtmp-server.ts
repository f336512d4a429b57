import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import NodeMediaServer from 'node-media-server';
import nmsContext from 'node-media-server/src/core/context.js';
import nmsLogger from 'node-media-server/src/core/logger.js';
import NmsRtmpSession from 'node-media-server/src/session/rtmp_session.js';
import { Counter, Gauge, Registry } from 'prom-client';
import { TypedEmitter, type Logger } from '@hearth/server-common';
import {
  ConnectionAdmission,
  DEFAULT_RTMP_LIMITS,
  RtmpLimitError,
  limitParser,
  redactStreamNames,
  type ParserLimits,
  type RtmpLimits,
} from './rtmp-guard';

/** Receives the FLV bytes of a stream: header, metadata, codec headers, the cached GOP, then live tags. */
export type FlvSink = (chunk: Buffer) => void;

/** A publisher that connected and asked to publish; the ingest decides whether it may. */
export interface PublishRequest {
  /** Session id. */
  readonly id: string;
  /** Publisher address. */
  readonly ip: string;
  /** RTMP application, `live` for OBS's server URL `rtmp://<host>:1935/live`. */
  readonly app: string;
  /** Stream name: the stream key OBS sends. Only the publish check may read it. */
  readonly streamKey: string;
  /** Video size and rate the publisher announced; zeros until its metadata arrives. */
  videoInfo(): { width: number; height: number; fps: number; bitrateKbps: number };
  /**
   * The publish is authorized: the connection may now send messages up to the authorized size,
   * and reading resumes (it pauses when `publish` arrives, so nothing large is parsed before).
   */
  accept(): void;
  /** Feeds the stream to `sink` as FLV until the returned function is called. */
  subscribe(sink: FlvSink): () => void;
  /** Disconnects the publisher. */
  close(): void;
  /** Calls `listener` once when the publisher's connection closes, or at once if it has. */
  onClosed(listener: () => void): void;
}

/** Events of the RTMP server. */
export type RtmpServerEvents = {
  /** A publisher started publishing on a free stream path. */
  publish: [PublishRequest];
  /** A second publisher on a live stream path was refused; the first is untouched. */
  duplicatePublish: [{ ip: string; app: string }];
};

/** Where the RTMP server listens and what it allows. */
export interface RtmpServerOptions {
  /** Address to bind; loopback by default. */
  host: string;
  /** Plain RTMP port; 0 picks a free one. */
  port: number;
  /** RTMPS listener, when a certificate is configured. */
  rtmps?: { port: number; certPath: string; keyPath: string };
  /** Logger for the server and node-media-server's own messages. */
  logger: Logger;
  /** Connection, message and time limits; DEFAULT_RTMP_LIMITS when absent. */
  limits?: RtmpLimits;
  /** Where the server's metrics go; a private registry when absent. */
  registry?: Registry;
}

/** Why the server closed a connection on its own. */
type CloseReason =
  | RtmpLimitError['violation']
  | 'handshake_timeout'
  | 'publish_timeout'
  | 'idle_timeout'
  | 'play_refused';

interface RtmpMetrics {
  refusedConnections: Counter<'reason'>;
  closedSessions: Counter<'reason'>;
}

// node-media-server's handshake state once C2 has arrived.
const HANDSHAKE_DONE = 3;
// A refused peer gets this long to read the refusal before its socket is destroyed.
const CLOSE_GRACE_MS = 1000;
// Longest excerpt of an error message that goes to the logs.
const LOGGED_MESSAGE_CHARS = 200;

/**
 * RTMP ingest on node-media-server v4, behind its own listeners. node-media-server parses the
 * protocol and fans streams out; this server owns the sockets and bounds what each peer can do
 * (`RtmpLimits`): connections in total and per address, handshake, publish and idle time, the
 * declared message size and chunk streams. An exception inside one connection's parsing closes
 * that connection only, and is counted and logged without the stream key.
 *
 * Nothing plays streams over RTMP: the ingest's own ffmpeg reads them as FLV through
 * `PublishRequest.subscribe`, so no stream key or play secret ever appears in a process's argv.
 * node-media-server keeps its state in one module, so a process runs one RtmpServer at a time.
 */
export class RtmpServer {
  /** Publish events. */
  readonly events: TypedEmitter<RtmpServerEvents>;
  /** Plain RTMP port in use. */
  readonly port: number;
  /** RTMPS port in use, when enabled. */
  readonly rtmpsPort: number | undefined;
  readonly #nms: NodeMediaServer;
  readonly #logger: Logger;
  readonly #limits: RtmpLimits;
  readonly #admission: ConnectionAdmission;
  readonly #metrics: RtmpMetrics;
  readonly #listeners: net.Server[] = [];
  readonly #sockets = new Set<net.Socket>();
  // How an accepted publish lifts the pre-publish limits of its session.
  readonly #allowStream = new WeakMap<NmsRtmpSession, (authorized: boolean) => void>();

  private constructor(options: RtmpServerOptions, port: number, nms: NodeMediaServer) {
    this.port = port;
    this.rtmpsPort = options.rtmps?.port;
    this.#nms = nms;
    this.#logger = options.logger.child({ component: 'rtmp' });
    this.#limits = options.limits ?? DEFAULT_RTMP_LIMITS;
    this.#admission = new ConnectionAdmission(this.#limits);
    this.#metrics = registerRtmpMetrics(options.registry ?? new Registry(), this.#admission);
    this.events = new TypedEmitter((error, event) =>
      this.#logger.error({ err: error, event }, 'rtmp listener failed'),
    );
    nmsContext.eventEmitter.on('prePublish', this.#onPrePublish);
  }

  /** Starts listening; a port in use is an error here rather than node-media-server's exit. */
  static async start(options: RtmpServerOptions): Promise<RtmpServer> {
    routeNmsLogs(options.logger.child({ component: 'node-media-server' }));
    // Without an `rtmp` section node-media-server opens no listener of its own; its constructor
    // only sets the module state its sessions read.
    const nms = new NodeMediaServer({ bind: options.host });
    const plain = net.createServer();
    const secure = options.rtmps
      ? tls.createServer({
          cert: fs.readFileSync(options.rtmps.certPath),
          key: fs.readFileSync(options.rtmps.keyPath),
          // A TLS peer is admitted (and counted) once its TLS handshake is done; until then only
          // this bounds it, so it is held to the RTMP handshake's time as well.
          handshakeTimeout: (options.limits ?? DEFAULT_RTMP_LIMITS).handshakeTimeoutMs,
        })
      : undefined;
    try {
      const port = await listen(plain, options.host, options.port);
      if (secure && options.rtmps) await listen(secure, options.host, options.rtmps.port);
      const server = new RtmpServer(options, port, nms);
      server.#serve(plain);
      if (secure) server.#serve(secure);
      return server;
    } catch (error) {
      plain.close();
      secure?.close();
      await nms.stop();
      throw error;
    }
  }

  /** Connections open now. */
  get connections(): number {
    return this.#admission.open;
  }

  /** Stops listening and disconnects everyone. */
  async stop(): Promise<void> {
    // node-media-server keeps its event emitter in module state shared by every instance, so a
    // stopped server must take its handler off or it would still act on a later server's sessions.
    nmsContext.eventEmitter.off('prePublish', this.#onPrePublish);
    const closed = this.#listeners.map(
      (listener) => new Promise((resolve) => listener.close(resolve)),
    );
    for (const socket of this.#sockets) socket.destroy();
    await Promise.all(closed);
    await this.#nms.stop();
  }

  #serve(listener: net.Server): void {
    this.#listeners.push(listener);
    // TLS servers hand over sockets after the TLS handshake, plain ones at once.
    const event = listener instanceof tls.Server ? 'secureConnection' : 'connection';
    listener.on(event, (socket: net.Socket) => this.#accept(socket));
    // A TLS handshake that fails (garbage, wrong version) is that peer's problem only.
    listener.on('tlsClientError', (_error: Error, socket: net.Socket) => socket.destroy());
  }

  #accept(socket: net.Socket): void {
    const address = socket.remoteAddress ?? 'unknown';
    const admitted = this.#admission.admit(address);
    if (admitted !== 'ok') {
      this.#metrics.refusedConnections.inc({ reason: admitted });
      this.#logger.warn({ address, limit: admitted }, 'rtmp connection refused: too many');
      socket.destroy();
      return;
    }
    this.#sockets.add(socket);
    const session = new NmsRtmpSession(socket);
    const parser: ParserLimits = {
      maxMessageBytes: this.#limits.maxMessageBytesBeforePublish,
      maxChunkStreams: this.#limits.maxChunkStreams,
    };
    limitParser(session.rtmp, parser);
    let admittedStream = false;
    const timers = [
      setTimeout(() => {
        if (session.rtmp.handshakeState !== HANDSHAKE_DONE)
          this.#drop(session, 'handshake_timeout');
      }, this.#limits.handshakeTimeoutMs),
      setTimeout(() => {
        if (!admittedStream) this.#drop(session, 'publish_timeout');
      }, this.#limits.publishTimeoutMs),
    ];
    socket.setTimeout(this.#limits.idleTimeoutMs, () => this.#drop(session, 'idle_timeout'));
    // node-media-server's own session.run(), with every entry point guarded.
    const rtmp = session.rtmp;
    rtmp.onConnectCallback = session.onConnect;
    rtmp.onOutputCallback = session.onOutput;
    rtmp.onPacketCallback = session.onPacket;
    rtmp.onPlayCallback = () => this.#drop(session, 'play_refused');
    rtmp.onPushCallback = () => {
      // Nothing more is read until the publish is authorized, so nothing large is parsed before.
      socket.pause();
      session.onPush();
    };
    socket.on('data', (data: Buffer) => {
      if (socket.destroyed) return;
      try {
        session.onData(data);
      } catch (error) {
        this.#drop(
          session,
          error instanceof RtmpLimitError ? error.violation : 'protocol_error',
          error,
        );
      }
    });
    socket.on('error', (error) => {
      this.#logger.debug({ session: session.id, code: errorCode(error) }, 'rtmp socket error');
    });
    socket.once('close', () => {
      for (const timer of timers) clearTimeout(timer);
      this.#sockets.delete(socket);
      this.#admission.release(address);
      try {
        session.onClose();
      } catch (error) {
        this.#logger.error({ session: session.id, err: redactError(error) }, 'rtmp close failed');
      }
    });
    nmsContext.sessions.set(session.id, session);
    this.#allowStream.set(session, (authorized) => {
      admittedStream = true;
      clearTimeout(timers[1]);
      if (authorized) parser.maxMessageBytes = this.#limits.maxMessageBytes;
      socket.resume();
    });
  }

  #drop(session: NmsRtmpSession, reason: CloseReason, error?: unknown): void {
    if (session.socket.destroyed) return;
    this.#metrics.closedSessions.inc({ reason });
    this.#logger.warn(
      { session: session.id, ip: session.ip, reason, problem: error && redactError(error) },
      'rtmp connection closed',
    );
    session.socket.destroy();
  }

  readonly #onPrePublish = (session: NmsRtmpSession): void => {
    // A stream ends when its publisher's socket closes; node-media-server's 30 s wait for the
    // same client to resume would only keep a refused or departed publisher's state around.
    session.broadcast.publishGraceMs = 0;
    // node-media-server decides a second publisher on a busy path only after this event, and
    // still emits postPublish for it; looking once its own handling finished tells them apart.
    setImmediate(() => {
      if (session.broadcast?.publisher !== session) {
        this.#logger.warn({ ip: session.ip, app: session.streamApp }, 'second publisher refused');
        this.events.safeEmit('duplicatePublish', { ip: session.ip, app: session.streamApp });
        closeGently(session.socket);
        return;
      }
      if (session.socket.destroyed) return;
      this.events.safeEmit('publish', this.#toPublishRequest(session));
    });
  };

  #toPublishRequest(session: NmsRtmpSession): PublishRequest {
    const closeListeners: (() => void)[] = [];
    let closed = session.socket.destroyed;
    // The socket's 'close' is immediate, while node-media-server's donePublish waits out a 30 s
    // grace period for reconnects; the stream must end when the publisher goes.
    session.socket.once('close', () => {
      closed = true;
      for (const listener of closeListeners.splice(0)) listener();
    });
    const broadcast = nmsContext.broadcasts.get(session.streamPath);
    return {
      id: session.id,
      ip: session.ip,
      app: session.streamApp,
      streamKey: session.streamName,
      videoInfo: () => ({
        width: session.videoWidth,
        height: session.videoHeight,
        fps: session.videoFramerate,
        bitrateKbps: session.videoDatarate,
      }),
      accept: () => this.#allowStream.get(session)?.(true),
      subscribe: (sink) => {
        if (!broadcast) throw new Error('the stream has no broadcast to subscribe to');
        // An internal subscriber: node-media-server skips play events and counters for an
        // empty ip, and sends it the stream as FLV.
        const subscriber = { id: randomUUID(), ip: '', protocol: 'flv', sendBuffer: sink };
        broadcast.postPlay(subscriber);
        return () => broadcast.donePlay(subscriber);
      },
      close: () => closeGently(session.socket),
      onClosed: (listener) => {
        if (closed) listener();
        else closeListeners.push(listener);
      },
    };
  }
}

function closeGently(socket: net.Socket): void {
  socket.end();
  setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
}

function registerRtmpMetrics(registry: Registry, admission: ConnectionAdmission): RtmpMetrics {
  const registers = [registry];
  new Gauge({
    name: 'ingest_rtmp_connections',
    help: 'RTMP connections open',
    registers,
    collect() {
      this.set(admission.open);
    },
  });
  return {
    refusedConnections: new Counter({
      name: 'ingest_rtmp_refused_connections_total',
      help: 'RTMP connections refused at accept, by the limit that refused them',
      labelNames: ['reason'],
      registers,
    }),
    closedSessions: new Counter({
      name: 'ingest_rtmp_closed_sessions_total',
      help: 'RTMP connections the server closed for a broken limit, a timeout or a protocol error',
      labelNames: ['reason'],
      registers,
    }),
  };
}

function redactError(error: unknown): { name: string; message: string } {
  const name = error instanceof Error ? error.name : 'Error';
  const message = error instanceof Error ? error.message : String(error);
  return { name, message: redactStreamNames(message).slice(0, LOGGED_MESSAGE_CHARS) };
}

function errorCode(error: Error): string | undefined {
  return (error as NodeJS.ErrnoException).code;
}

function routeNmsLogs(logger: Logger): void {
  const levels: Record<string, 'debug' | 'info' | 'warn' | 'error'> = {
    trace: 'debug',
    debug: 'debug',
    info: 'debug',
    warn: 'warn',
    error: 'error',
  };
  // node-media-server writes every line with console.log, forces debug level, and names streams
  // by their path, which holds the stream key; its lines go to the structured logger redacted,
  // its chatty info lines at debug.
  nmsLogger.log = (message: string, level = 'info') => {
    logger[levels[level] ?? 'info']({ nms: true }, redactStreamNames(String(message)));
  };
}

async function listen(server: net.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) =>
      reject(
        new Error(
          error.code === 'EADDRINUSE'
            ? `RTMP port ${host}:${port} is already in use`
            : `cannot listen on RTMP port ${host}:${port}: ${error.message}`,
        ),
      );
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}
