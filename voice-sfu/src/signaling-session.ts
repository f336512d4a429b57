import { types as mediasoupTypes, type types } from 'mediasoup';
import type { WebSocket, RawData } from 'ws';
import {
  MAX_SIGNALING_MESSAGE_BYTES,
  describeZodError,
  isVoiceMethod,
  requestEnvelopeSchema,
  voiceRequestSchemas,
  type ErrorInfo,
  type VoiceMethod,
  type VoiceNotificationData,
  type VoiceNotificationMethod,
  type VoiceRequestData,
  type VoiceResponseData,
} from '@hearth/protocol';
import { AppError, TokenBucket, type Identity, type Logger } from '@hearth/server-common';
import type { Channel } from './channel';
import type { ChannelManager } from './channel-manager';
import type { VoiceConfig } from './config';
import type { VoiceMetrics } from './metrics';
import type { Peer } from './peer';

/** Resolves the identity a connection has in one channel, or throws an AppError to refuse. */
export type AuthorizeJoin = (channel: string, identity: Identity) => Promise<Identity>;

/** What a signaling session needs from its node. */
export interface SignalingContext {
  /** Live channels of the node. */
  readonly channels: ChannelManager;
  /** RTP capabilities of every router on the node. */
  readonly routerRtpCapabilities: types.RtpCapabilities;
  /** Node settings (rate limits). */
  readonly config: VoiceConfig;
  /** Node metrics. */
  readonly metrics: VoiceMetrics;
  /** Node logger. */
  readonly logger: Logger;
}

type Handlers = {
  [M in VoiceMethod]: (data: VoiceRequestData<M>) => Promise<VoiceResponseData<M>>;
};

// After this many refused messages in a row the connection is closed: a client that keeps
// flooding after being told to slow down is broken or hostile.
const MAX_CONSECUTIVE_REFUSALS = 200;
// Audio level updates are dropped while this much is queued on a slow socket; they are
// superseded a quarter of a second later anyway.
const LOSSY_BUFFER_LIMIT_BYTES = 256 * 1024;
const LOSSY_NOTIFICATIONS = new Set<VoiceNotificationMethod>(['audioLevels']);
// Clients report their statistics every few seconds; more than one a second is refused.
const MIN_REPORT_INTERVAL_MS = 1000;

/**
 * One client's WebSocket signaling: validates every message against the protocol, enforces a
 * rate limit, and drives the peer in its channel. A bad message gets an error response and never
 * affects another client.
 */
export class SignalingSession {
  readonly #socket: WebSocket;
  readonly #identity: Identity;
  readonly #authorizeJoin: AuthorizeJoin;
  readonly #context: SignalingContext;
  readonly #logger: Logger;
  readonly #bucket: TokenBucket;
  readonly #handlers: Handlers;
  #refusals = 0;
  #joining = false;
  #joined: { channel: Channel; peer: Peer } | undefined;
  #joinedAt = 0;
  #lastReportAt = -Infinity;
  // While a join is answered, notifications to the new peer wait here: a client must see the
  // join response (with the roster) before any change to that roster, or it would drop the change.
  #heldNotifications: object[] | undefined;
  #forgetOnClose: (() => void) | undefined;

  constructor(options: {
    socket: WebSocket;
    identity: Identity;
    authorizeJoin: AuthorizeJoin;
    context: SignalingContext;
  }) {
    this.#socket = options.socket;
    this.#identity = options.identity;
    this.#authorizeJoin = options.authorizeJoin;
    this.#context = options.context;
    this.#logger = options.context.logger.child({ user: options.identity.userId });
    this.#bucket = new TokenBucket(
      options.context.config.signalingRatePerSecond,
      options.context.config.signalingBurst,
    );
    this.#handlers = this.#createHandlers();
    this.#socket.on('message', (raw, isBinary) => void this.#onMessage(raw, isBinary));
    this.#socket.on('close', () => this.#leave());
    this.#socket.on('error', (error) =>
      this.#logger.warn({ err: error }, 'signaling socket error'),
    );
  }

  /** The peer id while joined. */
  get peerId(): string | undefined {
    return this.#joined?.peer.id;
  }

  async #onMessage(raw: RawData, isBinary: boolean): Promise<void> {
    // Every frame takes a token, garbage included, but the answer waits until the frame is read
    // so that a refused request still gets a response carrying its id.
    const allowed = this.#bucket.take();
    const frame = readFrame(raw, isBinary);
    const envelope = frame.ok ? requestEnvelopeSchema.safeParse(frame.json) : undefined;
    const id = envelope?.success ? envelope.data.id : frame.ok ? usableId(frame.json) : null;
    if (!allowed) {
      this.#refuse(id, { code: 'rate_limited', message: 'too many messages; slow down' });
      if (++this.#refusals >= MAX_CONSECUTIVE_REFUSALS) this.#socket.close(1008, 'rate limit');
      return;
    }
    this.#refusals = 0;
    if (!frame.ok) {
      this.#refuse(null, { code: 'bad_request', message: frame.error });
      return;
    }
    if (!envelope?.success) {
      const problem = envelope ? describeZodError(envelope.error) : 'unreadable';
      this.#refuse(id, { code: 'bad_request', message: `invalid request envelope: ${problem}` });
      return;
    }
    const { id: requestId, method, data } = envelope.data;
    if (!isVoiceMethod(method)) {
      this.#refuse(requestId, { code: 'unknown_method', message: `unknown method "${method}"` });
      return;
    }
    const parsed = voiceRequestSchemas[method].request.safeParse(data ?? {});
    if (!parsed.success) {
      this.#refuse(requestId, {
        code: 'bad_request',
        message: `invalid ${method} data: ${describeZodError(parsed.error)}`,
      });
      return;
    }
    if (method === 'join') this.#heldNotifications ??= [];
    try {
      const handler = this.#handlers[method] as (input: unknown) => Promise<unknown>;
      const result = await handler(parsed.data);
      this.#send({ kind: 'response', id: requestId, ok: true, data: result });
    } catch (error) {
      const info = this.#toErrorInfo(error, method);
      if (method === 'join') this.#context.metrics.joinErrors.inc({ code: info.code });
      this.#refuse(requestId, info);
    } finally {
      if (method === 'join') this.#releaseNotifications();
    }
  }

  #createHandlers(): Handlers {
    return {
      getRouterRtpCapabilities: async () => ({
        rtpCapabilities: this.#context.routerRtpCapabilities,
      }),
      join: async ({ channel, rtpCapabilities }) => {
        if (this.#joined || this.#joining) {
          throw new AppError('already_joined', 'leave the current channel first');
        }
        this.#joining = true;
        try {
          const identity = await this.#authorizeJoin(channel, this.#identity);
          if (this.#socket.readyState !== this.#socket.OPEN) {
            throw new AppError('unavailable', 'connection closed while joining');
          }
          const joined = await this.#context.channels.join(
            channel,
            identity,
            rtpCapabilities as types.RtpCapabilities,
            {
              notify: (method, data) => this.#notify(method, data),
              disconnect: (code, reason) => this.#socket.close(code, reason.slice(0, 120)),
            },
          );
          this.#joined = joined;
          this.#joinedAt = performance.now();
          this.#context.metrics.joins.inc();
          this.#forgetOnClose = () => {
            if (this.#joined !== joined) return;
            this.#joined = undefined;
            this.#sessionEnded();
          };
          joined.channel.events.once('closed', this.#forgetOnClose);
          if (this.#socket.readyState !== this.#socket.OPEN) {
            this.#leave();
            throw new AppError('unavailable', 'connection closed while joining');
          }
          return {
            peerId: joined.peer.id,
            participants: joined.channel.participants(),
            activeSpeakerId: joined.channel.activeSpeakerId,
            spectator: joined.peer.spectator,
            maxSharePreset: identity.maxSharePreset ?? 'source',
          };
        } finally {
          this.#joining = false;
        }
      },
      createTransport: async ({ direction }) => {
        const { channel, peer } = this.#requireJoined();
        return channel.createWebRtcTransport(peer.id, direction);
      },
      connectTransport: async ({ transportId, dtlsParameters }) => {
        const { channel, peer } = this.#requireJoined();
        await channel.connectTransport(
          peer.id,
          transportId,
          dtlsParameters as types.DtlsParameters,
        );
        return {};
      },
      restartIce: async ({ transportId }) => {
        const { channel, peer } = this.#requireJoined();
        return { iceParameters: await channel.restartIce(peer.id, transportId) };
      },
      produce: async ({ transportId, kind, rtpParameters, paused, source, capture }) => {
        const { channel, peer } = this.#requireJoined();
        const producer = await channel.produce(peer.id, {
          transportId,
          kind,
          rtpParameters,
          paused,
          source,
          capture,
        });
        return { producerId: producer.id };
      },
      closeProducer: async ({ producerId }) => {
        const { channel, peer } = this.#requireJoined();
        channel.closeProducer(peer.id, producerId);
        return {};
      },
      setProducerPaused: async ({ producerId, paused }) => {
        const { channel, peer } = this.#requireJoined();
        await channel.setProducerPaused(peer.id, producerId, paused);
        return {};
      },
      resumeConsumer: async ({ consumerId }) => {
        const { channel, peer } = this.#requireJoined();
        await channel.resumeConsumer(peer.id, consumerId);
        return {};
      },
      setConsumerPaused: async ({ consumerId, paused }) => {
        const { channel, peer } = this.#requireJoined();
        await channel.setConsumerPaused(peer.id, consumerId, paused);
        return {};
      },
      setConsumerPreferredLayers: async ({ consumerId, spatialLayer, temporalLayer }) => {
        const { channel, peer } = this.#requireJoined();
        await channel.setConsumerPreferredLayers(peer.id, consumerId, {
          spatialLayer,
          ...(temporalLayer === undefined ? {} : { temporalLayer }),
        });
        return {};
      },
      setDeafened: async ({ deafened }) => {
        const { channel, peer } = this.#requireJoined();
        await channel.setDeafened(peer.id, deafened);
        return {};
      },
      stopShare: async ({ peerId }) => {
        const { channel, peer } = this.#requireJoined();
        channel.stopShare(peer.id, peerId);
        return {};
      },
      setServerMuted: async ({ peerId, muted }) => {
        const { channel, peer } = this.#requireJoined();
        await channel.setServerMuted(peer.id, peerId, muted);
        return {};
      },
      reportStats: async (stats) => {
        const { channel, peer } = this.#requireJoined();
        const now = performance.now();
        if (now - this.#lastReportAt < MIN_REPORT_INTERVAL_MS) {
          throw new AppError('rate_limited', 'one statistics report a second at most');
        }
        this.#lastReportAt = now;
        const figures = await channel.reportStats(peer.id, stats);
        if (figures) this.#context.metrics.observeLink(figures);
        return {};
      },
      leave: async () => {
        this.#requireJoined();
        this.#leave();
        return {};
      },
    };
  }

  #requireJoined(): { channel: Channel; peer: Peer } {
    if (!this.#joined || this.#joined.peer.closed) {
      throw new AppError('not_joined', 'join a channel first');
    }
    return this.#joined;
  }

  #leave(): void {
    const joined = this.#joined;
    this.#joined = undefined;
    if (!joined) return;
    this.#sessionEnded();
    // The channel outlives this peer, so the peer's listener must not stay behind on it.
    if (this.#forgetOnClose) joined.channel.events.off('closed', this.#forgetOnClose);
    this.#forgetOnClose = undefined;
    joined.channel.leave(joined.peer.id);
  }

  #sessionEnded(): void {
    this.#context.metrics.sessionSeconds.observe((performance.now() - this.#joinedAt) / 1000);
  }

  #notify<M extends VoiceNotificationMethod>(method: M, data: VoiceNotificationData<M>): void {
    if (LOSSY_NOTIFICATIONS.has(method) && this.#socket.bufferedAmount > LOSSY_BUFFER_LIMIT_BYTES) {
      return;
    }
    const notification = { kind: 'notification', method, data };
    if (this.#heldNotifications) this.#heldNotifications.push(notification);
    else this.#send(notification);
  }

  // A refused join sends nothing held: the notifications belonged to a peer that is gone.
  #releaseNotifications(): void {
    const held = this.#heldNotifications ?? [];
    this.#heldNotifications = undefined;
    if (this.#joined) for (const notification of held) this.#send(notification);
  }

  // Every refusal counts in voice_errors_total: a frame that fails its schema as much as a
  // request a handler refused.
  #refuse(id: number | null, error: ErrorInfo): void {
    this.#context.metrics.errors.inc({ code: error.code });
    this.#send({ kind: 'response', id, ok: false, error });
  }

  #send(message: object): void {
    if (this.#socket.readyState === this.#socket.OPEN) this.#socket.send(JSON.stringify(message));
  }

  // Errors are mapped by class, never by message text. Unknown ones are logged in full and the
  // client only learns that something failed.
  #toErrorInfo(error: unknown, method: VoiceMethod): ErrorInfo {
    if (error instanceof AppError) return { code: error.code, message: error.message };
    if (error instanceof TypeError || error instanceof mediasoupTypes.UnsupportedError) {
      return { code: 'bad_request', message: `${method} refused: ${error.message}` };
    }
    if (error instanceof mediasoupTypes.InvalidStateError) {
      return { code: 'conflict', message: `${method} refused: ${error.message}` };
    }
    this.#logger.error({ err: error, method, peer: this.peerId }, 'signaling request failed');
    return { code: 'internal', message: `${method} failed` };
  }
}

function usableId(json: unknown): number | null {
  const id = (json as { id?: unknown } | null)?.id;
  return typeof id === 'number' && Number.isSafeInteger(id) && id >= 0 ? id : null;
}

type Frame = { ok: true; json: unknown } | { ok: false; error: string };

function readFrame(raw: RawData, isBinary: boolean): Frame {
  const text = isBinary ? null : rawToString(raw);
  if (text === null || Buffer.byteLength(text) > MAX_SIGNALING_MESSAGE_BYTES) {
    return { ok: false, error: 'messages must be JSON text up to 64 KiB' };
  }
  try {
    return { ok: true, json: JSON.parse(text) };
  } catch {
    return { ok: false, error: 'message is not valid JSON' };
  }
}

function rawToString(raw: RawData): string {
  if (Array.isArray(raw)) return Buffer.concat(raw).toString('utf8');
  if (raw instanceof ArrayBuffer) return Buffer.from(raw).toString('utf8');
  return raw.toString('utf8');
}
