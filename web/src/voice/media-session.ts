import { mediaSourceSchema, type MediaSource, type VoiceNotificationData } from '@hearth/protocol';
import type { types } from 'mediasoup-client';
import { warn } from '../log';
import { TypedEmitter } from './emitter';
import type { SignalingClient } from './signaling';
import {
  toClientIceParameters,
  toClientRtpParameters,
  toTransportOptions,
  toWireDtlsParameters,
  toWireRtpParameters,
} from './wire';

/** Byte and packet counters of one remote audio stream, from its `inbound-rtp` stats. */
export interface InboundAudioStats {
  /** The consumer carrying the stream. */
  consumerId: string;
  /** The participant who sends it. */
  peerId: string;
  /** RTP payload bytes received so far. */
  bytesReceived: number;
  /** RTP packets received so far. */
  packetsReceived: number;
}

/** A screen share received from another participant, shown as a tile. */
export interface RemoteScreen {
  /** The consumer carrying the share's video. */
  consumerId: string;
  /** The participant who shares. */
  peerId: string;
  /** The video, for a `<video>` element's `srcObject`. */
  stream: MediaStream;
  /** The simulcast layer received (0 is the lowest), or null while none flows. */
  spatialLayer: number | null;
  /** The layer this viewer asked for, or null before it asked. */
  preferredSpatialLayer: number | null;
}

/** What `MediaSession.send` sends, besides the microphone. */
export interface SendOptions {
  /** The track to send. */
  track: MediaStreamTrack;
  /** What the track is, as the server is told. */
  source: MediaSource;
  /** Simulcast layers of a video track. */
  encodings?: RTCRtpEncodingParameters[];
  /** Codec settings, such as the encoder's start bitrate. */
  codecOptions?: types.ProducerCodecOptions;
  /** Whether closing the producer stops the track (the default); false when its owner does. */
  stopTracks?: boolean;
  /** What the encoder gives up first when bandwidth runs short. */
  degradationPreference?: RTCDegradationPreference;
}

/** Events of a media session. */
export type MediaSessionEvents = {
  /** The first packet of remote audio arrived, at this `performance.now()` time. */
  firstRemoteAudio: [number];
  /** The browser refused to start playback until the user interacts with the page. */
  autoplayBlocked: [];
  /** A transport could not be recovered by restarting ICE; the session must be replaced. */
  failed: [Error];
  /** Another participant's screen share arrived. */
  screenAdded: [RemoteScreen];
  /** A screen share received before, named by its consumer id, ended. */
  screenRemoved: [string];
  /** The layer received of a screen share, or the one asked for, changed. */
  screenUpdated: [RemoteScreen];
};

type NewConsumer = VoiceNotificationData<'newConsumer'>;

type QueuedNotification =
  { method: 'newConsumer'; data: NewConsumer } | { method: 'consumerClosed'; consumerId: string };

interface RemoteAudio {
  consumer: types.Consumer;
  peerId: string;
  element: HTMLAudioElement;
}

interface RemoteVideo {
  consumer: types.Consumer;
  screen: RemoteScreen;
}

// Settings the microphone producer is created with: in-band FEC rides out packet loss, DTX
// saves bandwidth during silence, and a voice channel has no use for stereo.
const MICROPHONE_CODEC_OPTIONS: types.ProducerCodecOptions = {
  opusFec: true,
  opusDtx: true,
  opusStereo: false,
};
// How long a transport may stay `disconnected` before ICE is restarted: brief network blips
// recover by themselves within this time.
const DISCONNECTED_GRACE_MS = 2_000;
// ICE restarts in a row that may fail to reach `connected` before the session gives up and the
// client joins again from scratch.
const MAX_ICE_RESTARTS = 3;

/**
 * The media of one join: a send and a receive transport, the microphone producer (and whatever
 * else `send` sends, such as a screen share), one consumer with its audio element per remote
 * microphone or share audio, and one consumer per remote screen share, announced as a
 * `RemoteScreen`. A session never outlives its join: after a reconnect the client builds a new
 * one, so nothing here needs resetting.
 */
export class MediaSession {
  /** Timing, playback and failure events. */
  readonly events = new TypedEmitter<MediaSessionEvents>();
  readonly #signaling: SignalingClient;
  readonly #device: types.Device;
  readonly #unsubscribe: (() => void)[];
  readonly #remote = new Map<string, RemoteAudio>();
  readonly #remoteVideo = new Map<string, RemoteVideo>();
  // Video producers made by `send`, which the server may tell to switch layers off and on.
  readonly #sentVideo = new Map<string, types.Producer>();
  // Changes to RTP senders' parameters, one at a time: each reads the parameters the previous
  // one wrote.
  #senderUpdates: Promise<void> = Promise.resolve();
  #screensHidden: boolean;
  readonly #consuming = new Set<string>();
  readonly #abandoned = new Set<string>();
  readonly #iceTimers = new Map<types.Transport, ReturnType<typeof setTimeout>>();
  readonly #iceRestarts = new Map<types.Transport, number>();
  #queue: QueuedNotification[] | null = [];
  #sendTransport: types.Transport | null = null;
  #recvTransport: types.Transport | null = null;
  #producer: types.Producer | null = null;
  #producing = false;
  #wantPaused = false;
  #serverPaused = false;
  #micSync: Promise<void> = Promise.resolve();
  #deafened: boolean;
  #heardAudio = false;
  #closed = false;

  constructor(options: {
    signaling: SignalingClient;
    device: types.Device;
    deafened: boolean;
    screensHidden: boolean;
  }) {
    this.#signaling = options.signaling;
    this.#device = options.device;
    this.#deafened = options.deafened;
    this.#screensHidden = options.screensHidden;
    this.#unsubscribe = [
      this.#signaling.onNotification('newConsumer', (data) =>
        this.#handle({ method: 'newConsumer', data }),
      ),
      this.#signaling.onNotification('consumerClosed', ({ consumerId }) =>
        this.#handle({ method: 'consumerClosed', consumerId }),
      ),
      this.#signaling.onNotification('consumerLayers', (data) => this.#onConsumerLayers(data)),
      this.#signaling.onNotification('shareLayers', ({ producerId, activeLayers }) => {
        const producer = this.#sentVideo.get(producerId);
        if (producer)
          this.#updateSender(producer, (parameters) => activateLayers(parameters, activeLayers));
      }),
    ];
  }

  /** True once the session closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** True once the microphone producer exists. */
  get producing(): boolean {
    return this.#producer !== null;
  }

  /** Creates both transports; remote audio starts flowing as soon as the receiver exists. */
  async open(): Promise<void> {
    const [sendInfo, recvInfo] = await Promise.all([
      this.#signaling.request('createTransport', { direction: 'send' }),
      this.#signaling.request('createTransport', { direction: 'recv' }),
    ]);
    if (this.#closed) return;
    const send = this.#device.createSendTransport(toTransportOptions(sendInfo));
    this.#sendTransport = send;
    this.#watchTransport(send);
    send.on('produce', ({ kind, rtpParameters, appData }, callback, errback) => {
      this.#signaling
        .request('produce', {
          transportId: send.id,
          kind,
          rtpParameters: toWireRtpParameters(rtpParameters),
          paused: appData.paused === true,
          source: mediaSourceSchema.safeParse(appData.source).data ?? 'microphone',
        })
        .then(({ producerId }) => callback({ id: producerId }), errback);
    });
    const recv = this.#device.createRecvTransport(toTransportOptions(recvInfo));
    this.#recvTransport = recv;
    this.#watchTransport(recv);
    // Consumers the server created while the receive transport did not exist yet were queued;
    // they are set up now, in the order they were announced.
    const queued = this.#queue ?? [];
    this.#queue = null;
    for (const notification of queued) this.#handle(notification);
  }

  /**
   * Starts sending the microphone. `paused` is the mute state to start in; later changes made
   * with `setMicPaused` while this runs are applied once the producer exists.
   */
  async produce(track: MediaStreamTrack, paused: boolean): Promise<void> {
    const transport = this.#sendTransport;
    if (!transport || this.#closed || this.#producer || this.#producing) return;
    this.#producing = true;
    this.#wantPaused = paused;
    // A track kept from an earlier session may still be disabled by that session's paused
    // producer; the new producer decides from here on.
    track.enabled = true;
    try {
      const producer = await transport.produce({
        track,
        codecOptions: MICROPHONE_CODEC_OPTIONS,
        // The client keeps the microphone across reconnects, so closing a producer must not
        // stop its track.
        stopTracks: false,
        appData: { paused },
      });
      if (this.#closed) {
        producer.close();
        return;
      }
      this.#producer = producer;
      this.#serverPaused = paused;
      producer.on('transportclose', () => {
        if (this.#producer === producer) this.#producer = null;
      });
      if (this.#wantPaused) producer.pause();
      if (this.#wantPaused !== paused) await this.setMicPaused(this.#wantPaused);
    } finally {
      this.#producing = false;
    }
  }

  /**
   * Pauses or resumes the microphone: locally at once, then on the server. Requests run one at a
   * time and each sends only the latest wanted state, so a burst of push-to-talk presses costs
   * at most one request per change that is still current. Rejects with the server's refusal.
   */
  setMicPaused(paused: boolean): Promise<void> {
    this.#wantPaused = paused;
    const producer = this.#producer;
    if (!producer) return Promise.resolve();
    if (paused) producer.pause();
    else producer.resume();
    const sync = this.#micSync.then(() => this.#pushMicPaused());
    this.#micSync = sync.catch(() => undefined);
    return sync;
  }

  /** Sends another microphone track on the existing producer; false if there is none yet. */
  async replaceTrack(track: MediaStreamTrack): Promise<boolean> {
    const producer = this.#producer;
    if (!producer || producer.closed) return false;
    await producer.replaceTrack({ track });
    return true;
  }

  /**
   * Sends a track other than the microphone, such as a screen share; resolves with its producer,
   * or null when the session closed meanwhile. Rejects with the server's refusal.
   */
  async send(options: SendOptions): Promise<types.Producer | null> {
    const transport = this.#sendTransport;
    if (!transport || this.#closed) return null;
    const producer = await transport.produce({
      track: options.track,
      encodings: options.encodings,
      codecOptions: options.codecOptions,
      stopTracks: options.stopTracks ?? true,
      appData: { source: options.source },
    });
    if (this.#closed) {
      producer.close();
      return null;
    }
    const { degradationPreference } = options;
    if (degradationPreference) {
      this.#updateSender(producer, (parameters) => {
        parameters.degradationPreference = degradationPreference;
      });
    }
    if (producer.kind === 'video') {
      this.#sentVideo.set(producer.id, producer);
      producer.observer.on('close', () => this.#sentVideo.delete(producer.id));
    }
    return producer;
  }

  /**
   * Asks the server for the simulcast layer of a received screen share that fits the size it is
   * shown at (0 is the lowest); asking again for the same layer sends nothing.
   */
  setScreenLayer(consumerId: string, spatialLayer: number): void {
    const video = this.#remoteVideo.get(consumerId);
    if (!video || this.#closed || video.screen.preferredSpatialLayer === spatialLayer) return;
    this.#updateScreen(video, { preferredSpatialLayer: spatialLayer });
    this.#signaling
      .request('setConsumerPreferredLayers', { consumerId, spatialLayer })
      .catch((error) => {
        if (!this.#closed && this.#remoteVideo.has(consumerId)) {
          warn('could not choose the layer of a screen share', error);
        }
      });
  }

  /** Pauses every received screen share while the page is hidden, and resumes them after. */
  setScreensHidden(hidden: boolean): void {
    if (this.#closed || hidden === this.#screensHidden) return;
    this.#screensHidden = hidden;
    for (const consumerId of this.#remoteVideo.keys()) this.#requestScreenPaused(consumerId);
  }

  /** Stops sending a producer made by `send`: on the server, then locally. */
  stopSending(producer: types.Producer): void {
    if (producer.closed) return;
    producer.close();
    if (this.#closed) return;
    this.#signaling.request('closeProducer', { producerId: producer.id }).catch((error) => {
      // A producer whose transport or peer is gone is closed on the server already.
      if (!this.#closed) warn('could not stop sending a track', error);
    });
  }

  /** Mutes or unmutes every remote audio element. */
  setDeafened(deafened: boolean): void {
    this.#deafened = deafened;
    for (const { element } of this.#remote.values()) element.muted = deafened;
  }

  /** Retries playback after a user gesture; true when every element now plays. */
  async resumePlayback(): Promise<boolean> {
    const results = await Promise.allSettled(
      [...this.#remote.values()].map(({ element }) => element.play()),
    );
    return results.every((result) => result.status === 'fulfilled');
  }

  /** Byte and packet counters of every remote audio stream. */
  async inboundAudio(): Promise<InboundAudioStats[]> {
    const entries = [...this.#remote.entries()].filter(([, { consumer }]) => !consumer.closed);
    return Promise.all(
      entries.map(async ([consumerId, { consumer, peerId }]) => {
        const stats: InboundAudioStats = {
          consumerId,
          peerId,
          bytesReceived: 0,
          packetsReceived: 0,
        };
        const report = await consumer.getStats();
        report.forEach((stat: RTCStats) => {
          if (!isInboundRtp(stat)) return;
          stats.bytesReceived += stat.bytesReceived ?? 0;
          stats.packetsReceived += stat.packetsReceived ?? 0;
        });
        return stats;
      }),
    );
  }

  /** Closes every transport, consumer and audio element; the microphone track keeps running. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const unsubscribe of this.#unsubscribe) unsubscribe();
    for (const timer of this.#iceTimers.values()) clearTimeout(timer);
    this.#iceTimers.clear();
    for (const id of [...this.#remote.keys()]) this.#removeRemote(id);
    for (const id of [...this.#remoteVideo.keys()]) this.#removeRemote(id);
    this.#queue = null;
    this.#producer?.close();
    this.#producer = null;
    this.#sendTransport?.close();
    this.#recvTransport?.close();
    this.events.removeAllListeners();
  }

  async #pushMicPaused(): Promise<void> {
    const producer = this.#producer;
    const paused = this.#wantPaused;
    if (!producer || this.#closed || paused === this.#serverPaused) return;
    try {
      await this.#signaling.request('setProducerPaused', { producerId: producer.id, paused });
      this.#serverPaused = paused;
    } catch (error) {
      // The server kept its state, so the local producer goes back to match it.
      if (this.#producer === producer && this.#wantPaused === paused) {
        this.#wantPaused = this.#serverPaused;
        if (this.#serverPaused) producer.pause();
        else producer.resume();
      }
      throw error;
    }
  }

  #handle(notification: QueuedNotification): void {
    if (this.#closed) return;
    if (this.#queue) {
      this.#queue.push(notification);
      return;
    }
    if (notification.method === 'newConsumer') {
      void this.#consume(notification.data);
      return;
    }
    const id = notification.consumerId;
    if (this.#consuming.has(id)) this.#abandoned.add(id);
    else this.#removeRemote(id);
  }

  async #consume(data: NewConsumer): Promise<void> {
    const transport = this.#recvTransport;
    if (!transport) return;
    this.#consuming.add(data.consumerId);
    let consumer: types.Consumer;
    try {
      consumer = await transport.consume({
        id: data.consumerId,
        producerId: data.producerId,
        kind: data.kind,
        rtpParameters: toClientRtpParameters(data.rtpParameters),
        appData: { peerId: data.peerId, source: data.source },
      });
    } catch (error) {
      if (!this.#closed) warn(`could not receive ${data.source} of ${data.peerId}`, error);
      return;
    } finally {
      this.#consuming.delete(data.consumerId);
    }
    if (this.#closed || this.#abandoned.delete(data.consumerId)) {
      consumer.close();
      return;
    }
    consumer.on('transportclose', () => this.#removeRemote(consumer.id));
    consumer.on('trackended', () => this.#removeRemote(consumer.id));
    if (consumer.kind === 'video') this.#showVideo(consumer, data.peerId);
    else this.#playAudio(consumer, data.peerId);
    try {
      await this.#signaling.request('resumeConsumer', { consumerId: consumer.id });
    } catch (error) {
      if (!this.#closed && (this.#remote.has(consumer.id) || this.#remoteVideo.has(consumer.id))) {
        warn(`could not resume ${data.source} of ${data.peerId}`, error);
      }
    }
  }

  #showVideo(consumer: types.Consumer, peerId: string): void {
    const screen: RemoteScreen = {
      consumerId: consumer.id,
      peerId,
      stream: new MediaStream([consumer.track]),
      spatialLayer: null,
      preferredSpatialLayer: null,
    };
    this.#remoteVideo.set(consumer.id, { consumer, screen });
    this.events.safeEmit('screenAdded', screen);
    if (this.#screensHidden) this.#requestScreenPaused(consumer.id);
  }

  #requestScreenPaused(consumerId: string): void {
    const paused = this.#screensHidden;
    this.#signaling.request('setConsumerPaused', { consumerId, paused }).catch((error) => {
      if (!this.#closed && this.#remoteVideo.has(consumerId)) {
        warn(`could not ${paused ? 'pause' : 'resume'} a screen share`, error);
      }
    });
  }

  #onConsumerLayers(data: VoiceNotificationData<'consumerLayers'>): void {
    const video = this.#remoteVideo.get(data.consumerId);
    if (video) this.#updateScreen(video, { spatialLayer: data.spatialLayer });
  }

  #updateScreen(video: RemoteVideo, patch: Partial<RemoteScreen>): void {
    video.screen = { ...video.screen, ...patch };
    this.events.safeEmit('screenUpdated', video.screen);
  }

  #updateSender(
    producer: types.Producer,
    change: (parameters: RTCRtpSendParameters) => void,
  ): void {
    this.#senderUpdates = this.#senderUpdates.then(async () => {
      const sender = producer.rtpSender;
      if (!sender || producer.closed || this.#closed) return;
      const parameters = sender.getParameters();
      change(parameters);
      await sender.setParameters(parameters).catch((error: unknown) => {
        if (!producer.closed) warn('could not change how a track is sent', error);
      });
    });
  }

  #playAudio(consumer: types.Consumer, peerId: string): void {
    const element = new Audio();
    element.autoplay = true;
    element.muted = this.#deafened;
    element.srcObject = new MediaStream([consumer.track]);
    this.#remote.set(consumer.id, { consumer, peerId, element });
    this.#watchFirstPacket(consumer.track);
    this.#play(element);
  }

  // A remote track stays muted until its first RTP packet arrives, so its `unmute` event marks
  // the moment audio really reached this client.
  #watchFirstPacket(track: MediaStreamTrack): void {
    if (this.#heardAudio) return;
    const heard = () => {
      if (this.#heardAudio || this.#closed) return;
      this.#heardAudio = true;
      this.events.safeEmit('firstRemoteAudio', performance.now());
    };
    if (!track.muted) heard();
    else track.addEventListener('unmute', heard, { once: true });
  }

  #play(element: HTMLAudioElement): void {
    element.play().catch((error: unknown) => {
      if (this.#closed || !(error instanceof DOMException)) return;
      if (error.name === 'NotAllowedError') this.events.safeEmit('autoplayBlocked');
      else if (error.name !== 'AbortError') warn('audio playback failed', error);
    });
  }

  #removeRemote(consumerId: string): void {
    const video = this.#remoteVideo.get(consumerId);
    if (video) {
      this.#remoteVideo.delete(consumerId);
      video.consumer.close();
      this.events.safeEmit('screenRemoved', consumerId);
      return;
    }
    const remote = this.#remote.get(consumerId);
    if (!remote) return;
    this.#remote.delete(consumerId);
    remote.consumer.close();
    remote.element.pause();
    remote.element.srcObject = null;
  }

  #watchTransport(transport: types.Transport): void {
    transport.on('connect', ({ dtlsParameters }, callback, errback) => {
      this.#signaling
        .request('connectTransport', {
          transportId: transport.id,
          dtlsParameters: toWireDtlsParameters(dtlsParameters),
        })
        .then(() => callback(), errback);
    });
    transport.on('connectionstatechange', (state) => this.#onConnectionState(transport, state));
  }

  #onConnectionState(transport: types.Transport, state: types.ConnectionState): void {
    if (this.#closed) return;
    clearTimeout(this.#iceTimers.get(transport));
    this.#iceTimers.delete(transport);
    if (state === 'connected') {
      this.#iceRestarts.delete(transport);
    } else if (state === 'failed') {
      void this.#restartIce(transport);
    } else if (state === 'disconnected') {
      const timer = setTimeout(() => {
        this.#iceTimers.delete(transport);
        if (transport.connectionState !== 'connected') void this.#restartIce(transport);
      }, DISCONNECTED_GRACE_MS);
      this.#iceTimers.set(transport, timer);
    }
  }

  async #restartIce(transport: types.Transport): Promise<void> {
    if (this.#closed || transport.closed) return;
    const restarts = (this.#iceRestarts.get(transport) ?? 0) + 1;
    this.#iceRestarts.set(transport, restarts);
    if (restarts > MAX_ICE_RESTARTS) {
      this.events.safeEmit('failed', new Error(`${transport.direction} transport keeps failing`));
      return;
    }
    try {
      const { iceParameters } = await this.#signaling.request('restartIce', {
        transportId: transport.id,
      });
      if (this.#closed || transport.closed) return;
      await transport.restartIce({ iceParameters: toClientIceParameters(iceParameters) });
    } catch (error) {
      if (this.#closed || transport.closed) return;
      this.events.safeEmit('failed', error instanceof Error ? error : new Error(String(error)));
    }
  }
}

// Keeps the lowest `activeLayers` simulcast encodings sending and switches the others off.
function activateLayers(parameters: RTCRtpSendParameters, activeLayers: number): void {
  parameters.encodings.forEach((encoding, index) => {
    encoding.active = index < activeLayers;
  });
}

function isInboundRtp(stat: RTCStats): stat is RTCInboundRtpStreamStats {
  return stat.type === 'inbound-rtp';
}
