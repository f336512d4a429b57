import { createHash, timingSafeEqual } from 'node:crypto';
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
import { SerialQueue, keepAlive, type Logger } from '@hearth/server-common';
import type { ClusterBus } from '../cluster/bus';
import type { LiveSession, SessionHistory } from '../db/session-history';
import type { PresenceStore } from './presence';
import type { ShareEvent } from './share-events';
import type { PlacementService } from '../nodes/placement-service';
import {
  INGEST_MESSAGE_TYPES,
  INGEST_ONLY_DELIVERIES,
  type IngestMessageHandler,
  type IngestToApiMessage,
} from '../streams/ingest-messages';
import { NodeNotRegisteredError } from '../nodes/registry';

/** Bus topic every api instance listens on to reach the nodes connected to it. */
const BROADCAST_TOPIC = 'nodes.broadcast';
/** Bus topic of one node: the api instance holding its connection forwards what arrives. */
const nodeTopic = (nodeId: string) => `node.${nodeId}`;

// A node that has not registered this long after connecting is dropped.
const REGISTER_TIMEOUT_MS = 5000;
// Sessions one node may replay: far above what a node serves, low enough to bound the buffer.
const MAX_REPLAYED_SESSIONS = 100_000;
/** Default period of the sweep that closes the sessions of nodes no longer up. */
export const DEFAULT_SESSION_REAP_INTERVAL_MS = 30_000;
// After a history write failed (the database was out), the node's history is written again
// whole, on a heartbeat, at most this often.
const RESYNC_INTERVAL_MS = 2000;

/** A voice session this connection's node reported: its history row, and when it was seen live. */
interface TrackedSession {
  readonly id: string;
  readonly seenAt: Date;
}

/** The api's end of one node's control connection, over a WebSocket or in process. */
interface NodeConnection {
  deliver(message: ApiToNodeMessage): void;
  close(code: number, reason: string): void;
  nodeId?: string;
  /** What the node registered as. */
  kind?: 'voice' | 'ingest';
  unsubscribe?: () => Promise<void>;
  /** Open voice sessions of the node's participants: history rows by peer id. */
  sessions: Map<string, Promise<TrackedSession | undefined>>;
  /** The node's live sessions as it reported them, by peer id: what a resync writes. */
  live: Map<string, LiveSession>;
  /** Peers the node last reported as muted by a moderator. */
  serverMuted: Set<string>;
  /** Peers the node last reported as sharing a screen, with their channel and name. */
  sharing: Map<string, { channel: string; displayName: string }>;
  /** Set when a history write failed: the history may not match `live` until a resync. */
  stale: boolean;
  /**
   * The node's participants, kept while a presence write failed (the store was out): written
   * whole at the next heartbeat that finds the store back.
   */
  unsyncedPresence?: Map<string, { channel: string; participant: Participant }>;
  /** Counts changes to `unsyncedPresence`: a write that raced one leaves it pending. */
  presenceChanges: number;
  /** The presence write under way, if any: one at a time per node. */
  syncingPresence?: Promise<void>;
  /** When the last resync started (epoch milliseconds), to space them out. */
  resyncedAt: number;
  /** Sessions of a replay still arriving in batches, from the node's last register. */
  replaying?: ReplayedSession[];
  /** The node's messages, handled one after another in the order it sent them. */
  inbox: SerialQueue;
}

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
  readonly #secretHash: Buffer;
  readonly #sessions: SessionHistory;
  readonly #presence: PresenceStore;
  readonly #ingest: IngestMessageHandler | undefined;
  readonly #joinTokenKey: string | undefined;
  #observer: VoiceSessionObserver | undefined;
  readonly #connections = new Set<NodeConnection>();
  #rtpCapabilities: RtpCapabilities | undefined;
  #unsubscribe: (() => Promise<void>) | undefined;
  #reapTimer: NodeJS.Timeout | undefined;
  #reaping: Promise<unknown> | undefined;
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
    this.#secretHash = sha256(options.clusterSecret);
    this.#sessions = options.sessions;
    this.#presence = options.presence;
    this.#ingest = options.ingest;
    this.#joinTokenKey = options.joinTokenKey;
  }

  /**
   * Creates the hub and starts passing placement events on to connected nodes. It closes the
   * session history of nodes marked down, and every `reapIntervalMs` (30 s by default; the first
   * pass after two node timeouts, time for nodes to reconnect after an api restart) that of nodes
   * the registry does not list as up: nodes that died while no api instance watched them.
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
      void hub.#nodeDown(nodeId, at);
    });
    events.on('assignmentChanged', ({ assignment }) =>
      hub.#deliverLocally({ type: 'assignment', assignment }),
    );
    events.on('released', ({ channel }) =>
      hub.#deliverLocally({ type: 'closeChannel', channel, reason: 'released' }),
    );
    hub.#scheduleReap(
      2 * options.placement.nodeTimeoutMs,
      options.reapIntervalMs ?? DEFAULT_SESSION_REAP_INTERVAL_MS,
    );
    return hub;
  }

  /**
   * Closes the open history rows of nodes the registry does not list as up, seen before this
   * pass began; resolves with the nodes it closed rows of. Safe on several instances at once.
   */
  async reapSessions(): Promise<string[]> {
    const cutoff = new Date();
    const [nodes, withOpenRows] = await Promise.all([
      this.#placement.nodes(),
      this.#sessions.nodesWithOpenSessions(),
    ]);
    const up = new Set(nodes.filter((node) => node.status === 'up').map((node) => node.id));
    // A node connected to this instance is alive, whatever the registry says: after Redis came
    // back empty it is listed again only once it has registered again.
    for (const connection of this.#connections) {
      if (connection.nodeId !== undefined) up.add(connection.nodeId);
    }
    const reaped: string[] = [];
    for (const nodeId of withOpenRows.filter((id) => !up.has(id))) {
      // A node registering meanwhile replays its sessions after the cut-off: they stay open.
      const closed = await this.#sessions.closeNode(nodeId, cutoff, cutoff);
      if (closed > 0) {
        reaped.push(nodeId);
        this.#logger.warn({ node: nodeId, sessions: closed }, 'closed the sessions of a gone node');
      }
    }
    await this.#ingest?.reap(up);
    return reaped;
  }

  #scheduleReap(delayMs: number, intervalMs: number): void {
    if (this.#closed) return;
    this.#reapTimer = setTimeout(() => {
      this.#reaping = this.reapSessions()
        .catch((error: unknown) => {
          this.#logger.warn({ err: error }, 'closing the sessions of gone nodes failed');
        })
        .finally(() => {
          this.#reaping = undefined;
          this.#scheduleReap(intervalMs, intervalMs);
        });
    }, delayMs);
    // The HTTP server keeps the process alive; this clean-up alone should not.
    this.#reapTimer.unref();
  }

  // Every instance hears it and runs the same idempotent clean-up. Sessions the node replays
  // after `at`, once it registers again, are spared; so is its presence if it is back already.
  async #nodeDown(nodeId: string, at: number): Promise<void> {
    const downAt = new Date(at);
    await this.#sessions.closeNode(nodeId, downAt, downAt).catch((error: unknown) => {
      this.#logger.error(
        { err: error, node: nodeId },
        'closing the sessions of a down node failed',
      );
    });
    try {
      const node = await this.#placement.node(nodeId);
      if (node?.status === 'up' && Date.parse(node.registeredAt) >= at) return;
      await this.#presence.removeNode(nodeId);
    } catch (error) {
      this.#logger.error({ err: error, node: nodeId }, 'clearing presence failed');
    }
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
    const presented = authorization?.match(/^Cluster (.+)$/)?.[1];
    if (presented === undefined || !timingSafeEqual(sha256(presented), this.#secretHash)) {
      socket.close(4401, 'cluster secret required');
      return;
    }
    keepAlive(socket, 10_000);
    const connection: NodeConnection = {
      deliver: (message) => {
        if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(message));
      },
      close: (code, reason) => socket.close(code, reason),
      sessions: new Map(),
      live: new Map(),
      serverMuted: new Set(),
      sharing: new Map(),
      stale: false,
      presenceChanges: 0,
      resyncedAt: 0,
      inbox: new SerialQueue(),
    };
    this.#connections.add(connection);
    const registerTimer = setTimeout(() => {
      if (!connection.nodeId) connection.close(4408, 'register first');
    }, REGISTER_TIMEOUT_MS);
    socket.on('message', (raw, isBinary) => {
      const message = isBinary ? undefined : parseMessage(raw.toString());
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
    const connection: NodeConnection = {
      deliver: (message) => queueMicrotask(() => receive(message)),
      close: () => this.#disconnect(connection),
      sessions: new Map(),
      live: new Map(),
      serverMuted: new Set(),
      sharing: new Map(),
      stale: false,
      presenceChanges: 0,
      resyncedAt: 0,
      inbox: new SerialQueue(),
    };
    this.#connections.add(connection);
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
    clearTimeout(this.#reapTimer);
    await this.#reaping;
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
          this.#resyncIfStale(connection, nodeId);
          // In the background: a presence store still reconnecting must not hold up heartbeats
          // behind it until the node is marked down.
          this.#syncPresence(connection, nodeId);
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
          this.#openSession(connection, nodeId, message);
          return;
        case 'participantChanged': {
          const { participant } = message;
          connection.unsyncedPresence?.set(participant.id, {
            channel: message.channel,
            participant,
          });
          connection.presenceChanges += 1;
          // Told after presence has it, so a page hearing of the share reads it there too.
          try {
            await this.#presence.upsert(nodeId, message.channel, participant);
          } finally {
            this.#followShare(connection, message.channel, participant);
          }
          const userId = connection.live.get(participant.id)?.userId;
          if (
            userId !== undefined &&
            connection.serverMuted.has(participant.id) !== participant.serverMuted
          ) {
            if (participant.serverMuted) connection.serverMuted.add(participant.id);
            else connection.serverMuted.delete(participant.id);
            this.#observer?.serverMuteChanged(message.channel, userId, participant.serverMuted);
          }
          return;
        }
        case 'sessionClosed':
          connection.serverMuted.delete(message.peerId);
          connection.unsyncedPresence?.delete(message.peerId);
          connection.presenceChanges += 1;
          this.#closeSession(connection, message.peerId);
          try {
            await this.#presence.remove(nodeId, message.peerId);
          } finally {
            this.#endShare(connection, message.peerId);
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

  // Shares start and end as the node reports its participants: the rest of the api hears each
  // change once.
  #followShare(connection: NodeConnection, channel: string, participant: Participant): void {
    if (connection.sharing.has(participant.id) === participant.sharing) return;
    if (!participant.sharing) {
      this.#endShare(connection, participant.id);
      return;
    }
    const { id: peerId, displayName } = participant;
    connection.sharing.set(peerId, { channel, displayName });
    if (connection.nodeId === undefined) return;
    this.#observer?.shareChanged(
      { event: 'shareStarted', channel, peerId, displayName },
      connection.nodeId,
    );
  }

  #endShare(connection: NodeConnection, peerId: string): void {
    const share = connection.sharing.get(peerId);
    if (!share) return;
    connection.sharing.delete(peerId);
    if (connection.nodeId === undefined) return;
    this.#observer?.shareChanged({ event: 'shareEnded', peerId, ...share }, connection.nodeId);
  }

  // The replay is the truth about the node: its history rows and its presence become exactly
  // what it serves now. History is written in the background, as for single sessions.
  async #applyReplay(
    connection: NodeConnection,
    nodeId: string,
    sessions: ReplayedSession[],
  ): Promise<void> {
    const replayed = new Set(sessions.map(({ peerId }) => peerId));
    for (const peerId of connection.sharing.keys()) {
      if (!replayed.has(peerId)) this.#endShare(connection, peerId);
    }
    for (const { channel, participant } of sessions) {
      this.#followShare(connection, channel, participant);
    }
    connection.live = new Map(
      sessions.map(({ peerId, channel, userId, participant }) => [
        peerId,
        { peerId, channel, userId, displayName: participant.displayName },
      ]),
    );
    this.#writeLive(connection, nodeId);
    connection.unsyncedPresence = new Map(
      sessions.map(({ channel, participant }) => [participant.id, { channel, participant }]),
    );
    connection.presenceChanges += 1;
    this.#syncPresence(connection, nodeId);
    this.#logger.info({ node: nodeId, sessions: sessions.length }, 'node replayed its sessions');
  }

  // Writes the node's participants whole, in the background and one write at a time; when the
  // presence store is out they stay pending, and each heartbeat tries again, so a store that
  // comes back empty is filled again. A change during the write leaves them pending too.
  #syncPresence(connection: NodeConnection, nodeId: string): void {
    const pending = connection.unsyncedPresence;
    if (!pending || connection.syncingPresence) return;
    const changes = connection.presenceChanges;
    connection.syncingPresence = this.#presence
      .replaceNode(nodeId, [...pending.values()])
      .then(
        () => {
          if (connection.unsyncedPresence === pending && connection.presenceChanges === changes) {
            connection.unsyncedPresence = undefined;
          }
        },
        (error: unknown) => {
          this.#logger.warn({ err: error, node: nodeId }, 'writing presence failed; retrying');
        },
      )
      .finally(() => {
        connection.syncingPresence = undefined;
      });
  }

  // Writes the node's whole live set to history: rows of live peers stay or open, the node's
  // other rows close. Closes of peers that leave meanwhile wait for it, through their entry.
  #writeLive(connection: NodeConnection, nodeId: string): void {
    const at = new Date();
    const live = [...connection.live.values()];
    const rows = this.#sessions.replay(nodeId, live, at).then(
      (ids) => {
        connection.stale = false;
        return ids;
      },
      (error: unknown) => {
        connection.stale = true;
        this.#logger.error({ err: error, node: nodeId }, 'writing voice sessions failed');
        return undefined;
      },
    );
    for (const peerId of [...connection.sessions.keys()]) {
      // The write closes the rows of peers it leaves out.
      if (!connection.live.has(peerId)) connection.sessions.delete(peerId);
    }
    for (const { peerId } of live) {
      connection.sessions.set(
        peerId,
        rows.then((ids) => {
          const id = ids?.get(peerId);
          return id === undefined ? undefined : { id, seenAt: at };
        }),
      );
    }
  }

  // A history write failed while the node kept reporting: once the database answers again, the
  // node's live set is written whole, which also closes the rows of peers that left meanwhile.
  #resyncIfStale(connection: NodeConnection, nodeId: string): void {
    const now = Date.now();
    if (!connection.stale || now - connection.resyncedAt < RESYNC_INTERVAL_MS) return;
    connection.resyncedAt = now;
    this.#writeLive(connection, nodeId);
  }

  // Session history is written in the background: a slow database never holds up the node.
  #openSession(
    connection: NodeConnection,
    nodeId: string,
    message: Extract<NodeToApiMessage, { type: 'sessionOpened' }>,
  ): void {
    const joinedAt = new Date();
    connection.live.set(message.peerId, {
      peerId: message.peerId,
      channel: message.channel,
      userId: message.userId,
      displayName: message.displayName,
    });
    const opened = this.#sessions
      .open({
        userId: message.userId,
        displayName: message.displayName,
        channel: message.channel,
        nodeId,
        peerId: message.peerId,
        joinedAt,
      })
      .then(
        (id): TrackedSession => ({ id, seenAt: joinedAt }),
        (error: unknown) => {
          connection.stale = true;
          this.#logger.error({ err: error, node: nodeId }, 'recording a voice session failed');
          return undefined;
        },
      );
    connection.sessions.set(message.peerId, opened);
  }

  #closeSession(connection: NodeConnection, peerId: string): void {
    connection.live.delete(peerId);
    const opened = connection.sessions.get(peerId);
    if (!opened) return;
    connection.sessions.delete(peerId);
    const leftAt = new Date();
    void opened.then(async (session) => {
      if (session === undefined) return;
      // If the node replayed the session to another instance since (this connection was cut and
      // it reconnected there), the row is that instance's now and stays open.
      await this.#sessions
        .close(session.id, leftAt, { seenUpTo: session.seenAt })
        .catch((error: unknown) => {
          connection.stale = true;
          this.#logger.error({ err: error }, 'closing a voice session failed');
        });
    });
  }

  #disconnect(connection: NodeConnection): void {
    if (!this.#connections.delete(connection)) return;
    // The node is gone or cut off: its participants' sessions end now.
    for (const peerId of [...connection.sessions.keys()]) this.#closeSession(connection, peerId);
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
      if (connection.nodeId && concerns(connection, message)) this.#deliverTo(connection, message);
    }
  }

  // Placement events already reach every api instance through the bus, so each instance tells
  // only the nodes connected to it.
  #deliverLocally(message: ApiToNodeMessage): void {
    for (const connection of this.#connections) {
      if (connection.nodeId && concerns(connection, message)) connection.deliver(message);
    }
  }
}

// Stream messages go to ingest nodes only; placement and cascade messages to voice nodes only.
function concerns(connection: NodeConnection, message: unknown): boolean {
  const type = (message as { type?: unknown } | null)?.type;
  const forIngest = typeof type === 'string' && INGEST_ONLY_DELIVERIES.has(type);
  return forIngest === (connection.kind === 'ingest');
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

function parseMessage(
  text: string,
): { ok: true; value: NodeToApiMessage } | { ok: false; error: string } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, error: 'not JSON' };
  }
  const parsed = nodeToApiMessageSchema.safeParse(json);
  return parsed.success
    ? { ok: true, value: parsed.data }
    : { ok: false, error: describeZodError(parsed.error) };
}
