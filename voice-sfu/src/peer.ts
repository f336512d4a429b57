import type { types } from 'mediasoup';
import type { Participant, VoiceNotificationData, VoiceNotificationMethod } from '@hearth/protocol';
import { AppError, rankOf, type Identity } from '@hearth/server-common';
import type { Edge } from './edge';
import { sourceOf } from './sources';
import { OpusAdaptation } from './opus-adaptation';
import { PeerLink } from './peer-link';

/** Where a peer's notifications go: its signaling session, or an in-process client. */
export interface PeerSink {
  /** Delivers one notification to the peer. */
  notify<M extends VoiceNotificationMethod>(method: M, data: VoiceNotificationData<M>): void;
  /** Ends the peer's connection, e.g. after a moderator removed it. */
  disconnect?(code: number, reason: string): void;
}

/** A consumer of a peer plus whether its client has finished setting it up. */
export interface PeerConsumer {
  /** The mediasoup consumer on the peer's edge router. */
  readonly consumer: types.Consumer;
  /** True once the client asked to resume it; it still stays paused while deafened. */
  clientReady: boolean;
  /** True while the viewer does not show it (a hidden tab): a paused video consumer. */
  hidden: boolean;
}

/**
 * One participant of a channel, or a spectator of its shares, and every mediasoup object it
 * owns: its transports, and through them its producers and consumers. Closing the peer closes
 * them all, as closing a mediasoup transport closes what it carries.
 */
export class Peer {
  /** Peer id, unique on this node. */
  readonly id: string;
  /** Who the peer is and what it may do. */
  readonly identity: Identity;
  /** RTP capabilities of the peer's device, used for every consumer. */
  readonly rtpCapabilities: types.RtpCapabilities;
  /** When true, consumers resume without waiting for the client (in-process RTP clients). */
  readonly autoResume: boolean;
  /** Where the peer's notifications go. */
  readonly sink: PeerSink;
  /** A spectator receives the channel's shares only, sends nothing and is in no roster. */
  readonly spectator: boolean;
  /** Transport on the core router that carries the peer's producers. */
  sendTransport: types.Transport | undefined;
  /** Transport on the peer's edge router that carries its consumers. */
  recvTransport: types.Transport | undefined;
  /** The edge router the peer receives from, once it has a receive transport. */
  edge: Edge | undefined;
  /** Consumers the peer is expected to open on its edge, reserved when it was admitted. */
  reservedConsumers = 0;
  /** The peer's producers by id. */
  readonly producers = new Map<string, types.Producer>();
  /** True while a produce request of the peer is in flight. */
  producing = false;
  /** The peer's consumers by id. */
  readonly consumers = new Map<string, PeerConsumer>();
  /** Producers the peer consumes or is about to, so none is consumed twice. */
  readonly consumedProducerIds = new Set<string>();
  /** Set by the peer itself (its producer is paused). */
  muted = false;
  /** Set by the peer itself (every consumer paused). */
  deafened = false;
  /** Set by a moderator; the peer cannot unmute while it holds. An account's mute outlives it. */
  serverMuted: boolean;
  /** Standing in the channel: moderators act only on lower ranks. */
  readonly rank: number;
  /** True once the peer left or its channel closed. */
  closed = false;
  /** The peer's link as its reports and mediasoup show it. */
  readonly link = new PeerLink();
  /** The Opus bitrate level of the peer's microphone, adapted to its link. */
  readonly opus = new OpusAdaptation();
  // Told when the layers the peer wants of a share may have changed.
  readonly #onShareDemand: (producerId: string) => void;

  constructor(options: {
    id: string;
    identity: Identity;
    rtpCapabilities: types.RtpCapabilities;
    autoResume: boolean;
    sink: PeerSink;
    onShareDemand: (producerId: string) => void;
  }) {
    this.id = options.id;
    this.identity = options.identity;
    this.rtpCapabilities = options.rtpCapabilities;
    this.autoResume = options.autoResume;
    this.sink = options.sink;
    this.spectator = options.identity.spectator ?? false;
    this.serverMuted = options.identity.serverMuted ?? false;
    this.muted = this.serverMuted;
    this.rank = rankOf(options.identity);
    this.#onShareDemand = options.onShareDemand;
  }

  /** True while the peer shares a screen. */
  get sharing(): boolean {
    return [...this.producers.values()].some((producer) => sourceOf(producer) === 'screen');
  }

  /** The public view sent to other participants. */
  toParticipant(): Participant {
    return {
      id: this.id,
      displayName: this.identity.displayName,
      muted: this.muted,
      deafened: this.deafened,
      serverMuted: this.serverMuted,
      guest: this.identity.guest,
      rank: this.rank,
      sharing: this.sharing,
      ...(this.link.quality ? { quality: this.link.quality } : {}),
    };
  }

  /** Consumers this peer weighs on its edge: what it opened, or what it reserved if more. */
  get edgeLoad(): number {
    return Math.max(this.consumers.size, this.reservedConsumers);
  }

  /**
   * Takes a new consumer of `producer`: the client hears of it, of its layers and of its end,
   * and it flows once the client is ready.
   */
  async adoptConsumer(consumer: types.Consumer, producer: types.Producer): Promise<void> {
    const entry: PeerConsumer = { consumer, clientReady: this.autoResume, hidden: false };
    this.consumers.set(consumer.id, entry);
    consumer.observer.once('close', () => {
      this.consumers.delete(consumer.id);
      this.consumedProducerIds.delete(producer.id);
      if (consumer.kind === 'video') this.#onShareDemand(producer.id);
    });
    consumer.on('producerclose', () => {
      this.consumers.delete(consumer.id);
      this.sink.notify('consumerClosed', { consumerId: consumer.id });
    });
    if (consumer.type === 'simulcast') {
      consumer.on('layerschange', (layers) =>
        this.sink.notify('consumerLayers', {
          consumerId: consumer.id,
          spatialLayer: layers?.spatialLayer ?? null,
          preferredSpatialLayer: consumer.preferredLayers?.spatialLayer ?? 0,
        }),
      );
    }
    await this.#applyFlow(entry);
    this.sink.notify('newConsumer', {
      consumerId: consumer.id,
      producerId: producer.id,
      peerId: String(producer.appData.peerId),
      kind: consumer.kind,
      source: sourceOf(producer),
      rtpParameters: consumer.rtpParameters,
    });
  }

  /** Closes the peer's consumer of a producer, if any, and tells its client. */
  dropConsumerOf(producerId: string): void {
    for (const { consumer } of this.consumers.values()) {
      if (consumer.producerId !== producerId) continue;
      consumer.close();
      this.sink.notify('consumerClosed', { consumerId: consumer.id });
    }
  }

  /** Resumes a consumer once the client is ready, unless the peer is deafened. */
  async resumeConsumer(consumerId: string): Promise<void> {
    const entry = this.#consumer(consumerId);
    entry.clientReady = true;
    await this.#applyFlow(entry);
  }

  /** Pauses a video consumer its viewer does not show, or resumes it. */
  async setConsumerHidden(consumerId: string, hidden: boolean): Promise<void> {
    const entry = this.#consumer(consumerId);
    if (entry.consumer.kind !== 'video') {
      throw new AppError('bad_request', 'audio consumers pause with deafen');
    }
    entry.hidden = hidden;
    await this.#applyFlow(entry);
  }

  /** Sets the simulcast layer the peer wants of a share's consumer. */
  async setConsumerPreferredLayers(
    consumerId: string,
    layers: { spatialLayer: number; temporalLayer?: number },
  ): Promise<void> {
    const { consumer } = this.#consumer(consumerId);
    if (consumer.type !== 'simulcast') {
      throw new AppError('bad_request', 'only screen-share consumers have layers');
    }
    try {
      await consumer.setPreferredLayers(layers);
    } catch (error) {
      if (consumer.closed) throw new AppError('not_found', `consumer ${consumerId} closed`);
      throw error;
    }
    this.#onShareDemand(consumer.producerId);
  }

  /** Deafens the peer (pauses its audio consumers) or undeafens it. */
  async setDeafened(deafened: boolean): Promise<void> {
    this.deafened = deafened;
    await Promise.all([...this.consumers.values()].map((entry) => this.#applyFlow(entry)));
  }

  /** The highest simulcast layer the peer receives of a share: -1 when it shows none. */
  wantedLayerOf(producerId: string): number {
    let highest = -1;
    for (const { consumer } of this.consumers.values()) {
      if (consumer.producerId !== producerId || consumer.paused || consumer.closed) continue;
      highest = Math.max(
        highest,
        consumer.preferredLayers?.spatialLayer ?? Number.MAX_SAFE_INTEGER,
      );
    }
    return highest;
  }

  /** Closes the peer: its transports, and with them every producer and consumer. */
  close(): void {
    this.closed = true;
    this.sendTransport?.close();
    this.recvTransport?.close();
    this.sendTransport = undefined;
    this.recvTransport = undefined;
    this.producers.clear();
    this.consumers.clear();
    this.consumedProducerIds.clear();
  }

  // A consumer flows once its client is ready, unless it is audio and the peer deafened, or
  // video its viewer hides.
  async #applyFlow(entry: PeerConsumer): Promise<void> {
    const { consumer } = entry;
    const flows =
      entry.clientReady && !entry.hidden && !(consumer.kind === 'audio' && this.deafened);
    try {
      if (flows) await consumer.resume();
      else await consumer.pause();
    } catch (error) {
      // Its producer closed while the request was on its way: the client hears consumerClosed.
      if (consumer.closed) return;
      throw error;
    }
    if (consumer.kind === 'video') this.#onShareDemand(consumer.producerId);
  }

  #consumer(consumerId: string): PeerConsumer {
    const entry = this.consumers.get(consumerId);
    if (!entry) throw new AppError('not_found', `no consumer ${consumerId}`);
    return entry;
  }
}
