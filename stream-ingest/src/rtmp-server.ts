import { randomBytes } from 'node:crypto';
import net from 'node:net';
import NodeMediaServer from 'node-media-server';
import nmsContext from 'node-media-server/src/core/context.js';
import nmsLogger from 'node-media-server/src/core/logger.js';
import { TypedEmitter, type Logger } from '@hearth/server-common';

/** The part of a node-media-server session the ingest uses. */
interface NmsSession {
  id: string;
  ip: string;
  streamApp: string;
  streamName: string;
  streamQuery: Record<string, string | undefined>;
  videoWidth: number;
  videoHeight: number;
  videoFramerate: number;
  videoDatarate: number;
  socket?: net.Socket;
  broadcast?: { publisher: unknown };
  close(): void;
}

/** A publisher that connected and asked to publish; the ingest decides whether it may. */
export interface PublishRequest {
  /** Session id. */
  readonly id: string;
  /** Publisher address. */
  readonly ip: string;
  /** RTMP application, `live` for OBS's server URL `rtmp://<host>:1935/live`. */
  readonly app: string;
  /** Stream name: the stream key OBS sends. */
  readonly streamKey: string;
  /** Video size and rate the publisher announced; zeros until its metadata arrives. */
  videoInfo(): { width: number; height: number; fps: number; bitrateKbps: number };
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

/** Where the RTMP server listens. */
export interface RtmpServerOptions {
  /** Address to bind; loopback by default. */
  host: string;
  /** Plain RTMP port; 0 picks a free one. */
  port: number;
  /** RTMPS listener, when a certificate is configured. */
  rtmps?: { port: number; certPath: string; keyPath: string };
  /** Logger for the server and node-media-server's own messages. */
  logger: Logger;
}

/**
 * RTMP ingest on node-media-server v4. node-media-server keeps its state in one module, so a
 * process runs one RtmpServer at a time. It only listens for RTMP(S): node-media-server's HTTP
 * server, stream history store, relays and recorder are never started, so a refused publisher
 * leaves nothing written anywhere. Players other than the ingest's own ffmpeg are refused.
 */
export class RtmpServer {
  /** Publish events. */
  readonly events: TypedEmitter<RtmpServerEvents>;
  /** Plain RTMP port in use. */
  readonly port: number;
  /** RTMPS port in use, when enabled. */
  readonly rtmpsPort: number | undefined;
  readonly #host: string;
  readonly #nms: NodeMediaServer;
  readonly #logger: Logger;
  // Only the ingest's own ffmpeg may play streams back; it proves it with this token.
  readonly #playToken = randomBytes(16).toString('hex');

  private constructor(options: RtmpServerOptions, port: number, nms: NodeMediaServer) {
    this.#host = options.host;
    this.port = port;
    this.rtmpsPort = options.rtmps?.port;
    this.#nms = nms;
    this.#logger = options.logger.child({ component: 'rtmp' });
    this.events = new TypedEmitter((error, event) =>
      this.#logger.error({ err: error, event }, 'rtmp listener failed'),
    );
    nmsContext.eventEmitter.on('prePublish', this.#onPrePublish);
    nmsContext.eventEmitter.on('prePlay', this.#onPrePlay);
  }

  /**
   * Starts listening. Ports are checked first because node-media-server exits the whole process
   * when a port is taken.
   */
  static async start(options: RtmpServerOptions): Promise<RtmpServer> {
    const port = await checkPort(options.host, options.port);
    if (options.rtmps) await checkPort(options.host, options.rtmps.port);
    routeNmsLogs(options.logger.child({ component: 'node-media-server' }));
    const nms = new NodeMediaServer({
      bind: options.host,
      rtmp: { port, chunk_size: 60000, gop_cache: true, ping: 30, ping_timeout: 60 },
      ...(options.rtmps
        ? {
            rtmps: {
              port: options.rtmps.port,
              cert: options.rtmps.certPath,
              key: options.rtmps.keyPath,
            },
          }
        : {}),
    });
    const server = new RtmpServer(options, port, nms);
    const listening = [nms.rtmpServer.tcpServer, nms.rtmpServer.tlsServer].flatMap((listener) =>
      listener ? [new Promise((resolve) => listener.once('listening', resolve))] : [],
    );
    nms.rtmpServer.run();
    await Promise.all(listening);
    return server;
  }

  /** URL the ingest's own ffmpeg pulls a stream from. */
  internalPlayUrl(app: string, streamKey: string): string {
    return `rtmp://${loopbackFor(this.#host)}:${this.port}/${app}/${streamKey}?token=${this.#playToken}`;
  }

  /** Stops listening and disconnects everyone. */
  async stop(): Promise<void> {
    // node-media-server keeps its event emitter in module state shared by every instance, so a
    // stopped server must take its handlers off or it would still act on a later server's sessions.
    nmsContext.eventEmitter.off('prePublish', this.#onPrePublish);
    nmsContext.eventEmitter.off('prePlay', this.#onPrePlay);
    await this.#nms.stop();
  }

  readonly #onPrePublish = (session: NmsSession): void => {
    // node-media-server decides a second publisher on a busy path only after this event, and
    // still emits postPublish for it; looking once its own handling finished tells them apart.
    setImmediate(() => {
      if (session.broadcast?.publisher !== session) {
        this.#logger.warn({ ip: session.ip, app: session.streamApp }, 'second publisher refused');
        this.events.safeEmit('duplicatePublish', { ip: session.ip, app: session.streamApp });
        return;
      }
      this.events.safeEmit('publish', toPublishRequest(session));
    });
  };

  readonly #onPrePlay = (session: NmsSession): void => {
    if (session.streamQuery?.token === this.#playToken) return;
    this.#logger.warn({ ip: session.ip }, 'rtmp playback refused');
    session.close();
  };
}

function toPublishRequest(session: NmsSession): PublishRequest {
  const closeListeners: (() => void)[] = [];
  let closed = session.socket?.destroyed ?? false;
  // The socket's 'close' is immediate, while node-media-server's donePublish waits out a 30 s
  // grace period for reconnects; the stream must end when the publisher goes.
  session.socket?.once('close', () => {
    closed = true;
    for (const listener of closeListeners.splice(0)) listener();
  });
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
    close: () => session.close(),
    onClosed: (listener) => {
      if (closed) listener();
      else closeListeners.push(listener);
    },
  };
}

function routeNmsLogs(logger: Logger): void {
  const levels: Record<string, 'debug' | 'info' | 'warn' | 'error'> = {
    trace: 'debug',
    debug: 'debug',
    info: 'debug',
    warn: 'warn',
    error: 'error',
  };
  // node-media-server writes every line with console.log and forces debug level; its messages
  // go to the structured logger instead, its chatty info lines at debug.
  nmsLogger.log = (message: string, level = 'info') => {
    logger[levels[level] ?? 'info']({ nms: true }, message);
  };
}

async function checkPort(host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        new Error(
          error.code === 'EADDRINUSE'
            ? `RTMP port ${host}:${port} is already in use`
            : `cannot listen on RTMP port ${host}:${port}: ${error.message}`,
        ),
      ),
    );
    probe.listen(port, host, () => {
      const { port: bound } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(bound));
    });
  });
}

function loopbackFor(host: string): string {
  return host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
}
