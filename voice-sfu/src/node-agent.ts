import type { WebSocket } from 'ws';
import {
  MAX_REPORTED_LINKS,
  compareLinksWorstFirst,
  REPLAY_BATCH_SIZE,
  type ApiToNodeMessage,
  type JoinTokenClaims,
  type NodeLimits,
  type NodeLoad,
  type NodeToApiMessage,
  type ReplayedSession,
} from '@hearth/protocol';
import {
  AppError,
  type Identity,
  type JoinTokenVerifier,
  type Logger,
} from '@hearth/server-common';
import { BridgeControl } from './bridge-control';
import { Cascade } from './cascade';
import type { VoiceNode } from './voice-node';

/** Sends a message to the api over whatever connects the node to it. */
export type ControlSend = (message: NodeToApiMessage) => void;

/** Close codes a refused signaling WebSocket gets, matching the api's. */
const CLOSE_UNAUTHORIZED = 4401;
const CLOSE_FORBIDDEN = 4403;
/** WebSocket "try again later": the node cannot check tokens yet, or is flooded with joins. */
const CLOSE_TRY_AGAIN_LATER = 1013;
const BITRATE_INTERVAL_MS = 5000;
// Participants' links go to the api this often, for moderators to read.
const LINKS_INTERVAL_MS = 5000;

/**
 * Connects a voice node to the control plane: registers it, reports its load every heartbeat,
 * admits clients that hold a join token for this node, follows placement instructions, and
 * carries the cascade's messages to the other nodes of a channel.
 */
export class NodeAgent {
  /** The node id the api knows this node by. */
  readonly nodeId: string;
  /** Links of channels spanning this and other nodes. */
  readonly cascade: Cascade;
  readonly #node: VoiceNode;
  readonly #tokens: JoinTokenVerifier;
  readonly #signalingUrl: string | undefined;
  readonly #limits: NodeLimits;
  readonly #heartbeatMs: number;
  readonly #logger: Logger;
  // Who each local peer is, for the replay after a register: the channel's views lack the user id.
  readonly #sessions = new Map<string, { channel: string; userId: string; spectator: boolean }>();
  readonly #bridges: BridgeControl;
  #send: ControlSend | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #lastCpu: { at: number; seconds: number } | undefined;
  #bitrate: { at: number; kbps: Promise<number> } | undefined;
  #linksReportedAt = -Infinity;

  constructor(options: {
    node: VoiceNode;
    nodeId: string;
    /** Checks join tokens; it learns the api's key from the `registered` message. */
    tokens: JoinTokenVerifier;
    /** ws/wss URL clients connect to; none for a node inside the api, reached at its own path. */
    signalingUrl?: string;
    limits: NodeLimits;
    heartbeatMs: number;
  }) {
    this.#node = options.node;
    this.nodeId = options.nodeId;
    this.#tokens = options.tokens;
    this.#signalingUrl = options.signalingUrl;
    this.#limits = options.limits;
    this.#heartbeatMs = options.heartbeatMs;
    this.#logger = options.node.logger.child({ node: options.nodeId });
    this.cascade = new Cascade({
      nodeId: options.nodeId,
      channels: options.node.channels,
      send: (to, message) => this.#emit({ type: 'relay', to, message }),
      logger: this.#logger,
    });
    this.#bridges = new BridgeControl({
      channels: options.node.channels,
      send: (message) => this.#emit(message),
      sourceAddress: sourceAddressOf(options.node.config.listenIp),
      logger: this.#logger,
    });
    options.node.channels.onOpened((channel) => {
      channel.events.on('peerJoined', (peerId, identity) => {
        const spectator = identity.spectator === true;
        this.#sessions.set(peerId, { channel: channel.name, userId: identity.userId, spectator });
        if (spectator) this.#reportAudience(channel.name);
        this.#emit({
          type: 'sessionOpened',
          peerId,
          channel: channel.name,
          userId: identity.userId,
          displayName: identity.displayName,
          ...(identity.tokenId === undefined ? {} : { tokenId: identity.tokenId }),
        });
      });
      channel.events.on('participantUpserted', (participant, linkId) => {
        if (linkId === undefined) {
          this.#emit({ type: 'participantChanged', channel: channel.name, participant });
        }
      });
      channel.events.on('peerLeft', (peerId) => {
        const spectator = this.#sessions.get(peerId)?.spectator === true;
        this.#sessions.delete(peerId);
        this.#emit({ type: 'sessionClosed', peerId });
        if (spectator) this.#reportAudience(channel.name);
      });
      channel.events.once('closed', () =>
        this.#emit({ type: 'channelClosed', channel: channel.name }),
      );
    });
  }

  /** Starts talking to the api over a fresh connection: registers, then heartbeats. */
  attach(send: ControlSend): void {
    this.detach();
    this.#send = send;
    this.#register(send);
    void this.#beat();
    this.#heartbeat = setInterval(() => void this.#beat(), this.#heartbeatMs);
  }

  // Every register is followed by the replay of what the node serves: the api may have restarted
  // or marked this node down meanwhile, and rebuilds presence and history from it.
  #register(send: ControlSend): void {
    send({
      type: 'register',
      registration: {
        id: this.nodeId,
        kind: 'voice',
        signalingUrl: this.#signalingUrl,
        limits: this.#limits,
      },
      rtpCapabilities: this.#node.routerRtpCapabilities,
    });
    const sessions = this.liveSessions();
    for (let start = 0; start === 0 || start < sessions.length; start += REPLAY_BATCH_SIZE) {
      const batch = sessions.slice(start, start + REPLAY_BATCH_SIZE);
      send({ type: 'replay', sessions: batch, done: start + REPLAY_BATCH_SIZE >= sessions.length });
    }
    for (const channel of new Set([...this.#sessions.values()].map((s) => s.channel))) {
      this.#reportAudience(channel);
    }
  }

  // Tells the api how many spectators watch the channel's shares on this node: the handoff
  // policy moves a share's audience to HLS as it grows.
  #reportAudience(channel: string): void {
    let spectators = 0;
    for (const session of this.#sessions.values()) {
      if (session.channel === channel && session.spectator) spectators++;
    }
    this.#emit({ type: 'audience', channel, spectators });
  }

  /** The sessions this node serves now, with each participant's current state. */
  liveSessions(): ReplayedSession[] {
    return this.#node.channels.list().flatMap((channel) =>
      channel.localParticipants().flatMap((participant) => {
        const session = this.#sessions.get(participant.id);
        return session
          ? [{ peerId: participant.id, channel: channel.name, userId: session.userId, participant }]
          : [];
      }),
    );
  }

  /** Stops sending: the connection to the api is gone. */
  detach(): void {
    clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
    this.#send = undefined;
  }

  /** Handles one validated message from the api. */
  receive(message: ApiToNodeMessage): void {
    switch (message.type) {
      case 'registered':
        if (message.joinTokenKey !== undefined) this.#tokens.trust(message.joinTokenKey);
        this.#logger.info('registered with the api');
        return;
      case 'registerAgain':
        this.#logger.warn('the api lost this node; registering again');
        if (this.#send) this.#register(this.#send);
        return;
      case 'relay':
        this.cascade.receive(message.from, message.message);
        return;
      case 'assignment':
        if (this.#node.channels.get(message.assignment.channel)) {
          this.cascade.setCore(message.assignment.channel, message.assignment.core);
        }
        return;
      case 'nodeDown':
        this.cascade.nodeDown(message.nodeId);
        return;
      case 'closeChannel':
        this.#node.channels.close(message.channel, message.reason);
        return;
      case 'removeUser':
        for (const channel of this.#node.channels.list()) {
          if (message.scope === '*' || message.scope === channel.name) {
            channel.removeUser(message.userId, message.reason, message.message);
          }
        }
        return;
      case 'openBridge':
      case 'connectBridge':
      case 'closeBridge':
        void this.#bridges.receive(message);
        return;
    }
  }

  /**
   * Serves signaling on a WebSocket whose client presented a join token; a bad, expired or used
   * token closes it with 4401, a token for another node with 4403, and 1013 while the node cannot
   * check tokens.
   */
  acceptWithToken(socket: WebSocket, token: string | undefined): void {
    let identity: Identity;
    let claims: JoinTokenClaims;
    try {
      claims = this.#tokens.admit(token ?? '');
      if (claims.node !== this.nodeId) {
        throw new AppError('forbidden', 'the join token is for another node');
      }
      identity = {
        userId: claims.sub,
        displayName: claims.name,
        guest: claims.guest,
        grants: new Set(claims.grants),
        rank: claims.rank,
        serverMuted: claims.serverMuted,
        spectator: claims.spectator,
        maxSharePreset: claims.maxSharePreset,
        tokenId: claims.jti,
      };
    } catch (error) {
      const refused = error instanceof AppError;
      const code = !refused
        ? CLOSE_UNAUTHORIZED
        : error.code === 'forbidden'
          ? CLOSE_FORBIDDEN
          : error.code === 'unavailable'
            ? CLOSE_TRY_AGAIN_LATER
            : CLOSE_UNAUTHORIZED;
      socket.close(code, refused ? error.message : 'unauthorized');
      return;
    }
    this.#node.accept(socket, identity, async (channel) => {
      if (channel !== claims.channel) {
        throw new AppError('forbidden', `the join token is for channel ${claims.channel}`);
      }
      this.cascade.setCore(channel, claims.core);
      return identity;
    });
  }

  /** The node's load as it reports it. */
  async load(): Promise<NodeLoad> {
    const loads = this.#node.pool.loads();
    const channels = this.#node.channels.list();
    const sum = (pick: (load: (typeof loads)[number]) => number) =>
      loads.reduce((total, load) => total + pick(load), 0);
    const [cpu, bitrateKbps] = await Promise.all([this.#cpuShare(), this.#bitrateKbps()]);
    return {
      cpu,
      consumers: sum((load) => load.consumers),
      producers: sum((load) => load.producers),
      routers: sum((load) => load.routers),
      participants: channels.reduce((total, channel) => total + channel.peerCount, 0),
      channels: channels.length,
      bitrateKbps: Math.round(bitrateKbps),
      streams: 0,
      transcodeSpeed: 0,
      uploadBacklogBytes: 0,
    };
  }

  /** Stops heartbeats. */
  close(): void {
    this.detach();
  }

  #emit(message: NodeToApiMessage): void {
    if (this.#send) this.#send(message);
    else this.#logger.debug({ type: message.type }, 'not connected to the api; message dropped');
  }

  async #beat(): Promise<void> {
    try {
      const load = await this.load();
      this.#send?.({ type: 'heartbeat', load });
    } catch (error) {
      this.#logger.warn({ err: error }, 'load report failed');
    }
    const now = performance.now();
    if (now - this.#linksReportedAt >= LINKS_INTERVAL_MS) {
      this.#linksReportedAt = now;
      this.#reportLinks();
    }
  }

  // Moderators read each participant's link at the api: every few seconds, the worst first.
  #reportLinks(): void {
    for (const channel of this.#node.channels.list()) {
      const links = channel.links().sort(compareLinksWorstFirst).slice(0, MAX_REPORTED_LINKS);
      if (links.length > 0) this.#emit({ type: 'links', channel: channel.name, links });
    }
  }

  // Transport stats cost one request per transport, so bitrate is read every few seconds only.
  #bitrateKbps(): Promise<number> {
    const now = performance.now();
    if (!this.#bitrate || now - this.#bitrate.at > BITRATE_INTERVAL_MS) {
      const kbps = Promise.all(this.#node.channels.list().map((c) => c.bitrateKbps())).then(
        (rates) => rates.reduce((total, rate) => total + rate, 0),
      );
      this.#bitrate = { at: now, kbps };
    }
    return this.#bitrate.kbps;
  }

  // Mean busy share of the node's workers since the previous reading, from 0 to 1.
  async #cpuShare(): Promise<number> {
    const slots = this.#node.pool.slots;
    const usages = await Promise.all(slots.map((slot) => slot.worker.getResourceUsage()));
    const seconds = usages.reduce((sum, u) => sum + (u.ru_utime + u.ru_stime) / 1000, 0);
    const at = performance.now();
    const previous = this.#lastCpu;
    this.#lastCpu = { at, seconds };
    if (!previous || slots.length === 0) return 0;
    const elapsed = (at - previous.at) / 1000;
    if (elapsed <= 0) return 0;
    return Math.min(1, Math.max(0, (seconds - previous.seconds) / elapsed / slots.length));
  }
}

// The address the node's plain transports send from, as an ingest node's SDP names it: a node
// listening on every interface sends from the loopback one to a local ingest node.
function sourceAddressOf(listenIp: string): string {
  return /^\d+\.\d+\.\d+\.\d+$/.test(listenIp) && listenIp !== '0.0.0.0' ? listenIp : '127.0.0.1';
}
