import { randomUUID } from 'node:crypto';
import type { ApiToNodeMessage, NodeLimits, NodeToApiMessage } from '@hearth/protocol';
import { AppError, type ControlPeer, type Logger } from '@hearth/server-common';
import type { IngestControlPlane, PublishGrant, StreamReport } from './control-plane';
import type { IngestNode } from './ingest-node';

/** Sends a message to the api over whatever connects the node to it. */
export type IngestControlSend = (message: NodeToApiMessage) => void;

// A publisher waits at most this long for the api to answer before it is refused.
const DEFAULT_AUTHORIZE_TIMEOUT_MS = 5000;

interface PendingAuthorization {
  resolve(grant: PublishGrant): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

/**
 * An ingest node's link to the control plane: it registers the node, reports its load every
 * heartbeat, replays its streams after each register, asks the api whether publishers may
 * publish, reports what their streams do, and passes key revocations on to the node. While the
 * api is unreachable new publishers are refused (`unavailable`); running streams go on, and the
 * replay after reconnecting tells the api what they became.
 */
export class IngestAgent implements IngestControlPlane, ControlPeer {
  /** The node id the api knows this node by. */
  readonly nodeId: string;
  readonly #rtmpUrl: string;
  #originUrl: string | undefined;
  readonly #limits: NodeLimits;
  readonly #heartbeatMs: number;
  readonly #authorizeTimeoutMs: number;
  readonly #logger: Logger;
  readonly #pending = new Map<string, PendingAuthorization>();
  readonly #revocationListeners = new Set<(keyId: string) => void>();
  // The stream each running bridge feeds, by bridge id.
  readonly #bridges = new Map<string, string>();
  #node: IngestNode | undefined;
  #send: IngestControlSend | undefined;
  #heartbeat: NodeJS.Timeout | undefined;

  constructor(options: {
    nodeId: string;
    /** rtmp/rtmps URL streamers push to. */
    rtmpUrl: string;
    limits: NodeLimits;
    heartbeatMs: number;
    logger: Logger;
    authorizeTimeoutMs?: number;
  }) {
    this.nodeId = options.nodeId;
    this.#rtmpUrl = options.rtmpUrl;
    this.#limits = options.limits;
    this.#heartbeatMs = options.heartbeatMs;
    this.#authorizeTimeoutMs = options.authorizeTimeoutMs ?? DEFAULT_AUTHORIZE_TIMEOUT_MS;
    this.#logger = options.logger.child({ component: 'ingest-agent' });
  }

  /** Where the CDN edge reaches this node's LL-HLS origin; sent with every registration. */
  advertiseOrigin(url: string): void {
    this.#originUrl = url;
  }

  /** The node whose load and streams the agent reports; set once it has started. */
  bind(node: IngestNode): void {
    this.#node = node;
    if (this.#send) this.#registerAndReplay(this.#send);
  }

  /** Starts talking to the api over a fresh connection: registers, replays, then heartbeats. */
  attach(send: IngestControlSend): void {
    this.detach();
    this.#send = send;
    if (this.#node) this.#registerAndReplay(send);
    this.#heartbeat = setInterval(() => this.#beat(), this.#heartbeatMs);
  }

  /** Stops sending: the connection to the api is gone, and pending checks are refused. */
  detach(): void {
    clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
    this.#send = undefined;
    for (const [requestId, pending] of this.#pending) {
      this.#pending.delete(requestId);
      clearTimeout(pending.timer);
      pending.reject(new AppError('unavailable', 'the control plane connection was lost'));
    }
  }

  /** Tells the api this node is leaving on purpose, once its streams have ended. */
  deregister(): void {
    this.#send?.({ type: 'deregister' });
  }

  /** Handles one validated message from the api. */
  receive(message: ApiToNodeMessage): void {
    switch (message.type) {
      case 'registered':
        this.#logger.info('registered with the api');
        return;
      case 'registerAgain':
        this.#logger.warn('the api lost this node; registering again');
        if (this.#send) this.#registerAndReplay(this.#send);
        return;
      case 'publishAuthorized':
      case 'publishRefused': {
        const pending = this.#pending.get(message.requestId);
        if (!pending) return;
        this.#pending.delete(message.requestId);
        clearTimeout(pending.timer);
        if (message.type === 'publishAuthorized') pending.resolve(message.grant);
        else pending.reject(new AppError(refusalCode(message.code), message.message));
        return;
      }
      case 'keyRevoked':
        for (const listener of this.#revocationListeners) listener(message.keyId);
        return;
      case 'startBridge':
        void this.#startBridge(message);
        return;
      case 'closeBridge': {
        const streamId = this.#bridges.get(message.bridgeId);
        this.#bridges.delete(message.bridgeId);
        if (streamId !== undefined) void this.#node?.stopBridge(streamId, message.reason);
        return;
      }
      default:
        // Voice placement and cascade messages concern voice nodes only.
        return;
    }
  }

  // Runs the bridge's ffmpeg and tells the api where the voice node must send; a bridge that
  // cannot start is reported closed, with why.
  async #startBridge(message: Extract<ApiToNodeMessage, { type: 'startBridge' }>): Promise<void> {
    const { route } = message;
    try {
      if (!this.#node) throw new AppError('unavailable', 'the ingest node is not started');
      const answer = await this.#node.startBridge({
        grant: route.grant,
        offer: message.offer,
        sourceAddress: message.sourceAddress,
        source: route.source,
      });
      this.#bridges.set(route.bridgeId, route.grant.streamId);
      this.#send?.({ type: 'bridgeAnswer', route, answer });
    } catch (error) {
      this.#logger.error({ err: error, bridge: route.bridgeId }, 'a bridge could not start');
      const reason = error instanceof AppError ? error.message : 'the bridge could not start';
      this.#send?.({ type: 'bridgeClosed', bridgeId: route.bridgeId, reason });
    }
  }

  /** Asks the api whether the key may publish; refuses with `unavailable` when it cannot answer. */
  authorizePublish(streamKey: string, publisher: { ip: string }): Promise<PublishGrant> {
    const send = this.#send;
    if (!send) {
      return Promise.reject(new AppError('unavailable', 'the control plane is not reachable'));
    }
    const requestId = randomUUID();
    return new Promise<PublishGrant>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(requestId);
        reject(new AppError('unavailable', 'the control plane did not answer in time'));
      }, this.#authorizeTimeoutMs);
      this.#pending.set(requestId, { resolve, reject, timer });
      send({ type: 'authorizePublish', requestId, streamKey, ip: publisher.ip });
    });
  }

  /** Reports a stream change; while disconnected it is dropped, and the next replay carries it. */
  report(report: StreamReport): void {
    this.#send?.({ type: 'streamReport', report });
  }

  /** Subscribes to key revocations. */
  onKeyRevoked(listener: (keyId: string) => void): () => void {
    this.#revocationListeners.add(listener);
    return () => this.#revocationListeners.delete(listener);
  }

  /** Stops heartbeats and refuses pending checks. */
  close(): void {
    this.detach();
  }

  #registerAndReplay(send: IngestControlSend): void {
    send({
      type: 'register',
      registration: {
        id: this.nodeId,
        kind: 'ingest',
        rtmpUrl: this.#rtmpUrl,
        originUrl: this.#originUrl,
        limits: this.#limits,
      },
    });
    send({ type: 'streamsReplay', streams: this.#node?.streams() ?? [] });
    this.#beat();
  }

  #beat(): void {
    if (!this.#node || !this.#send) return;
    try {
      this.#send({ type: 'heartbeat', load: this.#node.load() });
    } catch (error) {
      this.#logger.warn({ err: error }, 'load report failed');
    }
  }
}

// Codes the ingest counts refusals by; anything unexpected from the api counts as `forbidden`.
function refusalCode(code: string): 'forbidden' | 'conflict' | 'unavailable' {
  return code === 'conflict' || code === 'unavailable' ? code : 'forbidden';
}
