import { randomUUID } from 'node:crypto';
import type { types } from 'mediasoup';
import type { CascadeMessage, Participant, PipeEndpoint } from '@hearth/protocol';
import { SerialQueue, type Logger } from '@hearth/server-common';
import type { Channel } from './channel';
import { sourceOf } from './sources';
import type { ChannelManager } from './channel-manager';

/** Sends a message to another node of a channel; the api relays it. */
export type CascadeSend = (to: string, message: CascadeMessage) => void;

// One link joins this node's part of a channel to another node's part: a PipeTransport pair over
// which producers flow both ways, plus the roster of who is where. An edge node has one link, to
// the channel's core node; the core has one per edge node and forwards between them.
class Link {
  readonly id: string;
  readonly channel: Channel;
  readonly remoteNodeId: string;
  /** True on the edge side, whose link leads to the core. */
  readonly toCore: boolean;
  /** Work on the link runs in message order, each step after the previous one settled. */
  readonly queue = new SerialQueue();
  /** Pipe consumers sending our producers over the link, by producer id. */
  readonly outgoing = new Map<string, types.Consumer>();
  /** Pipe producers receiving the other side's producers, by producer id. */
  readonly incoming = new Map<string, types.Producer>();
  transport: types.PipeTransport | undefined;
  closed = false;

  constructor(id: string, channel: Channel, remoteNodeId: string, toCore: boolean) {
    this.id = id;
    this.channel = channel;
    this.remoteNodeId = remoteNodeId;
    this.toCore = toCore;
  }
}

/**
 * Spans channels across voice-sfu nodes. Every node serving a channel keeps all of its producers
 * on its own core router: local ones, and the others piped in over PipeTransports (RTX and SRTP
 * on). So each node serves its listeners, observes speakers and mirrors pause, resume and close
 * on its own, and the nodes only exchange pipe endpoints, producer announcements and the roster,
 * relayed by the api.
 */
export class Cascade {
  readonly #nodeId: string;
  readonly #channels: ChannelManager;
  readonly #send: CascadeSend;
  readonly #logger: Logger;
  readonly #links = new Map<string, Link>();
  readonly #coreOf = new Map<string, string>();
  readonly #inboxes = new Map<string, SerialQueue>();

  constructor(options: {
    nodeId: string;
    channels: ChannelManager;
    send: CascadeSend;
    logger: Logger;
  }) {
    this.#nodeId = options.nodeId;
    this.#channels = options.channels;
    this.#send = options.send;
    this.#logger = options.logger.child({ component: 'cascade' });
    this.#channels.onOpened((channel) => this.#follow(channel));
  }

  /** Links currently open, for tests and status. */
  links(): { id: string; channel: string; remoteNodeId: string; toCore: boolean }[] {
    return [...this.#links.values()].map(({ id, channel, remoteNodeId, toCore }) => ({
      id,
      channel: channel.name,
      remoteNodeId,
      toCore,
    }));
  }

  /**
   * Records which node holds a channel's core, from a join token or a new assignment. An edge
   * whose link leads elsewhere moves it to the new core.
   */
  setCore(channelName: string, coreNodeId: string): void {
    this.#coreOf.set(channelName, coreNodeId);
    const channel = this.#channels.get(channelName);
    if (!channel || channel.closed) return;
    for (const link of this.#linksOf(channelName)) {
      if (link.toCore && link.remoteNodeId !== coreNodeId) this.#closeLink(link, 'core moved');
    }
    this.#linkToCore(channel);
  }

  /**
   * Handles a message another node sent, in the order that node sent them; messages for unknown
   * links are dropped.
   */
  receive(from: string, message: CascadeMessage): void {
    const key = `${from}/${message.channel}`;
    let inbox = this.#inboxes.get(key);
    if (!inbox) {
      inbox = new SerialQueue();
      this.#inboxes.set(key, inbox);
    }
    void inbox.push(() => this.#receiveInOrder(from, message));
  }

  async #receiveInOrder(from: string, message: CascadeMessage): Promise<void> {
    if (message.type === 'linkOffer') {
      await this.#acceptOffer(from, message);
      return;
    }
    const link = this.#links.get(message.linkId);
    if (!link || link.remoteNodeId !== from || link.channel.name !== message.channel) {
      this.#logger.debug({ from, type: message.type, link: message.linkId }, 'unknown link');
      return;
    }
    if (message.type === 'linkClosed') {
      this.#closeLink(link, undefined);
      return;
    }
    this.#run(link, message.type, () => this.#apply(link, message));
  }

  /** Drops every link to a node that stopped answering. */
  nodeDown(nodeId: string): void {
    for (const link of [...this.#links.values()]) {
      if (link.remoteNodeId === nodeId) this.#closeLink(link, undefined);
    }
  }

  #follow(channel: Channel): void {
    const name = channel.name;
    channel.events.on('producerOpened', (producer) => {
      for (const link of this.#linksOf(name)) {
        if (producer.appData.linkId !== link.id) {
          this.#run(link, 'send producer', () => this.#sendProducer(link, producer));
        }
      }
    });
    channel.events.on('participantUpserted', (participant, origin) => {
      for (const link of this.#linksOf(name)) {
        if (origin !== link.id)
          this.#post(link, { type: 'participantUpserted', participant: this.#remote(participant) });
      }
    });
    channel.events.on('participantRemoved', (peerId, origin) => {
      for (const link of this.#linksOf(name)) {
        if (origin !== link.id) this.#post(link, { type: 'participantRemoved', peerId });
      }
    });
    // An edge without local participants or spectators has nothing left to serve: it leaves.
    channel.events.on('peerLeft', () => {
      if (channel.closed || channel.peerCount > 0) return;
      for (const link of this.#linksOf(name)) if (link.toCore) this.#closeLink(link, 'empty');
    });
    channel.events.on('remoteServerMuteRequested', (peerId, muted, linkId) => {
      const link = this.#links.get(linkId);
      if (link) this.#post(link, { type: 'serverMute', peerId, muted });
    });
    channel.events.on('remoteShareStopRequested', (peerId, message, linkId) => {
      const link = this.#links.get(linkId);
      if (link) this.#post(link, { type: 'stopShare', peerId, message });
    });
    channel.events.on('shareWish', (producerId, spatialLayer, linkId) => {
      const link = this.#links.get(linkId);
      if (link) this.#post(link, { type: 'shareWish', producerId, spatialLayer });
    });
    channel.events.once('closed', () => {
      for (const link of this.#linksOf(name)) this.#closeLink(link, 'channel closed');
      this.#coreOf.delete(name);
    });
    this.#linkToCore(channel);
  }

  #linkToCore(channel: Channel): void {
    const core = this.#coreOf.get(channel.name);
    if (core === undefined || core === this.#nodeId) return;
    if (this.#linksOf(channel.name).some((link) => link.toCore)) return;
    const link = this.#addLink(randomUUID(), channel, core, true);
    this.#run(link, 'open link', async () => {
      const transport = await channel.createPipeTransport(link.id);
      link.transport = transport;
      this.#post(link, { type: 'linkOffer', endpoint: endpointOf(transport) });
      await this.#sendState(link);
    });
  }

  async #acceptOffer(
    from: string,
    offer: Extract<CascadeMessage, { type: 'linkOffer' }>,
  ): Promise<void> {
    if (this.#links.has(offer.linkId)) return;
    const core = this.#coreOf.get(offer.channel);
    if (core !== undefined && core !== this.#nodeId) {
      // This node is not the hub: the offer went by an old assignment.
      this.#send(from, {
        type: 'linkClosed',
        channel: offer.channel,
        linkId: offer.linkId,
        reason: 'not the core node',
      });
      return;
    }
    let channel: Channel;
    try {
      channel = await this.#channels.open(offer.channel);
    } catch (error) {
      this.#logger.warn({ err: error, channel: offer.channel, from }, 'link refused');
      this.#send(from, {
        type: 'linkClosed',
        channel: offer.channel,
        linkId: offer.linkId,
        reason: 'the channel could not be opened',
      });
      return;
    }
    const link = this.#addLink(offer.linkId, channel, from, false);
    this.#run(link, 'accept link', async () => {
      const transport = await channel.createPipeTransport(link.id);
      link.transport = transport;
      await connect(transport, offer.endpoint);
      this.#post(link, { type: 'linkAnswer', endpoint: endpointOf(transport) });
      await this.#sendState(link);
    });
  }

  async #apply(
    link: Link,
    message: Exclude<CascadeMessage, { type: 'linkOffer' | 'linkClosed' }>,
  ): Promise<void> {
    const { channel } = link;
    switch (message.type) {
      case 'linkAnswer':
        if (link.transport) await connect(link.transport, message.endpoint);
        return;
      case 'producerOpened': {
        if (!link.transport || link.incoming.has(message.producerId)) return;
        const producer = await channel.openRemoteProducer(link.transport, link.id, message);
        link.incoming.set(producer.id, producer);
        producer.observer.once('close', () => link.incoming.delete(producer.id));
        return;
      }
      case 'producerPaused': {
        const producer = link.incoming.get(message.producerId);
        if (producer) await (message.paused ? producer.pause() : producer.resume());
        return;
      }
      case 'producerClosed':
        link.incoming.get(message.producerId)?.close();
        return;
      case 'roster': {
        const listed = new Set(message.participants.map((participant) => participant.id));
        for (const { participant, linkId } of channel.remoteParticipants()) {
          if (linkId === link.id && !listed.has(participant.id)) {
            channel.removeRemoteParticipant(participant.id);
          }
        }
        for (const participant of message.participants) {
          channel.upsertRemoteParticipant(participant, link.id);
        }
        return;
      }
      case 'participantUpserted':
        channel.upsertRemoteParticipant(message.participant, link.id);
        return;
      case 'participantRemoved':
        channel.removeRemoteParticipant(message.peerId);
        return;
      case 'serverMute': {
        const onward = this.#onward(link, message.peerId);
        if (onward)
          this.#post(onward, { type: 'serverMute', peerId: message.peerId, muted: message.muted });
        else await channel.applyServerMute(message.peerId, message.muted);
        return;
      }
      case 'stopShare': {
        const onward = this.#onward(link, message.peerId);
        if (onward) {
          this.#post(onward, {
            type: 'stopShare',
            peerId: message.peerId,
            message: message.message,
          });
        } else channel.applyStopShare(message.peerId, message.message);
        return;
      }
      case 'shareWish':
        if (link.outgoing.has(message.producerId))
          channel.shareWishedOver(message.producerId, link.id, message.spatialLayer);
        return;
    }
  }

  // The hub passes requests about a participant on towards the node serving it: the link it came
  // over, unless that is where the request came from (then it is served here).
  #onward(link: Link, peerId: string): Link | undefined {
    const remote = link.channel
      .remoteParticipants()
      .find((entry) => entry.participant.id === peerId);
    const onward = remote && this.#links.get(remote.linkId);
    return onward && onward !== link ? onward : undefined;
  }

  // What the other side needs to catch up: every producer and participant it did not send us.
  async #sendState(link: Link): Promise<void> {
    const { channel } = link;
    const participants = [
      ...channel.localParticipants(),
      ...channel
        .remoteParticipants()
        .filter((entry) => entry.linkId !== link.id)
        .map((entry) => entry.participant),
    ];
    this.#post(link, { type: 'roster', participants: participants.map((p) => this.#remote(p)) });
    for (const producer of channel.producers()) {
      if (producer.appData.linkId !== link.id) await this.#sendProducer(link, producer);
    }
  }

  async #sendProducer(link: Link, producer: types.Producer): Promise<void> {
    const transport = link.transport;
    if (!transport || link.closed || producer.closed || link.outgoing.has(producer.id)) return;
    const consumer = await transport.consume({ producerId: producer.id });
    if (link.closed) {
      consumer.close();
      return;
    }
    link.outgoing.set(producer.id, consumer);
    const shared = sourceOf(producer) === 'screen';
    consumer.observer.once('close', () => {
      link.outgoing.delete(producer.id);
      if (shared) link.channel.shareNoLongerSentOver(producer.id, link.id);
    });
    if (shared) link.channel.shareSentOver(producer.id, link.id);
    consumer.on('producerpause', () =>
      this.#post(link, { type: 'producerPaused', producerId: producer.id, paused: true }),
    );
    consumer.on('producerresume', () =>
      this.#post(link, { type: 'producerPaused', producerId: producer.id, paused: false }),
    );
    consumer.on('producerclose', () =>
      this.#post(link, { type: 'producerClosed', producerId: producer.id }),
    );
    this.#post(link, {
      type: 'producerOpened',
      producerId: producer.id,
      peerId: String(producer.appData.peerId),
      kind: consumer.kind,
      source: sourceOf(producer),
      rtpParameters: consumer.rtpParameters,
      paused: consumer.producerPaused,
    });
  }

  #addLink(id: string, channel: Channel, remoteNodeId: string, toCore: boolean): Link {
    const link = new Link(id, channel, remoteNodeId, toCore);
    this.#links.set(id, link);
    channel.hold();
    this.#logger.info(
      { channel: channel.name, link: id, remote: remoteNodeId, toCore },
      'link opened',
    );
    return link;
  }

  // Closing the transport closes what flowed over it: pipe producers end, so local listeners'
  // consumers close, and the hub tells the other edges those producers are gone.
  #closeLink(link: Link, notifyReason: string | undefined): void {
    if (link.closed) return;
    link.closed = true;
    this.#links.delete(link.id);
    if (notifyReason !== undefined) {
      this.#send(link.remoteNodeId, {
        type: 'linkClosed',
        channel: link.channel.name,
        linkId: link.id,
        reason: notifyReason,
      });
    }
    link.transport?.close();
    link.channel.removeRemoteParticipantsOf(link.id);
    this.#logger.info({ channel: link.channel.name, link: link.id }, 'link closed');
    if (
      !this.#linksOf(link.channel.name).some((other) => other.remoteNodeId === link.remoteNodeId)
    ) {
      this.#inboxes.delete(`${link.remoteNodeId}/${link.channel.name}`);
    }
    link.channel.release();
  }

  #linksOf(channelName: string): Link[] {
    return [...this.#links.values()].filter((link) => link.channel.name === channelName);
  }

  #post(link: Link, message: DistributiveOmit<CascadeMessage, 'channel' | 'linkId'>): void {
    if (link.closed) return;
    this.#send(link.remoteNodeId, {
      ...message,
      channel: link.channel.name,
      linkId: link.id,
    } as CascadeMessage);
  }

  #run(link: Link, step: string, work: () => Promise<void>): void {
    void link.queue
      .push(async () => {
        if (!link.closed) await work();
      })
      .catch((error: unknown) => {
        const level = link.closed || link.channel.closed ? 'debug' : 'error';
        this.#logger[level]({ err: error, link: link.id, step }, 'cascade step failed');
      });
  }

  #remote(participant: Participant): Participant & { nodeId: string } {
    return { ...participant, nodeId: this.#nodeId };
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

function endpointOf(transport: types.PipeTransport): PipeEndpoint {
  const srtp = transport.srtpParameters;
  if (!srtp) throw new Error('pipe transport without SRTP parameters');
  return { ip: transport.tuple.localIp, port: transport.tuple.localPort, srtp };
}

async function connect(transport: types.PipeTransport, endpoint: PipeEndpoint): Promise<void> {
  await transport.connect({
    ip: endpoint.ip,
    port: endpoint.port,
    srtpParameters: endpoint.srtp as types.SrtpParameters,
  });
}
