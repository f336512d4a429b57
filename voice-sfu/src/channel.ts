import { randomUUID } from 'node:crypto';
import type { types } from 'mediasoup';
import type {
  BridgeAnswer,
  BridgeOffer,
  ClientStats,
  MediaSource,
  ParticipantLink,
  ShareCapture,
  Participant,
  RemoteParticipant,
  RtpParameters,
  VoiceNotificationData,
  VoiceNotificationMethod,
} from '@hearth/protocol';
import { AppError, TypedEmitter, type Identity, type Logger } from '@hearth/server-common';
import type { VoiceConfig } from './config';
import type {
  ChannelCloseReason,
  ChannelEvents,
  ChannelLayout,
  RemoteProducerInfo,
  WebRtcTransportInfo,
} from './channel-types';
import { EdgeSet } from './edge';
import { routerMediaCodecs } from './media-codecs';
import { Peer, type PeerSink } from './peer';
import { uplinkOf, type LinkFigures } from './peer-link';
import { ShareBridge } from './share-bridge';
import { ShareDemand } from './share-demand';
import { SpeakerObservers } from './speakers';
import { checkShareBitrate, shareIncomingBitrate, sourceOf } from './sources';
import { RemoteRoster, type RemoteEntry } from './remote-roster';
import type { WorkerPool } from './worker-pool';

// Close code of a connection whose peer a moderator removed.
const CLOSE_REMOVED = 4403;

/**
 * A live voice channel. Producers live on one core router; listeners receive from edge routers
 * on other workers, fed on demand with `pipeToRouter`. An edge admits listeners while their
 * consumers fit in `maxConsumersPerEdge`; then the next edge opens on the least-loaded worker.
 */
export class Channel {
  /** Channel name. */
  readonly name: string;
  /** Lifecycle events; the manager uses them to forget closed channels. */
  readonly events: TypedEmitter<ChannelEvents>;
  readonly #pool: WorkerPool;
  readonly #config: VoiceConfig;
  readonly #logger: Logger;
  readonly #core: types.Router;
  readonly #coreWorkerIndex: number;
  readonly #speakers: SpeakerObservers;
  readonly #peers = new Map<string, Peer>();
  readonly #remote = new RemoteRoster();
  readonly #remoteProducers = new Map<string, types.Producer>();
  readonly #shares: ShareDemand;
  readonly #edges: EdgeSet;
  readonly #bridges = new Map<string, ShareBridge>();
  #holds = 0;
  #closed = false;

  private constructor(options: {
    name: string;
    pool: WorkerPool;
    config: VoiceConfig;
    logger: Logger;
    core: types.Router;
    coreWorkerIndex: number;
    speakers: SpeakerObservers;
  }) {
    this.name = options.name;
    this.#pool = options.pool;
    this.#config = options.config;
    this.#logger = options.logger;
    this.#core = options.core;
    this.#coreWorkerIndex = options.coreWorkerIndex;
    this.#speakers = options.speakers;
    this.#edges = new EdgeSet({
      core: options.core,
      coreWorkerIndex: options.coreWorkerIndex,
      pool: options.pool,
      maxConsumersPerEdge: options.config.maxConsumersPerEdge,
      logger: options.logger,
    });
    this.events = new TypedEmitter((error, event) =>
      this.#logger.error({ err: error, event }, 'channel listener failed'),
    );
    this.#shares = new ShareDemand({
      idleMs: options.config.shareLayerIdleMs,
      localWish: (producerId) => {
        let wish = -1;
        for (const peer of this.#peers.values())
          wish = Math.max(wish, peer.wantedLayerOf(producerId));
        for (const bridge of this.#bridges.values())
          wish = Math.max(wish, bridge.wantedLayerOf(producerId));
        return wish;
      },
      sendWish: (producerId, spatialLayer, linkId) =>
        this.events.safeEmit('shareWish', producerId, spatialLayer, linkId),
    });
  }

  /** Opens a channel: a core router on the least-loaded worker, with its speaker observers. */
  static async open(options: {
    name: string;
    pool: WorkerPool;
    config: VoiceConfig;
    logger: Logger;
  }): Promise<Channel> {
    const slot = options.pool.leastLoaded();
    if (!slot) throw new AppError('unavailable', 'no media worker is running');
    const core = await slot.worker.createRouter({ mediaCodecs: routerMediaCodecs });
    try {
      // Who speaks is news for participants only, not for spectators. The observers exist
      // before the channel they report to.
      const listeners: { channel?: Channel } = {};
      const speakers = await SpeakerObservers.open(
        core,
        options.config.audioLevelIntervalMs,
        (method, data) => {
          if (listeners.channel) listeners.channel.#broadcast(method, data, undefined, 'voice');
        },
      );
      listeners.channel = new Channel({
        ...options,
        logger: options.logger.child({ channel: options.name }),
        core,
        coreWorkerIndex: slot.index,
        speakers,
      });
      return listeners.channel;
    } catch (error) {
      core.close();
      throw error;
    }
  }

  /** True once the channel closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** RTP capabilities every device must load before joining. */
  get rtpCapabilities(): types.RtpCapabilities {
    return this.#core.rtpCapabilities;
  }

  /** Number of peers on this node: participants and spectators. */
  get peerCount(): number {
    return this.#peers.size;
  }

  /** Peer id of the current dominant speaker, if any. */
  get activeSpeakerId(): string | null {
    return this.#speakers.activeSpeakerId;
  }

  /** Public views of every participant, those served by other nodes included. */
  participants(): Participant[] {
    return [
      ...this.localParticipants(),
      ...this.#remote.list().map(({ participant }) => participant),
    ];
  }

  /** Participants served by this node; spectators are in no roster. */
  localParticipants(): Participant[] {
    return [...this.#peers.values()]
      .filter((peer) => !peer.spectator)
      .map((peer) => peer.toParticipant());
  }

  /** Participants served elsewhere, with the link each came over. */
  remoteParticipants(): RemoteEntry[] {
    return this.#remote.list();
  }

  /** Every producer on the core router: local peers' and those piped in from other nodes. */
  producers(): types.Producer[] {
    const local = [...this.#peers.values()].flatMap((peer) => [...peer.producers.values()]);
    return [...local, ...this.#remoteProducers.values()];
  }

  /** Media bitrate through the channel's client transports, sent plus received, in kbit/s. */
  async bitrateKbps(): Promise<number> {
    const transports = [...this.#peers.values()].flatMap((peer) =>
      [peer.sendTransport, peer.recvTransport].filter((t) => t !== undefined && !t.closed),
    );
    const stats = await Promise.all(
      transports.map((transport) => transport!.getStats().catch(() => [])),
    );
    let bitsPerSecond = 0;
    for (const entries of stats) {
      for (const entry of entries) bitsPerSecond += entry.recvBitrate + entry.sendBitrate;
    }
    return bitsPerSecond / 1000;
  }

  /** Keeps the channel open without local peers, while a link to another node needs it. */
  hold(): void {
    this.#holds++;
  }

  /** Ends one `hold`; a channel left with no peers and no holds closes. */
  release(): void {
    this.#holds = Math.max(0, this.#holds - 1);
    if (this.#holds === 0 && this.#peers.size === 0) this.close('empty');
  }

  /**
   * Opens a PipeTransport on the core router for a link to another node: RTX so lost packets
   * are repaired across hosts, SRTP so media between hosts is encrypted.
   */
  async createPipeTransport(linkId: string): Promise<types.PipeTransport> {
    this.#assertOpen();
    return this.#core.createPipeTransport({
      listenIp: { ip: this.#config.listenIp, announcedIp: this.#config.announcedAddress },
      enableRtx: true,
      enableSrtp: true,
      appData: { linkId },
    });
  }

  /** Starts a producer that another node pipes in, and has every local listener consume it. */
  async openRemoteProducer(
    transport: types.PipeTransport,
    linkId: string,
    info: RemoteProducerInfo,
  ): Promise<types.Producer> {
    this.#assertOpen();
    const producer = await transport.produce({
      id: info.producerId,
      kind: info.kind,
      rtpParameters: info.rtpParameters as types.RtpParameters,
      paused: info.paused,
      appData: { peerId: info.peerId, linkId, source: info.source },
    });
    if (this.#closed) {
      producer.close();
      throw new AppError('unavailable', 'the channel closed');
    }
    this.#remoteProducers.set(producer.id, producer);
    const peerId = info.peerId;
    producer.observer.once('close', () => {
      this.#remoteProducers.delete(producer.id);
      if (info.source === 'screen') this.#followSpectators(peerId);
    });
    if (info.source === 'screen') this.#shares.track(producer);
    for (const listener of this.#peers.values()) void this.#consume(listener, producer);
    if (info.source === 'screen') this.#followSpectators(peerId);
    await this.#speakers.add(producer);
    this.events.safeEmit('producerOpened', producer);
    return producer;
  }

  /** A share now goes out to another node over `linkId`, whose viewers will say what they want. */
  shareSentOver(producerId: string, linkId: string): void {
    this.#shares.linkOpened(producerId, linkId);
  }

  /** The viewers of a share behind `linkId` want layers up to `spatialLayer` (-1: none). */
  shareWishedOver(producerId: string, linkId: string, spatialLayer: number): void {
    this.#shares.linkWished(producerId, linkId, spatialLayer);
  }

  /** A share no longer goes out over `linkId`. */
  shareNoLongerSentOver(producerId: string, linkId: string): void {
    this.#shares.linkClosed(producerId, linkId);
  }

  /** Adds or updates a participant served by another node, telling local peers. */
  upsertRemoteParticipant(participant: RemoteParticipant, linkId: string): void {
    if (this.#closed || this.#peers.has(participant.id)) return;
    const { view, isNew } = this.#remote.upsert(participant, linkId);
    this.#broadcast(isNew ? 'participantJoined' : 'participantUpdated', { participant: view });
    this.events.safeEmit('participantUpserted', view, linkId);
  }

  /** Removes a participant served by another node, telling local peers. */
  removeRemoteParticipant(peerId: string): void {
    const entry = this.#remote.remove(peerId);
    if (!entry) return;
    this.#broadcast('participantLeft', { peerId });
    this.events.safeEmit('participantRemoved', peerId, entry.linkId);
  }

  /** Removes every participant that came over a link, e.g. when the link died. */
  removeRemoteParticipantsOf(linkId: string): void {
    for (const peerId of this.#remote.peersOf(linkId)) this.removeRemoteParticipant(peerId);
  }

  /** Applies a server mute that a moderator on another node asked for. */
  async applyServerMute(peerId: string, muted: boolean): Promise<void> {
    const target = this.#peers.get(peerId);
    if (target) await this.#serverMute(target, muted);
  }

  /** Where the channel's routers are and how loaded its edges are. */
  layout(): ChannelLayout {
    return {
      core: { routerId: this.#core.id, workerIndex: this.#coreWorkerIndex },
      edges: this.#edges.layout(),
    };
  }

  /** Tells whether any router of the channel lives on a worker. */
  usesWorker(index: number): boolean {
    return this.#coreWorkerIndex === index || this.#edges.usesWorker(index);
  }

  /** Adds a peer and tells the others. Media starts once it creates transports. */
  join(
    identity: Identity,
    rtpCapabilities: types.RtpCapabilities,
    sink: PeerSink,
    options: { autoResume?: boolean } = {},
  ): Peer {
    this.#assertOpen();
    if (!identity.grants.has('join')) {
      throw new AppError('forbidden', 'missing the "join" grant for this channel');
    }
    const peer = new Peer({
      id: randomUUID(),
      identity,
      rtpCapabilities,
      autoResume: options.autoResume ?? false,
      sink,
      onShareDemand: (producerId) => this.#shares.review(producerId),
    });
    this.#peers.set(peer.id, peer);
    if (!peer.spectator) {
      this.#broadcast('participantJoined', { participant: peer.toParticipant() }, peer);
      this.events.safeEmit('participantUpserted', peer.toParticipant(), undefined);
    }
    this.events.safeEmit('peerJoined', peer.id, identity);
    this.#logger.info(
      { peer: peer.id, name: identity.displayName, spectator: peer.spectator },
      'peer joined',
    );
    return peer;
  }

  /** Creates a peer's WebRTC transport: sending on the core, receiving on an edge. */
  async createWebRtcTransport(
    peerId: string,
    direction: 'send' | 'recv',
  ): Promise<WebRtcTransportInfo> {
    const transport = (await this.#createTransport(peerId, direction, (router, workerIndex) =>
      router.createWebRtcTransport({
        webRtcServer: this.#pool.slot(workerIndex).webRtcServer,
        enableUdp: true,
        enableTcp: true,
        preferUdp: true,
        ...(direction === 'recv'
          ? { initialAvailableOutgoingBitrate: this.#config.viewerStartBitrate }
          : {}),
        appData: { peerId, direction },
      }),
    )) as types.WebRtcTransport;
    transport.on('icestatechange', (state) =>
      this.#logger.debug({ peer: peerId, transport: transport.id, state }, 'ice state'),
    );
    transport.on('dtlsstatechange', (state) => {
      if (state === 'failed' || state === 'closed') {
        this.#logger.warn({ peer: peerId, transport: transport.id, state }, 'dtls state');
      }
    });
    return {
      id: transport.id,
      iceParameters: transport.iceParameters,
      iceCandidates: transport.iceCandidates,
      dtlsParameters: transport.dtlsParameters,
    };
  }

  /**
   * Creates a PlainTransport for an in-process RTP client (bots, benchmarks). `srtp` picks the
   * cipher suite, or none for clear RTP.
   */
  async createPlainTransport(
    peerId: string,
    direction: 'send' | 'recv',
    srtp?: types.SrtpCryptoSuite,
  ): Promise<types.PlainTransport> {
    return (await this.#createTransport(peerId, direction, (router) =>
      router.createPlainTransport({
        listenIp: this.#config.listenIp,
        rtcpMux: true,
        comedia: direction === 'send',
        enableSrtp: srtp !== undefined,
        srtpCryptoSuite: srtp,
        appData: { peerId, direction },
      }),
    )) as types.PlainTransport;
  }

  /** Connects a WebRTC transport of the peer with the client's DTLS parameters. */
  async connectTransport(
    peerId: string,
    transportId: string,
    dtlsParameters: types.DtlsParameters,
  ): Promise<void> {
    const transport = this.#transportOf(this.#peer(peerId), transportId);
    await (transport as types.WebRtcTransport).connect({ dtlsParameters });
  }

  /** Gives a WebRTC transport of the peer new ICE credentials after an ICE failure. */
  async restartIce(peerId: string, transportId: string): Promise<types.IceParameters> {
    const transport = this.#transportOf(this.#peer(peerId), transportId);
    return (transport as types.WebRtcTransport).restartIce();
  }

  /**
   * Starts a producer on the peer's send transport and has every listener consume it: the
   * microphone (`speak`), or a screen share's video and audio (`screen-share`). A participant
   * sends at most one of each, a channel holds at most `maxSharesPerChannel` shares, and a share
   * sends no more than the channel's preset cap allows.
   */
  async produce(
    peerId: string,
    options: {
      transportId: string;
      kind: types.MediaKind;
      rtpParameters: RtpParameters;
      paused?: boolean;
      source?: MediaSource;
      /** A screen share's capture size, as its sharer reports it: a bridge's ladder stays under it. */
      capture?: ShareCapture;
    },
  ): Promise<types.Producer> {
    const peer = this.#peer(peerId);
    const source = options.source ?? (options.kind === 'video' ? 'screen' : 'microphone');
    const grant = source === 'microphone' ? 'speak' : 'screen-share';
    if (peer.spectator) throw new AppError('forbidden', 'spectators only receive');
    if (!peer.identity.grants.has(grant)) {
      throw new AppError('forbidden', `missing the "${grant}" grant for this channel`);
    }
    if ((source === 'screen') !== (options.kind === 'video')) {
      throw new AppError('bad_request', `a ${source} producer cannot be ${options.kind}`);
    }
    const transport = this.#transportOf(peer, options.transportId);
    if (transport !== peer.sendTransport) {
      throw new AppError('bad_request', 'producers go on the send transport');
    }
    // One of each source per participant: every producer becomes a consumer at every listener,
    // so a client opening more would load everyone else's edges.
    const sends = new Set([...peer.producers.values()].map(sourceOf));
    if (sends.has(source) || peer.producing) {
      throw new AppError('conflict', `a participant sends one ${source} track; close it first`);
    }
    if (source === 'screen-audio' && !sends.has('screen')) {
      throw new AppError('bad_request', 'share a screen before its audio');
    }
    if (source === 'screen') {
      if (this.#shares.size >= this.#config.maxSharesPerChannel) {
        throw new AppError(
          'conflict',
          `the channel holds ${this.#config.maxSharesPerChannel} screen shares already`,
        );
      }
      checkShareBitrate(options.rtpParameters, peer.identity.maxSharePreset ?? 'source');
    }
    peer.producing = true;
    let producer: types.Producer;
    try {
      if (source === 'screen') {
        // Sized to the share's layers: a cap made for audio would strangle the video.
        await transport.setMaxIncomingBitrate(
          shareIncomingBitrate(options.rtpParameters as types.RtpParameters),
        );
      }
      producer = await transport.produce({
        kind: options.kind,
        rtpParameters: options.rtpParameters as types.RtpParameters,
        paused: (options.paused ?? false) || (source === 'microphone' && peer.serverMuted),
        appData: {
          peerId,
          source,
          ...(source === 'screen' && options.capture ? { capture: options.capture } : {}),
        },
      });
    } finally {
      peer.producing = false;
    }
    if (peer.closed) {
      producer.close();
      throw new AppError('not_joined', 'the peer left while producing');
    }
    peer.producers.set(producer.id, producer);
    producer.observer.once('close', () => {
      peer.producers.delete(producer.id);
      if (source === 'screen') this.#onShareClosed(peer);
    });
    if (source === 'screen') {
      this.#shares.track(producer, (activeLayers) => {
        if (!peer.closed)
          peer.sink.notify('shareLayers', { producerId: producer.id, activeLayers });
      });
    }
    // Listeners are served in the same synchronous step that registers the producer, so a
    // receive transport created meanwhile sees it exactly once: here or in its own catch-up.
    for (const listener of this.#peers.values()) {
      if (listener !== peer) void this.#consume(listener, producer);
    }
    this.events.safeEmit('producerOpened', producer);
    if (source === 'microphone') {
      await this.#speakers.add(producer);
      this.#setMuted(peer, producer.paused);
    }
    if (source === 'screen') {
      this.#announce(peer);
      this.#followSpectators(peer.id);
    }
    return producer;
  }

  // A share ended: its audio goes with it, and the sharer's channel mates hear it stopped.
  #onShareClosed(sharer: Peer): void {
    if (sharer.closed) return;
    for (const producer of sharer.producers.values()) {
      if (sourceOf(producer) === 'screen-audio') producer.close();
    }
    this.#announce(sharer);
    this.#followSpectators(sharer.id);
  }

  // Spectators hear a participant's microphone while it shares a screen, and not otherwise.
  #followSpectators(peerId: string): void {
    const sharing = this.#isSharing(peerId);
    const microphones = this.producers().filter(
      (producer) => producer.appData.peerId === peerId && sourceOf(producer) === 'microphone',
    );
    for (const spectator of this.#peers.values()) {
      if (!spectator.spectator) continue;
      for (const microphone of microphones) {
        if (sharing) void this.#consume(spectator, microphone);
        else spectator.dropConsumerOf(microphone.id);
      }
    }
  }

  // What a peer receives: everything for a participant; for a spectator, the shares and the
  // microphones of those sharing.
  #receives(listener: Peer, producer: types.Producer): boolean {
    if (!listener.spectator) return true;
    return sourceOf(producer) !== 'microphone' || this.#isSharing(String(producer.appData.peerId));
  }

  // Whether a participant, here or on another node, shares a screen in this channel.
  #isSharing(peerId: string): boolean {
    return this.producers().some(
      (producer) => producer.appData.peerId === peerId && sourceOf(producer) === 'screen',
    );
  }

  /**
   * Opens a bridge that sends a participant's screen share as plain RTP to an ingest node: its
   * video at the top layer, with its shared audio, or else its microphone. The share may come
   * from another node; `connectBridge` says where the ingest node receives.
   */
  async openBridge(
    sharerPeerId: string,
    options: { srtp: boolean },
  ): Promise<{ bridgeId: string; offer: BridgeOffer }> {
    this.#assertOpen();
    const sent = this.producers().filter((producer) => producer.appData.peerId === sharerPeerId);
    const from = (source: MediaSource) => sent.find((producer) => sourceOf(producer) === source);
    const video = from('screen');
    if (!video) throw new AppError('not_found', `participant ${sharerPeerId} shares no screen`);
    const bridgeId = randomUUID();
    const bridge = await ShareBridge.open({
      router: this.#core,
      video,
      audio: from('screen-audio'),
      microphone: from('microphone'),
      listenIp: this.#config.listenIp,
      srtp: options.srtp,
      logger: this.#logger.child({ bridge: bridgeId }),
    });
    if (this.#closed) {
      bridge.close();
      throw new AppError('unavailable', 'the channel closed');
    }
    this.#bridges.set(bridgeId, bridge);
    bridge.events.once('closed', (reason) => {
      this.#bridges.delete(bridgeId);
      if (!this.#closed) this.#shares.review(video.id);
      this.events.safeEmit('bridgeClosed', bridgeId, reason);
    });
    // The bridge wants the top layer, whether or not anyone here watches the share.
    this.#shares.review(video.id);
    this.#logger.info({ bridge: bridgeId, sharer: sharerPeerId }, 'share bridge opened');
    return { bridgeId, offer: bridge.offer };
  }

  /**
   * Folds a peer's own measurements into its link, with mediasoup's view of its microphone; the
   * channel hears of it when its quality level changes, and the peer when its microphone's Opus
   * bitrate level does. Resolves with the link's figures.
   */
  async reportStats(peerId: string, stats: ClientStats): Promise<LinkFigures | undefined> {
    const peer = this.#peer(peerId);
    const microphone = [...peer.producers.values()].find(
      (producer) => sourceOf(producer) === 'microphone',
    );
    const uplink = await uplinkOf(microphone);
    if (peer.closed) return undefined;
    const now = Date.now();
    if (peer.link.update(stats, uplink, now) && !peer.spectator) this.#announce(peer);
    const figures = peer.link.figures!;
    // Only the loss of this speaker's own audio on its way in steps its bitrate: loss on what it
    // hears happened on someone else's uplink (bench:network saw a clean speaker stepped down).
    const maxBitrateKbps =
      uplink.lossPercent === null ? undefined : peer.opus.update(uplink.lossPercent, now);
    if (maxBitrateKbps !== undefined && microphone) {
      peer.sink.notify('audioBitrate', { maxBitrateKbps });
    }
    return figures;
  }

  /** The links of the channel's participants that reported, for moderators. */
  links(): ParticipantLink[] {
    return [...this.#peers.values()]
      .filter((peer) => !peer.spectator)
      .flatMap((peer) => peer.link.describe(peer.id, peer.identity.displayName) ?? []);
  }

  /** Tells an open bridge where the ingest node receives it, which starts its media. */
  async connectBridge(bridgeId: string, answer: BridgeAnswer): Promise<void> {
    const bridge = this.#bridges.get(bridgeId);
    if (!bridge) throw new AppError('not_found', `no bridge ${bridgeId}`);
    await bridge.connect(answer);
  }

  /** Closes a bridge; one that is closed already, or unknown, is left as it is. */
  closeBridge(bridgeId: string): void {
    this.#bridges.get(bridgeId)?.close();
  }

  /**
   * Stops a participant's screen share: one's own, or as a moderator that of a lower rank. A
   * participant served by another node is stopped there, through the link it came over.
   */
  stopShare(actorId: string, targetId: string): void {
    const actor = this.#peer(actorId);
    const message = `${actor.identity.displayName} stopped your screen share`;
    if (actorId === targetId) {
      this.applyStopShare(targetId, message);
      return;
    }
    const remote = this.#moderationTarget(actor, targetId, 'stop the share of');
    if (remote) this.events.safeEmit('remoteShareStopRequested', targetId, message, remote.linkId);
    else this.applyStopShare(targetId, message);
    this.#logger.info({ peer: targetId, by: actorId }, 'share stopped');
  }

  /** Closes a local participant's share, video and audio, and tells it why. */
  applyStopShare(peerId: string, message: string): void {
    const target = this.#peers.get(peerId);
    if (!target) return;
    const shared = [...target.producers.values()].filter(
      (producer) => sourceOf(producer) !== 'microphone',
    );
    if (shared.length === 0) return;
    for (const producer of shared) producer.close();
    target.sink.notify('shareStopped', {
      producerIds: shared.map((producer) => producer.id),
      message,
    });
  }

  /** Closes one producer of the peer. */
  closeProducer(peerId: string, producerId: string): void {
    const peer = this.#peer(peerId);
    this.#producerOf(peer, producerId).close();
    peer.producers.delete(producerId);
  }

  /** Mutes (pauses) or unmutes (resumes) the peer's own producer. */
  async setProducerPaused(peerId: string, producerId: string, paused: boolean): Promise<void> {
    const peer = this.#peer(peerId);
    const producer = this.#producerOf(peer, producerId);
    if (sourceOf(producer) !== 'microphone') {
      if (paused) await producer.pause();
      else await producer.resume();
      return;
    }
    if (!paused && peer.serverMuted) {
      throw new AppError('server_muted', 'a moderator muted you; you cannot unmute yourself');
    }
    if (paused) await producer.pause();
    else await producer.resume();
    // A moderator may have muted the peer while the resume was on its way.
    if (!paused && peer.serverMuted) await producer.pause();
    this.#setMuted(peer, producer.paused);
    if (producer.paused !== paused) {
      throw new AppError('server_muted', 'a moderator muted you; you cannot unmute yourself');
    }
  }

  /** Resumes a consumer once its client is ready, unless the peer is deafened. */
  async resumeConsumer(peerId: string, consumerId: string): Promise<void> {
    await this.#peer(peerId).resumeConsumer(consumerId);
  }

  /** Pauses a video consumer its viewer does not show, or resumes it. */
  async setConsumerPaused(peerId: string, consumerId: string, paused: boolean): Promise<void> {
    await this.#peer(peerId).setConsumerHidden(consumerId, paused);
  }

  /** Sets the simulcast layer a viewer wants for a share's consumer. */
  async setConsumerPreferredLayers(
    peerId: string,
    consumerId: string,
    layers: { spatialLayer: number; temporalLayer?: number },
  ): Promise<void> {
    await this.#peer(peerId).setConsumerPreferredLayers(consumerId, layers);
  }

  /** Deafens the peer (pauses its audio consumers) or undeafens it. */
  async setDeafened(peerId: string, deafened: boolean): Promise<void> {
    const peer = this.#peer(peerId);
    await peer.setDeafened(deafened);
    if (!peer.spectator) this.#announce(peer);
  }

  /**
   * Moderator action: mutes another peer on the server, or lets it unmute again. A participant
   * served by another node is muted there, through the link it came over.
   */
  async setServerMuted(actorId: string, targetId: string, muted: boolean): Promise<void> {
    const actor = this.#peer(actorId);
    const remote = this.#moderationTarget(actor, targetId, 'mute');
    if (remote) {
      this.events.safeEmit('remoteServerMuteRequested', targetId, muted, remote.linkId);
    } else {
      await this.#serverMute(this.#peer(targetId), muted);
    }
    this.#logger.info({ peer: targetId, by: actorId, muted }, 'server mute');
  }

  // A moderator acts on participants of a lower rank, here or on another node; resolves the
  // remote entry of one served elsewhere.
  #moderationTarget(actor: Peer, targetId: string, action: string): RemoteEntry | undefined {
    if (!actor.identity.grants.has('moderate')) {
      throw new AppError('forbidden', 'missing the "moderate" grant for this channel');
    }
    const remote = this.#remote.get(targetId);
    const local = this.#peers.get(targetId);
    if (!remote && (!local || local.spectator)) {
      throw new AppError('not_found', `no participant ${targetId}`);
    }
    if ((remote ? remote.participant.rank : local!.rank) >= actor.rank) {
      throw new AppError('forbidden', `you cannot ${action} someone of your rank or above`);
    }
    return remote;
  }

  /**
   * Removes every local peer of a user at once, telling it why and closing its connection: a
   * moderator kicked or banned it. Returns how many peers went.
   */
  removeUser(userId: string, reason: 'kicked' | 'banned', message: string): number {
    const peers = [...this.#peers.values()].filter((peer) => peer.identity.userId === userId);
    for (const peer of peers) {
      peer.sink.notify('removed', { reason, message });
      peer.sink.disconnect?.(CLOSE_REMOVED, message);
      this.leave(peer.id);
    }
    if (peers.length > 0) this.#logger.info({ user: userId, reason }, 'user removed');
    return peers.length;
  }

  /** Removes a peer and every mediasoup object it owns; an empty, unheld channel closes. */
  leave(peerId: string): void {
    const peer = this.#peers.get(peerId);
    if (!peer) return;
    this.#removePeer(peer);
    if (!peer.spectator) {
      this.#broadcast('participantLeft', { peerId });
      this.events.safeEmit('participantRemoved', peerId, undefined);
    }
    this.#logger.info({ peer: peerId }, 'peer left');
    if (this.#peers.size === 0 && this.#holds === 0) this.close('empty');
  }

  /** Closes the channel and every object in it, telling remaining peers why. */
  close(reason: ChannelCloseReason): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const bridge of [...this.#bridges.values()]) bridge.close();
    for (const peer of [...this.#peers.values()]) {
      this.#removePeer(peer);
      if (reason === 'worker-died') {
        peer.sink.notify('reconnect', { reason: 'media server restarted' });
      } else if (reason !== 'empty') {
        peer.sink.notify('channelClosed', { reason });
      }
    }
    this.#shares.close();
    this.#edges.close();
    this.#remote.clear();
    this.#core.close();
    this.#logger.info({ reason }, 'channel closed');
    this.events.safeEmit('closed');
  }

  async #createTransport(
    peerId: string,
    direction: 'send' | 'recv',
    create: (router: types.Router, workerIndex: number) => Promise<types.Transport>,
  ): Promise<types.Transport> {
    const peer = this.#peer(peerId);
    if ((direction === 'send' ? peer.sendTransport : peer.recvTransport) !== undefined) {
      throw new AppError('conflict', `the peer already has a ${direction} transport`);
    }
    if (direction === 'send') {
      if (peer.spectator) throw new AppError('forbidden', 'spectators only receive');
      const transport = await create(this.#core, this.#coreWorkerIndex);
      if (peer.closed || peer.sendTransport) {
        transport.close();
        throw new AppError('conflict', 'the peer left or already has a send transport');
      }
      peer.sendTransport = transport;
      return transport;
    }
    const producers = this.producers().filter(
      (producer) => producer.appData.peerId !== peer.id && this.#receives(peer, producer),
    );
    const edge = await this.#edges.admit(peer, Math.max(1, producers.length));
    try {
      const transport = await create(edge.router, edge.workerIndex);
      if (peer.closed || peer.recvTransport) {
        transport.close();
        throw new AppError('conflict', 'the peer left or already has a recv transport');
      }
      peer.recvTransport = transport;
    } catch (error) {
      this.#edges.release(peer);
      throw error;
    }
    for (const producer of this.producers()) {
      if (producer.appData.peerId !== peer.id) void this.#consume(peer, producer);
    }
    return peer.recvTransport;
  }

  async #consume(listener: Peer, producer: types.Producer): Promise<void> {
    const edge = listener.edge;
    const transport = listener.recvTransport;
    if (!edge || !transport || listener.consumedProducerIds.has(producer.id)) return;
    if (!this.#receives(listener, producer)) return;
    listener.consumedProducerIds.add(producer.id);
    try {
      await this.#edges.pipe(producer, edge);
      if (listener.closed || producer.closed || transport.closed) return;
      if (
        !edge.router.canConsume({
          producerId: producer.id,
          rtpCapabilities: listener.rtpCapabilities,
        })
      ) {
        this.#logger.warn({ peer: listener.id, producer: producer.id }, 'peer cannot consume');
        return;
      }
      const consumer = await transport.consume({
        producerId: producer.id,
        rtpCapabilities: listener.rtpCapabilities,
        // NACK for audio too (mediasoup's default is video only): the consumer keeps its last
        // second of packets and resends the ones a listener reports lost. At 20 % loss on the
        // downlink it cut concealment from 18 % to 6 % (bench:network, README "Adaptation").
        enableRtx: true,
        paused: true,
        appData: { peerId: producer.appData.peerId },
      });
      // A spectator's reason to hear a microphone may have ended meanwhile.
      if (listener.closed || transport.closed || !this.#receives(listener, producer)) {
        consumer.close();
        listener.consumedProducerIds.delete(producer.id);
        return;
      }
      await listener.adoptConsumer(consumer, producer);
    } catch (error) {
      listener.consumedProducerIds.delete(producer.id);
      // The listener, the producer or a router may have gone while this was in flight; that is
      // a normal race and not worth more than a debug line.
      const level = listener.closed || producer.closed || this.#closed ? 'debug' : 'error';
      this.#logger[level](
        { err: error, peer: listener.id, producer: producer.id },
        'consume failed',
      );
    }
  }

  #removePeer(peer: Peer): void {
    peer.close();
    this.#edges.release(peer);
    this.#peers.delete(peer.id);
    this.events.safeEmit('peerLeft', peer.id);
    this.#speakers.forget(peer.id);
  }

  #setMuted(peer: Peer, muted: boolean): void {
    if (peer.muted === muted) return;
    peer.muted = muted;
    this.#announce(peer);
  }

  async #serverMute(target: Peer, muted: boolean): Promise<void> {
    target.serverMuted = muted;
    if (muted) {
      const microphones = [...target.producers.values()].filter(
        (producer) => sourceOf(producer) === 'microphone',
      );
      await Promise.all(microphones.map((producer) => producer.pause()));
      target.muted = true;
    }
    this.#announce(target);
  }

  // A local peer changed: its channel mates here hear it directly, other nodes through links.
  #announce(peer: Peer): void {
    if (peer.spectator || peer.closed) return;
    const participant = peer.toParticipant();
    this.#broadcast('participantUpdated', { participant });
    this.events.safeEmit('participantUpserted', participant, undefined);
  }

  // Roster changes go to everyone; speaking indicators (`voice`) to participants only.
  #broadcast<M extends VoiceNotificationMethod>(
    method: M,
    data: VoiceNotificationData<M>,
    except?: Peer,
    audience: 'all' | 'voice' = 'all',
  ): void {
    for (const peer of this.#peers.values()) {
      if (peer === except || (audience === 'voice' && peer.spectator)) continue;
      peer.sink.notify(method, data);
    }
  }

  #peer(peerId: string): Peer {
    const peer = this.#peers.get(peerId);
    if (!peer) throw new AppError('not_joined', 'not in this channel');
    return peer;
  }

  #transportOf(peer: Peer, transportId: string): types.Transport {
    const transport = [peer.sendTransport, peer.recvTransport].find((t) => t?.id === transportId);
    if (!transport) throw new AppError('not_found', `no transport ${transportId}`);
    return transport;
  }

  #producerOf(peer: Peer, producerId: string): types.Producer {
    const producer = peer.producers.get(producerId);
    if (!producer) throw new AppError('not_found', `no producer ${producerId}`);
    return producer;
  }

  #assertOpen(): void {
    if (this.#closed) throw new AppError('unavailable', 'the channel closed');
  }
}
