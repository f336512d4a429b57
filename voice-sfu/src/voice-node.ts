import type { types } from 'mediasoup';
import type { WebSocket } from 'ws';
import { Registry } from 'prom-client';
import type { Identity, Logger } from '@hearth/server-common';
import { ChannelManager } from './channel-manager';
import type { VoiceConfig } from './config';
import { routerMediaCodecs } from './media-codecs';
import { registerVoiceMetrics, type VoiceMetrics } from './metrics';
import { SignalingSession, type AuthorizeJoin } from './signaling-session';
import { WorkerPool } from './worker-pool';

/** A running voice-sfu node: workers, channels, metrics, and the signaling entry point. */
export class VoiceNode {
  /** The node's mediasoup workers. */
  readonly pool: WorkerPool;
  /** The node's live channels. */
  readonly channels: ChannelManager;
  /** Prometheus registry holding the node's metrics. */
  readonly registry: Registry;
  /** The node's metrics. */
  readonly metrics: VoiceMetrics;
  /** RTP capabilities shared by every router of the node. */
  readonly routerRtpCapabilities: types.RtpCapabilities;
  readonly #config: VoiceConfig;
  readonly #logger: Logger;
  readonly #sessions = new Set<SignalingSession>();

  private constructor(options: {
    config: VoiceConfig;
    logger: Logger;
    pool: WorkerPool;
    routerRtpCapabilities: types.RtpCapabilities;
    registry: Registry;
  }) {
    this.#config = options.config;
    this.#logger = options.logger;
    this.pool = options.pool;
    this.routerRtpCapabilities = options.routerRtpCapabilities;
    this.channels = new ChannelManager(this.pool, this.#config, this.#logger);
    this.registry = options.registry;
    this.metrics = registerVoiceMetrics(this.registry, this.pool, this.channels);
  }

  /** Starts the workers and returns a node ready to accept connections. */
  static async start(
    config: VoiceConfig,
    logger: Logger,
    registry: Registry = new Registry(),
  ): Promise<VoiceNode> {
    const pool = await WorkerPool.create(config, logger);
    try {
      // Every router gets the same codecs, so one short-lived router tells the capabilities
      // clients need before any channel exists.
      const probe = await pool.slot(0).worker.createRouter({ mediaCodecs: routerMediaCodecs });
      const routerRtpCapabilities = probe.rtpCapabilities;
      probe.close();
      return new VoiceNode({ config, logger, pool, routerRtpCapabilities, registry });
    } catch (error) {
      pool.close();
      throw error;
    }
  }

  /** Number of open signaling sessions. */
  get sessionCount(): number {
    return this.#sessions.size;
  }

  /** Takes over an authenticated WebSocket and serves the signaling protocol on it. */
  accept(socket: WebSocket, identity: Identity, authorizeJoin: AuthorizeJoin): SignalingSession {
    const session = new SignalingSession({ socket, identity, authorizeJoin, context: this });
    this.#sessions.add(session);
    socket.once('close', () => this.#sessions.delete(session));
    return session;
  }

  /** Node settings. */
  get config(): VoiceConfig {
    return this.#config;
  }

  /** Node logger. */
  get logger(): Logger {
    return this.#logger;
  }

  /** Closes every channel and worker. */
  close(): void {
    this.channels.closeAll();
    this.pool.close();
  }
}
