import { parseScalabilityMode, type types } from 'mediasoup';
import {
  BRIDGE_SRTP_SUITE,
  bridgeAnswerSchema,
  bridgeOfferSchema,
  describeZodError,
  shareCaptureSchema,
  type BridgeAnswer,
  type BridgeOffer,
  type BridgeStreamRole,
} from '@hearth/protocol';
import { AppError, TypedEmitter, type Logger } from '@hearth/server-common';

/** Why a share bridge closed. */
export type ShareBridgeCloseReason =
  'closed' | 'producer-closed' | 'router-closed' | 'connect-failed';

/** Events of a ShareBridge. */
export type ShareBridgeEvents = {
  /** The bridge closed, and its transports with it; emitted once. */
  closed: [reason: ShareBridgeCloseReason];
};

/** What one stream of a bridge has sent, from its consumer's outbound RTP stream. */
export interface BridgeStreamStats {
  /** Which part of the share the stream carries. */
  role: BridgeStreamRole;
  /** RTP packets sent, retransmissions included. */
  packetsSent: number;
  /** RTP bytes sent. */
  bytesSent: number;
  /** Packets the ingest node reported lost for good in its receiver reports. */
  packetsLost: number;
  /** NACK packets received from the ingest node. */
  nackCount: number;
  /** PLI packets received from the ingest node. */
  pliCount: number;
  /** FIR packets received from the ingest node. */
  firCount: number;
}

interface BridgedStream {
  readonly role: BridgeStreamRole;
  readonly transport: types.PlainTransport;
  readonly consumer: types.Consumer;
}

// The codec each role carries: the router's own, so payload types match its RTP capabilities.
const MIME_TYPES: Record<BridgeStreamRole, string> = {
  video: 'video/VP8',
  audio: 'audio/opus',
  microphone: 'audio/opus',
};

// The feedback a receiver may send back: NACKs, and key frame requests for video. No
// transport-cc or REMB: nothing estimates bandwidth on that side, and without them mediasoup
// sends each consumer's preferred layer instead of what an estimate would allow.
const FEEDBACK: Record<BridgeStreamRole, types.RtcpFeedback[]> = {
  video: [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }, { type: 'ccm', parameter: 'fir' }],
  audio: [{ type: 'nack' }],
  microphone: [{ type: 'nack' }],
};

/**
 * Sends a screen share, its video and optionally one audio stream, as plain RTP to an ingest
 * node, whose receiver passes it on to ffmpeg. Each stream has a PlainTransport of its own
 * (RTP on one port, RTCP on the next, as ffmpeg opens them per media line), and the video is
 * pinned to the share's top layer. Consumers start paused and resume once `connect` says where
 * the ingest node receives.
 */
export class ShareBridge {
  /** What the bridge sends, stream by stream, video first: what the ingest node's SDP says. */
  readonly offer: BridgeOffer;
  /** Lifecycle events. */
  readonly events: TypedEmitter<ShareBridgeEvents>;
  readonly #streams: readonly BridgedStream[];
  readonly #logger: Logger;
  #connecting = false;
  #closed = false;

  private constructor(streams: BridgedStream[], offer: BridgeOffer, logger: Logger) {
    this.#streams = streams;
    this.offer = offer;
    this.#logger = logger;
    this.events = new TypedEmitter((error, event) =>
      logger.error({ err: error, event }, 'share bridge listener failed'),
    );
    for (const { role, transport, consumer } of streams) {
      transport.on('routerclose', () => this.#close('router-closed'));
      if (role === 'video') {
        consumer.on('producerclose', () => this.#close('producer-closed'));
        continue;
      }
      // An audio stream ending (the microphone or the tab's audio turned off) leaves the share
      // on: the ingest node fills that stream with silence.
      consumer.on('producerclose', () => {
        transport.close();
        this.#logger.info({ role }, 'an audio stream of the bridge ended');
      });
    }
  }

  /**
   * Opens a bridge of a share on the router holding its producers: `video` is the share's VP8
   * producer, `audio` the share's Opus audio and `microphone` the sharer's, each sent along
   * when given (the ingest node mixes them). With `srtp`, each stream is encrypted with a key of
   * its own, which the offer carries.
   */
  static async open(options: {
    router: types.Router;
    video: types.Producer;
    audio?: types.Producer;
    microphone?: types.Producer;
    listenIp: string;
    srtp: boolean;
    logger: Logger;
  }): Promise<ShareBridge> {
    const { router, video } = options;
    const audioStreams = (['audio', 'microphone'] as const).flatMap((role) => {
      const producer = options[role];
      return producer ? [{ role, producer }] : [];
    });
    const streams: BridgedStream[] = [];
    let offer: BridgeOffer;
    try {
      streams.push(await openStream(router, 'video', video, options));
      for (const { role, producer } of audioStreams) {
        streams.push(await openStream(router, role, producer, options));
      }
      offer = bridgeOfferSchema.parse({
        capture: shareCaptureSchema.safeParse(video.appData.capture).data,
        streams: streams.map(describeStream),
      });
    } catch (error) {
      for (const { transport } of streams) transport.close();
      if (video.closed || audioStreams.some(({ producer }) => producer.closed)) {
        throw new AppError('not_found', 'the share ended while its bridge opened');
      }
      throw error;
    }
    const bridge = new ShareBridge(streams, offer, options.logger);
    // A producer or the router may have closed before the bridge listened to them.
    if (streams.some(({ transport, consumer }) => transport.closed || consumer.closed)) {
      bridge.close();
      throw new AppError('not_found', 'the share ended while its bridge opened');
    }
    return bridge;
  }

  /** True once the bridge closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Sends to where the ingest node receives, stream i to `answer.ports[i]` (its RTCP to the
   * next port), then starts the media with a key frame. A bridge connects once; if connecting
   * fails, it closes.
   */
  async connect(answer: BridgeAnswer): Promise<void> {
    const parsed = bridgeAnswerSchema.safeParse(answer);
    if (!parsed.success) {
      throw new AppError('bad_request', `invalid bridge answer: ${describeZodError(parsed.error)}`);
    }
    const { ip, ports } = parsed.data;
    if (ports.length !== this.#streams.length) {
      throw new AppError(
        'bad_request',
        `the answer has ${ports.length} ports for ${this.#streams.length} streams`,
      );
    }
    this.#assertOpen();
    if (this.#connecting) throw new AppError('conflict', 'the bridge is connected already');
    this.#connecting = true;
    try {
      await Promise.all(
        this.#streams.map(({ transport }, index) => {
          const port = ports[index]!;
          return transport.connect({
            ip,
            port,
            rtcpPort: port + 1,
            // The ingest node's receiver holds one key per stream, the one the offer gave it, so it
            // also protects the RTCP it sends back.
            srtpParameters: transport.srtpParameters,
          });
        }),
      );
      this.#assertOpen();
      await Promise.all(this.#streams.map(({ consumer }) => consumer.resume()));
      await this.requestKeyFrame();
    } catch (error) {
      this.#close('connect-failed');
      throw error;
    }
    this.#logger.info({ ip, ports }, 'share bridge connected');
  }

  /** Asks the sharer for a key frame of the video layer the bridge sends. */
  async requestKeyFrame(): Promise<void> {
    this.#assertOpen();
    await this.#streams[0]!.consumer.requestKeyFrame();
  }

  /**
   * The highest simulcast layer of a share the bridge wants, -1 if it does not carry it, so the
   * layer the bridge sends is never switched off at the sharer for lack of viewers.
   */
  wantedLayerOf(producerId: string): number {
    const { consumer } = this.#streams[0]!;
    if (this.#closed || consumer.producerId !== producerId) return -1;
    return consumer.preferredLayers?.spatialLayer ?? 0;
  }

  /** What each stream still open has sent so far, and the feedback it received, video first. */
  async stats(): Promise<BridgeStreamStats[]> {
    this.#assertOpen();
    return Promise.all(
      this.#streams
        .filter(({ consumer }) => !consumer.closed)
        .map(async ({ role, consumer }) => {
          const outbound = (await consumer.getStats()).find(isOutboundStat);
          return {
            role,
            packetsSent: outbound?.packetCount ?? 0,
            bytesSent: outbound?.byteCount ?? 0,
            packetsLost: outbound?.packetsLost ?? 0,
            nackCount: outbound?.nackCount ?? 0,
            pliCount: outbound?.pliCount ?? 0,
            firCount: outbound?.firCount ?? 0,
          };
        }),
    );
  }

  /** Closes the bridge and its transports; closing it again does nothing. */
  close(): void {
    this.#close('closed');
  }

  #close(reason: ShareBridgeCloseReason): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const { transport } of this.#streams) transport.close();
    this.#logger.info({ reason }, 'share bridge closed');
    this.events.safeEmit('closed', reason);
  }

  #assertOpen(): void {
    if (this.#closed) throw new AppError('unavailable', 'the bridge closed');
  }
}

// Opens one stream of a bridge: its transport, and a paused consumer of the producer that
// offers only the role's codec, with the feedback the ingest node's receiver sends and no header extensions.
async function openStream(
  router: types.Router,
  role: BridgeStreamRole,
  producer: types.Producer,
  options: { listenIp: string; srtp: boolean },
): Promise<BridgedStream> {
  const transport = await router.createPlainTransport({
    listenIp: options.listenIp,
    rtcpMux: false,
    comedia: false,
    enableSrtp: options.srtp,
    srtpCryptoSuite: options.srtp ? BRIDGE_SRTP_SUITE : undefined,
  });
  try {
    const codec = router.rtpCapabilities.codecs?.find(
      (candidate) => candidate.mimeType.toLowerCase() === MIME_TYPES[role].toLowerCase(),
    );
    if (!codec) throw new Error(`the router offers no ${MIME_TYPES[role]}`);
    const consumer = await transport.consume({
      producerId: producer.id,
      rtpCapabilities: {
        codecs: [{ ...codec, rtcpFeedback: FEEDBACK[role] }],
        headerExtensions: [],
      },
      paused: true,
    });
    if (consumer.type !== 'simple') {
      // Without bandwidth estimation mediasoup forwards the preferred layers as they are.
      const encodings = producer.rtpParameters.encodings ?? [];
      const { temporalLayers } = parseScalabilityMode(encodings.at(-1)?.scalabilityMode);
      await consumer.setPreferredLayers({
        spatialLayer: encodings.length - 1,
        temporalLayer: temporalLayers - 1,
      });
    }
    return { role, transport, consumer };
  } catch (error) {
    transport.close();
    throw error;
  }
}

// One stream of the offer, from what its consumer sends.
function describeStream({ role, transport, consumer }: BridgedStream): unknown {
  const codec = consumer.rtpParameters.codecs[0]!;
  return {
    role,
    mimeType: codec.mimeType,
    payloadType: codec.payloadType,
    clockRate: codec.clockRate,
    channels: codec.channels,
    ssrc: consumer.rtpParameters.encodings?.[0]?.ssrc,
    rtcpPort: transport.rtcpTuple?.localPort,
    srtpKeyBase64: transport.srtpParameters?.keyBase64,
  };
}

function isOutboundStat(stat: types.ConsumerStat | types.ProducerStat): stat is types.ConsumerStat {
  return stat.type === 'outbound-rtp';
}
