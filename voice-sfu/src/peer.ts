import type { types } from 'mediasoup';
import type { Participant, VoiceNotificationData, VoiceNotificationMethod } from '@hearth/protocol';
import { rankOf, type Identity } from '@hearth/server-common';
import type { Edge } from './edge';

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

/** One participant of a channel and every mediasoup object it owns. */
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

  constructor(options: {
    id: string;
    identity: Identity;
    rtpCapabilities: types.RtpCapabilities;
    autoResume: boolean;
    sink: PeerSink;
  }) {
    this.id = options.id;
    this.identity = options.identity;
    this.rtpCapabilities = options.rtpCapabilities;
    this.autoResume = options.autoResume;
    this.sink = options.sink;
    this.serverMuted = options.identity.serverMuted ?? false;
    this.muted = this.serverMuted;
    this.rank = rankOf(options.identity);
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
    };
  }

  /** Consumers this peer weighs on its edge: what it opened, or what it reserved if more. */
  get edgeLoad(): number {
    return Math.max(this.consumers.size, this.reservedConsumers);
  }

  /** Closes every transport of the peer, which closes its producers and consumers. */
  closeMedia(): void {
    this.sendTransport?.close();
    this.recvTransport?.close();
    this.sendTransport = undefined;
    this.recvTransport = undefined;
    this.producers.clear();
    this.consumers.clear();
    this.consumedProducerIds.clear();
  }
}
