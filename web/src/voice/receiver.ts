import type { VoiceNotificationData } from '@hearth/protocol';
import type { types } from 'mediasoup-client';
import { warn } from '../log';
import type { JoinIce } from './channel-link';
import { TypedEmitter } from './emitter';
import type { SignalingClient } from './signaling';
import { superviseTransport } from './transport-recovery';
import { toClientRtpParameters, toTransportOptions } from './wire';

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
  /** RTP packets lost so far (never received, even resent). */
  packetsLost: number;
  /** NACKs sent for the stream so far. */
  nackCount: number;
  /** Samples played out so far, made-up ones included. */
  totalSamplesReceived: number;
  /** Samples made up for lost or late packets so far, except silence. */
  audibleConcealedSamples: number;
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

/** Events of a media receiver. */
export type MediaReceiverEvents = {
  /** The first packet of remote audio arrived, at this `performance.now()` time. */
  firstRemoteAudio: [number];
  /** The browser refused to start playback until the user interacts with the page. */
  autoplayBlocked: [];
  /** The transport could not be recovered by restarting ICE; the receiver must be replaced. */
  failed: [Error];
  /** Another participant's screen share arrived. */
  screenAdded: [RemoteScreen];
  /** A screen share received before, named by its consumer id, ended. */
  screenRemoved: [string];
  /** The layer received of a screen share, or the one asked for, changed. */
  screenUpdated: [RemoteScreen];
};

/** Settings of a media receiver. */
export interface MediaReceiverOptions {
  /** The signaling connection of the join. */
  signaling: SignalingClient;
  /** The loaded mediasoup-client Device. */
  device: types.Device;
  /** Incoming audio starts muted. */
  deafened: boolean;
  /** Received screen shares start paused, because the page is hidden. */
  screensHidden: boolean;
  /** TURN servers and ICE policy of the join. */
  ice: JoinIce;
}

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

/**
 * The receiving side of one join: a receive transport, one consumer with its audio element per
 * remote microphone or share audio, and one consumer per remote screen share, announced as a
 * `RemoteScreen`. It serves voice participants and receive-only spectators alike. A receiver
 * never outlives its join: after a reconnect the client builds a new one.
 */
export class MediaReceiver {
  /** Timing, playback, screen and failure events. */
  readonly events = new TypedEmitter<MediaReceiverEvents>();
  readonly #signaling: SignalingClient;
  readonly #device: types.Device;
  readonly #ice: JoinIce;
  readonly #unsubscribe: (() => void)[];
  readonly #audio = new Map<string, RemoteAudio>();
  readonly #video = new Map<string, RemoteVideo>();
  readonly #consuming = new Set<string>();
  readonly #abandoned = new Set<string>();
  // Notifications that arrive before the receive transport exists wait here, in order.
  #queue: QueuedNotification[] | null = [];
  #transport: types.Transport | null = null;
  #stopSupervising: (() => void) | null = null;
  #deafened: boolean;
  #screensHidden: boolean;
  #heardAudio = false;
  #closed = false;

  constructor(options: MediaReceiverOptions) {
    this.#signaling = options.signaling;
    this.#device = options.device;
    this.#ice = options.ice;
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
    ];
  }

  /** Creates the receive transport; remote media starts flowing as soon as it exists. */
  async open(): Promise<void> {
    const info = await this.#signaling.request('createTransport', { direction: 'recv' });
    if (this.#closed) return;
    const transport = this.#device.createRecvTransport(toTransportOptions(info, this.#ice));
    this.#transport = transport;
    this.#stopSupervising = superviseTransport(transport, this.#signaling, (error) => {
      if (!this.#closed) this.events.safeEmit('failed', error);
    });
    // Consumers the server created while the receive transport did not exist yet were queued;
    // they are set up now, in the order they were announced.
    const queued = this.#queue ?? [];
    this.#queue = null;
    for (const notification of queued) this.#handle(notification);
  }

  /**
   * Asks the server for the simulcast layer of a received screen share that fits the size it is
   * shown at (0 is the lowest); asking again for the same layer sends nothing.
   */
  setScreenLayer(consumerId: string, spatialLayer: number): void {
    const video = this.#video.get(consumerId);
    if (!video || this.#closed || video.screen.preferredSpatialLayer === spatialLayer) return;
    this.#updateScreen(video, { preferredSpatialLayer: spatialLayer });
    this.#signaling
      .request('setConsumerPreferredLayers', { consumerId, spatialLayer })
      .catch((error) => {
        if (!this.#closed && this.#video.has(consumerId)) {
          warn('could not choose the layer of a screen share', error);
        }
      });
  }

  /** Pauses every received screen share while the page is hidden, and resumes them after. */
  setScreensHidden(hidden: boolean): void {
    if (this.#closed || hidden === this.#screensHidden) return;
    this.#screensHidden = hidden;
    for (const consumerId of this.#video.keys()) this.#requestScreenPaused(consumerId);
  }

  /** Mutes or unmutes every remote audio element. */
  setDeafened(deafened: boolean): void {
    this.#deafened = deafened;
    for (const { element } of this.#audio.values()) element.muted = deafened;
  }

  /** Retries playback after a user gesture; true when every element now plays. */
  async resumePlayback(): Promise<boolean> {
    const results = await Promise.allSettled(
      [...this.#audio.values()].map(({ element }) => element.play()),
    );
    return results.every((result) => result.status === 'fulfilled');
  }

  /** Byte, packet, NACK and concealment counters of every remote audio stream. */
  async inboundAudio(): Promise<InboundAudioStats[]> {
    const entries = [...this.#audio.entries()].filter(([, { consumer }]) => !consumer.closed);
    return Promise.all(
      entries.map(async ([consumerId, { consumer, peerId }]) => {
        const stats: InboundAudioStats = {
          consumerId,
          peerId,
          bytesReceived: 0,
          packetsReceived: 0,
          packetsLost: 0,
          nackCount: 0,
          totalSamplesReceived: 0,
          audibleConcealedSamples: 0,
        };
        const report = await consumer.getStats();
        report.forEach((stat: RTCStats) => {
          if (!isInboundRtp(stat)) return;
          stats.bytesReceived += stat.bytesReceived ?? 0;
          stats.packetsReceived += stat.packetsReceived ?? 0;
          stats.packetsLost += stat.packetsLost ?? 0;
          stats.nackCount += stat.nackCount ?? 0;
          stats.totalSamplesReceived += stat.totalSamplesReceived ?? 0;
          stats.audibleConcealedSamples +=
            (stat.concealedSamples ?? 0) - (stat.silentConcealedSamples ?? 0);
        });
        return stats;
      }),
    );
  }

  /** The receive transport's WebRTC statistics, or null before it exists. */
  async transportStats(): Promise<RTCStatsReport | null> {
    return this.#transport && !this.#transport.closed ? this.#transport.getStats() : null;
  }

  /** Closes the transport, every consumer and every audio element. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const unsubscribe of this.#unsubscribe) unsubscribe();
    this.#stopSupervising?.();
    for (const id of [...this.#audio.keys()]) this.#remove(id);
    for (const id of [...this.#video.keys()]) this.#remove(id);
    this.#queue = null;
    this.#transport?.close();
    this.events.removeAllListeners();
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
    else this.#remove(id);
  }

  async #consume(data: NewConsumer): Promise<void> {
    const transport = this.#transport;
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
    consumer.on('transportclose', () => this.#remove(consumer.id));
    consumer.on('trackended', () => this.#remove(consumer.id));
    if (consumer.kind === 'video') this.#showVideo(consumer, data.peerId);
    else this.#playAudio(consumer, data.peerId);
    try {
      await this.#signaling.request('resumeConsumer', { consumerId: consumer.id });
    } catch (error) {
      if (!this.#closed && (this.#audio.has(consumer.id) || this.#video.has(consumer.id))) {
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
    this.#video.set(consumer.id, { consumer, screen });
    this.events.safeEmit('screenAdded', screen);
    if (this.#screensHidden) this.#requestScreenPaused(consumer.id);
  }

  #requestScreenPaused(consumerId: string): void {
    const paused = this.#screensHidden;
    this.#signaling.request('setConsumerPaused', { consumerId, paused }).catch((error) => {
      if (!this.#closed && this.#video.has(consumerId)) {
        warn(`could not ${paused ? 'pause' : 'resume'} a screen share`, error);
      }
    });
  }

  #onConsumerLayers(data: VoiceNotificationData<'consumerLayers'>): void {
    const video = this.#video.get(data.consumerId);
    if (video) this.#updateScreen(video, { spatialLayer: data.spatialLayer });
  }

  #updateScreen(video: RemoteVideo, patch: Partial<RemoteScreen>): void {
    video.screen = { ...video.screen, ...patch };
    this.events.safeEmit('screenUpdated', video.screen);
  }

  #playAudio(consumer: types.Consumer, peerId: string): void {
    const element = new Audio();
    element.autoplay = true;
    element.muted = this.#deafened;
    element.srcObject = new MediaStream([consumer.track]);
    this.#audio.set(consumer.id, { consumer, peerId, element });
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

  #remove(consumerId: string): void {
    const video = this.#video.get(consumerId);
    if (video) {
      this.#video.delete(consumerId);
      video.consumer.close();
      this.events.safeEmit('screenRemoved', consumerId);
      return;
    }
    const audio = this.#audio.get(consumerId);
    if (!audio) return;
    this.#audio.delete(consumerId);
    audio.consumer.close();
    audio.element.pause();
    audio.element.srcObject = null;
  }
}

function isInboundRtp(stat: RTCStats): stat is RTCInboundRtpStreamStats {
  return stat.type === 'inbound-rtp';
}
