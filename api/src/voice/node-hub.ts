import type { WebSocket } from 'ws';
import {
  apiToNodeMessageSchema,
  describeZodError,
  nodeToApiMessageSchema,
  type ApiToNodeMessage,
  type NodeToApiMessage,
  type Participant,
  type ReplayedSession,
  type RtpCapabilities,
} from '@hearth/protocol';
import { keepAlive, type Logger } from '@hearth/server-common';
import type { ClusterBus } from '../cluster/bus';
import type { SessionHistory } from '../db/session-history';
import type { PresenceStore } from './presence';
import type { ShareEvent } from './share-events';
import type { PlacementService } from '../nodes/placement-service';
import {
  INGEST_MESSAGE_TYPES,
  type IngestMessageHandler,
  type IngestToApiMessage,
} from '../streams/ingest-messages';
import { NodeNotRegisteredError } from '../nodes/registry';
import { DEFAULT_SESSION_REAP_INTERVAL_MS, GoneNodeReaper } from './gone-node-reaper';
import {
  ClusterSecret,
  NodeConnection,
  parseNodeFrame,
  type NodeConnectionDeps,
  type NodeTransport,
} from './node-connection';

/** Bus topic every api instance listens on to reach the nodes connected to it. */
const BROADCAST_TOPIC = 'nodes.broadcast';
/** Bus topic of one node: the api instance holding its connection forwards what arrives. */
const nodeTopic = (nodeId: string) => `node.${nodeId}`;

// A node that has not registered this long after connecting is dropped.
const REGISTER_TIMEOUT_MS = 5000;
// Sessions one node may replay: far above what a node serves, low enough to bound the buffer.
const MAX_REPLAYED_SESSIONS = 100_000;

/** What the rest of the api learns from the voice nodes' reports, besides presence and history. */
export interface VoiceSessionObserver {
  /** A join token admitted a participant: the seat reserved for it is taken. */
  tokenAdmitted(tokenId: string): void;
  /** A moderator muted or unmuted an account's participant in a channel. */
  serverMuteChanged(channel: string, userId: string, muted: boolean): void;
  /** A participant of the voice node `nodeId`, connected to this instance, started or stopped sharing. */
  shareChanged(event: ShareEvent, nodeId: string): void;
  /** A voice node's spectators of a channel changed. */
  audienceChanged(nodeId: string, channel: string, spectators: number): void;
  /** A node ended its part of a share bridge, or could not start it. */
  bridgeClosed(bridgeId: string, reason: string): void;
}

/**
 * Where voice nodes connect to the control plane. It registers them with placement, records
 * their heartbeats, relays cascade messages between the nodes of a channel (through the cluster
 * bus, so the two nodes may be connected to different api instances), and passes placement
 * changes and node failures on to every node.
 */
export class NodeHub {
  readonly #placement: PlacementService;
  readonly #bus: ClusterBus;
  readonly #logger: Logger;
  readonly #clusterSecret: ClusterSecret;
  readonly #ingest: IngestMessageHandler | undefined;
  readonly #joinTokenKey: string | undefined;
  readonly #reaper: GoneNodeReaper;
  readonly #connectionDeps: NodeConnectionDeps;
  #observer: VoiceSessionObserver | undefined;
  readonly #connections = new Set<NodeConnection>();
  #rtpCapabilities: RtpCapabilities | undefined;
  #unsubscribe: (() => Promise<void>) | undefined;
  #closed = false;

  private constructor(options: {
    placement: PlacementService;
    bus: ClusterBus;
    logger: Logger;
    clusterSecret: string;
    sessions: SessionHistory;
    presence: PresenceStore;
    ingest?: IngestMessageHandler;
    joinTokenKey?: string;
  }) {
    this.#placement = options.placement;
    this.#bus = options.bus;
    this.#logger = options.logger.child({ component: 'node-hub' });
    this.#clusterSecret = new ClusterSecret(options.clusterSecret);
    this.#ingest = options.ingest;
    this.#joinTokenKey = options.joinTokenKey;
    this.#reaper = new GoneNodeReaper({
      placement: options.placement,
      history: options.sessions,
      presence: options.presence,
      ingest: options.ingest,
      logger: this.#logger,
      connectedNodeIds: () => this.#connectedNodeIds(),
    });
    this.#connectionDeps = {
      history: options.sessions,
      presence: options.presence,
      logger: this.#logger,
      shareChanged: (event, nodeId) => this.#observer?.shareChanged(event, nodeId),
    };
  }

  /**
   * Creates the hub and starts passing placement events on to connected nodes. It closes the
   * session history of nodes marked down, and every `reapIntervalMs` (30 s by default; the first
   * pass once nodes still alive have reconnected after an api restart: 5 s, their longest wait
   * between two attempts, plus two node timeouts) that of nodes the registry does not list as up:
   * nodes that died while no api instance watched them.
   */
  static async start(options: {
    placement: PlacementService;
    bus: ClusterBus;
    logger: Logger;
    clusterSecret: string;
    sessions: SessionHistory;
    presence: PresenceStore;
    /** Answers ingest nodes; without it, their messages are refused. */
    ingest?: IngestMessageHandler;
    /** The Ed25519 public key (base64url) voice nodes check join tokens with. */
    joinTokenKey?: string;
    reapIntervalMs?: number;
  }): Promise<NodeHub> {
    const hub = new NodeHub(options);
    hub.#unsubscribe = await options.bus.subscribe(BROADCAST_TOPIC, (message) =>
      hub.#deliverToAll(message),
    );
    const events = options.placement.events;
    events.on('nodeDown', ({ nodeId, at }) => {
      hub.#deliverLocally({ type: 'nodeDown', nodeId });
      void hub.#reaper.nodeDown(nodeId, at);
    });
    events.on('assignmentChanged', ({ assignment }) =>
      hub.#deliverLocally({ type: 'assignment', assignment }),
    );
    events.on('released', ({ channel }) =>
      hub.#deliverLocally({ type: 'closeChannel', channel, reason: 'released' }),
    );
    hub.#reaper.start(options.reapIntervalMs ?? DEFAULT_SESSION_REAP_INTERVAL_MS);
    return hub;
  }

  /**
   * Closes the open history rows and streams of nodes the registry does not list as up, seen
   * before this pass began; resolves with the nodes it closed rows of. Safe on several instances
   * at once.
   */
  reapSessions(): Promise<string[]> {
    return this.#reaper.reap();
  }

  /** RTP capabilities reported by the nodes (all share one codec list), once one registered. */
  get rtpCapabilities(): RtpCapabilities | undefined {
    return this.#rtpCapabilities;
  }

  /** Tells every node, through every api instance, to close a channel. */
  async closeChannel(channel: string, reason: 'deleted' | 'released'): Promise<void> {
    await this.#bus.publish(BROADCAST_TOPIC, { type: 'closeChannel', channel, reason });
  }

  /**
   * Removes a user's live participants from a channel (or from every channel for `*`) on every
   * node, through every api instance: a moderator kicked or banned them.
   */
  async removeUser(
    scope: string,
    userId: string,
    reason: 'kicked' | 'banned',
    message: string,
  ): Promise<void> {
    await this.#bus.publish(BROADCAST_TOPIC, {
      type: 'removeUser',
      scope,
      userId,
      reason,
      message,
    });
  }

  /** Tells `observer` of admitted tokens and server mutes from now on. */
  observe(observer: VoiceSessionObserver): void {
    this.#observer = observer;
  }

  /**
   * Takes a node's control WebSocket. The node proves it belongs to the cluster with
   * `Authorization: Cluster <secret>`; anything else is closed with 4401.
   */
  acceptSocket(socket: WebSocket, authorization: string | undefined): void {
    if (!this.#clusterSecret.isPresentedIn(authorization)) {
      socket.close(4401, 'cluster secret required');
      return;
    }
    keepAlive(socket, 10_000);
    const connection = this.#connect({
      deliver: (message) => {
        if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(message));
      },
      close: (code, reason) => socket.close(code, reason),
    });
    const registerTimer = setTimeout(() => {
      if (!connection.nodeId) connection.close(4408, 'register first');
    }, REGISTER_TIMEOUT_MS);
    socket.on('message', (raw, isBinary) => {
      const message = isBinary ? undefined : parseNodeFrame(raw.toString());
      if (!message?.ok) {
        this.#logger.warn({ node: connection.nodeId, problem: message?.error }, 'bad node message');
        return;
      }
      const parsed = message.value;
      void connection.inbox.push(() => this.#handle(connection, parsed));
    });
    socket.once('close', () => {
      clearTimeout(registerTimer);
      this.#disconnect(connection);
    });
  }

  /**
   * Connects a node running in this process: `send` goes to the hub, and what the hub delivers
   * goes to `receive`. Returns the node's sending function.
   */
  attachLocal(receive: (message: ApiToNodeMessage) => void): (message: NodeToApiMessage) => void {
    const connection = this.#connect({
      deliver: (message) => queueMicrotask(() => receive(message)),
      close: () => this.#disconnect(connection),
    });
    return (message) => {
      const parsed = nodeToApiMessageSchema.safeParse(message);
      if (!parsed.success) {
        this.#logger.error({ problem: describeZodError(parsed.error) }, 'bad local node message');
        return;
      }
      const valid = parsed.data;
      void connection.inbox.push(() => this.#handle(connection, valid));
    };
  }

  /** Drops every connection and stops listening to the bus. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#reaper.close();
    for (const connection of [...this.#connections]) {
      connection.close(1001, 'api stopping');
      this.#disconnect(connection);
    }
    await this.#unsubscribe?.();
  }

  async #handle(connection: NodeConnection, message: NodeToApiMessage): Promise<void> {
    // Messages still arriving while the api shuts down find the registry closed; they are moot.
    if (this.#closed) return;
    try {
      if (message.type === 'register') {
        await this.#register(connection, message);
        return;
      }
      const nodeId = connection.nodeId;
      if (!nodeId) {
        connection.close(4409, 'register first');
        return;
      }
      if (INGEST_MESSAGE_TYPES.has(message.type)) {
        await this.#handleIngest(connection, nodeId, message as IngestToApiMessage);
        return;
      }
      switch (message.type) {
        case 'deregister':
          this.#logger.info({ node: nodeId }, 'node deregistered');
          await this.#placement.deregister(nodeId);
          return;
        case 'heartbeat':
          connection.sessions.resyncIfStale(nodeId);
          // In the background: a presence store still reconnecting must not hold up heartbeats
          // behind it until the node is marked down.
          connection.presence.sync(nodeId);
          await this.#placement.heartbeat(nodeId, message.load).catch((error: unknown) => {
            // Silent too long (a stall, a cut link): it was marked down and its channels moved.
            // It comes back as a fresh node with whatever it still serves.
            if (!(error instanceof NodeNotRegisteredError)) throw error;
            connection.deliver({ type: 'registerAgain' });
          });
          return;
        case 'relay':
          await this.#bus.publish(nodeTopic(message.to), {
            type: 'relay',
            from: nodeId,
            message: message.message,
          });
          return;
        case 'sessionOpened':
          if (message.tokenId !== undefined) this.#observer?.tokenAdmitted(message.tokenId);
          connection.sessions.open(nodeId, message);
          return;
        case 'participantChanged': {
          const { channel, participant } = message;
          // Told after presence has it, so a page hearing of the share reads it there too.
          try {
            await connection.presence.upsert(nodeId, channel, participant);
          } finally {
            connection.shares.follow(nodeId, channel, participant);
          }
          this.#followServerMute(connection, channel, participant);
          return;
        }
        case 'sessionClosed':
          connection.serverMuted.delete(message.peerId);
          connection.sessions.close(message.peerId);
          try {
            await connection.presence.remove(nodeId, message.peerId);
          } finally {
            connection.shares.end(nodeId, message.peerId);
          }
          return;
        case 'channelClosed':
          await this.#placement.leaveChannel(message.channel, nodeId);
          return;
        case 'replay':
          await this.#receiveReplay(connection, nodeId, message);
          return;
        // A bridge's set-up passes from its voice node to its ingest node and back, through
        // whichever api instances they are connected to.
        case 'bridgeOffer': {
          const { route, offer, sourceAddress } = message;
          if (route.voiceNodeId !== nodeId) throw new Error('a bridge offer for another node');
          await this.sendToNode(route.ingestNodeId, {
            type: 'startBridge',
            route,
            offer,
            sourceAddress,
          });
          return;
        }
        case 'bridgeAnswer': {
          const { route, answer } = message;
          if (route.ingestNodeId !== nodeId) throw new Error('a bridge answer for another node');
          await this.sendToNode(route.voiceNodeId, {
            type: 'connectBridge',
            bridgeId: route.bridgeId,
            answer,
          });
          return;
        }
        case 'bridgeClosed':
          this.#observer?.bridgeClosed(message.bridgeId, message.reason);
          return;
        case 'audience':
          this.#observer?.audienceChanged(nodeId, message.channel, message.spectators);
          return;
        case 'links':
          await connection.presence.putLinks(nodeId, message.channel, message.links);
          return;
      }
    } catch (error) {
      this.#logger.error(
        { err: error, node: connection.nodeId, type: message.type },
        'node message failed',
      );
    }
  }

  async #handleIngest(
    connection: NodeConnection,
    nodeId: string,
    message: IngestToApiMessage,
  ): Promise<void> {
    if (connection.kind !== 'ingest' || !this.#ingest) {
      this.#logger.warn(
        { node: nodeId, type: message.type },
        'ingest message from a non-ingest node',
      );
      return;
    }
    await this.#ingest.handle(nodeId, message, (reply) => connection.deliver(reply));
  }

  /** Sends a message to a node through the api instance it is connected to, wherever that is. */
  async sendToNode(nodeId: string, message: ApiToNodeMessage): Promise<void> {
    await this.#bus.publish(nodeTopic(nodeId), message);
  }

  /** Tells every ingest node, through every api instance, that a stream key is revoked. */
  async revokeKey(keyId: string): Promise<void> {
    await this.#bus.publish(BROADCAST_TOPIC, { type: 'keyRevoked', keyId });
  }

  async #register(
    connection: NodeConnection,
    message: Extract<NodeToApiMessage, { type: 'register' }>,
  ): Promise<void> {
    const { registration } = message;
    if (connection.nodeId !== undefined && connection.nodeId !== registration.id) {
      connection.close(4409, 'a connection serves one node');
      return;
    }
    await this.#placement.register(registration);
    this.#rtpCapabilities ??= message.rtpCapabilities;
    if (connection.nodeId === undefined) {
      connection.nodeId = registration.id;
      connection.kind = registration.kind;
      connection.unsubscribe = await this.#bus.subscribe(nodeTopic(registration.id), (relayed) =>
        this.#deliverTo(connection, relayed),
      );
    }
    // The node replays its live sessions right after each register.
    connection.replaying = [];
    connection.deliver({
      type: 'registered',
      nodeId: registration.id,
      ...(registration.kind === 'voice' && this.#joinTokenKey !== undefined
        ? { joinTokenKey: this.#joinTokenKey }
        : {}),
    });
    this.#logger.info({ node: registration.id, limits: registration.limits }, 'node registered');
  }

  async #receiveReplay(
    connection: NodeConnection,
    nodeId: string,
    message: Extract<NodeToApiMessage, { type: 'replay' }>,
  ): Promise<void> {
    const replaying = connection.replaying;
    if (!replaying) {
      this.#logger.warn({ node: nodeId }, 'a replay without a register before it; ignored');
      return;
    }
    if (replaying.length + message.sessions.length > MAX_REPLAYED_SESSIONS) {
      connection.replaying = undefined;
      this.#logger.error({ node: nodeId }, 'the replay is too large; ignored');
      return;
    }
    replaying.push(...message.sessions);
    if (!message.done) return;
    connection.replaying = undefined;
    await this.#applyReplay(connection, nodeId, replaying);
  }

  // The replay is the truth about the node: its history rows and its presence become exactly
  // what it serves now. History is written in the background, as for single sessions.
  async #applyReplay(
    connection: NodeConnection,
    nodeId: string,
    sessions: ReplayedSession[],
  ): Promise<void> {
    connection.shares.replaceAll(nodeId, sessions);
    connection.sessions.replaceLive(nodeId, sessions);
    connection.presence.replaceAll(nodeId, sessions);
    this.#logger.info({ node: nodeId, sessions: sessions.length }, 'node replayed its sessions');
  }

  // The rest of the api hears of each change of a participant's server mute once, if the
  // participant has an account.
  #followServerMute(connection: NodeConnection, channel: string, participant: Participant): void {
    const userId = connection.sessions.userIdOf(participant.id);
    if (
      userId === undefined ||
      connection.serverMuted.has(participant.id) === participant.serverMuted
    ) {
      return;
    }
    if (participant.serverMuted) connection.serverMuted.add(participant.id);
    else connection.serverMuted.delete(participant.id);
    this.#observer?.serverMuteChanged(channel, userId, participant.serverMuted);
  }

  #connect(transport: NodeTransport): NodeConnection {
    const connection = new NodeConnection(transport, this.#connectionDeps);
    this.#connections.add(connection);
    return connection;
  }

  *#connectedNodeIds(): Iterable<string> {
    for (const connection of this.#connections) {
      if (connection.nodeId !== undefined) yield connection.nodeId;
    }
  }

  #disconnect(connection: NodeConnection): void {
    if (!this.#connections.delete(connection)) return;
    // The node is gone or cut off: its participants' sessions end now.
    connection.sessions.closeAll();
    void connection.unsubscribe?.();
    if (connection.nodeId) this.#logger.warn({ node: connection.nodeId }, 'node disconnected');
    // An api instance that stops drops its nodes on purpose; they reconnect elsewhere and replay.
    if (connection.kind === 'ingest' && connection.nodeId && !this.#closed) {
      const nodeId = connection.nodeId;
      this.#ingest?.disconnected(nodeId, new Date()).catch((error: unknown) => {
        this.#logger.error(
          { err: error, node: nodeId },
          'ending the streams of a lost node failed',
        );
      });
    }
  }

  #deliverTo(connection: NodeConnection, message: unknown): void {
    const parsed = apiToNodeMessageSchema.safeParse(message);
    if (!parsed.success) {
      this.#logger.error({ problem: describeZodError(parsed.error) }, 'bad message on the bus');
      return;
    }
    connection.deliver(parsed.data);
  }

  #deliverToAll(message: unknown): void {
    for (const connection of this.#connections) {
      if (connection.nodeId && connection.concerns(message)) this.#deliverTo(connection, message);
    }
  }

  // Placement events already reach every api instance through the bus, so each instance tells
  // only the nodes connected to it.
  #deliverLocally(message: ApiToNodeMessage): void {
    for (const connection of this.#connections) {
      if (connection.nodeId && connection.concerns(message)) connection.deliver(message);
    }
  }
}
