import { createHash, timingSafeEqual } from 'node:crypto';
import type { WebSocket } from 'ws';
import {
  apiToNodeMessageSchema,
  describeZodError,
  nodeToApiMessageSchema,
  type ApiToNodeMessage,
  type NodeToApiMessage,
  type RtpCapabilities,
} from '@hearth/protocol';
import { SerialQueue, keepAlive, type Logger } from '@hearth/server-common';
import type { ClusterBus } from '../cluster/bus';
import type { SessionHistory } from '../db/session-history';
import type { PresenceStore } from './presence';
import type { PlacementService } from '../nodes/placement-service';
import { NodeNotRegisteredError } from '../nodes/registry';

/** Bus topic every api instance listens on to reach the nodes connected to it. */
const BROADCAST_TOPIC = 'nodes.broadcast';
/** Bus topic of one node: the api instance holding its connection forwards what arrives. */
const nodeTopic = (nodeId: string) => `node.${nodeId}`;

// A node that has not registered this long after connecting is dropped.
const REGISTER_TIMEOUT_MS = 5000;

/** The api's end of one node's control connection, over a WebSocket or in process. */
interface NodeConnection {
  deliver(message: ApiToNodeMessage): void;
  close(code: number, reason: string): void;
  nodeId?: string;
  unsubscribe?: () => Promise<void>;
  /** Open voice sessions of the node's participants: history row ids by peer id. */
  sessions: Map<string, Promise<string | undefined>>;
  /** The node's messages, handled one after another in the order it sent them. */
  inbox: SerialQueue;
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
  }) {
    this.#placement = options.placement;
    this.#bus = options.bus;
    this.#logger = options.logger.child({ component: 'node-hub' });
    this.#secretHash = sha256(options.clusterSecret);
    this.#sessions = options.sessions;
    this.#presence = options.presence;
  }

  /** Creates the hub and starts passing placement events on to connected nodes. */
  static async start(options: {
    placement: PlacementService;
    bus: ClusterBus;
    logger: Logger;
    clusterSecret: string;
    sessions: SessionHistory;
    presence: PresenceStore;
  }): Promise<NodeHub> {
    const hub = new NodeHub(options);
    hub.#unsubscribe = await options.bus.subscribe(BROADCAST_TOPIC, (message) =>
      hub.#deliverToAll(message),
    );
    const events = options.placement.events;
    events.on('nodeDown', ({ nodeId }) => {
      hub.#deliverLocally({ type: 'nodeDown', nodeId });
      hub.#presence.removeNode(nodeId).catch((error: unknown) => {
        hub.#logger.error({ err: error, node: nodeId }, 'clearing presence failed');
      });
    });
    events.on('assignmentChanged', ({ assignment }) =>
      hub.#deliverLocally({ type: 'assignment', assignment }),
    );
    events.on('released', ({ channel }) =>
      hub.#deliverLocally({ type: 'closeChannel', channel, reason: 'released' }),
    );
    return hub;
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
      switch (message.type) {
        case 'heartbeat':
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
          this.#openSession(connection, nodeId, message);
          return;
        case 'participantChanged':
          await this.#presence.upsert(nodeId, message.channel, message.participant);
          return;
        case 'sessionClosed':
          this.#closeSession(connection, message.peerId);
          await this.#presence.remove(nodeId, message.peerId);
          return;
        case 'channelClosed':
          await this.#placement.leaveChannel(message.channel, nodeId);
          return;
      }
    } catch (error) {
      this.#logger.error(
        { err: error, node: connection.nodeId, type: message.type },
        'node message failed',
      );
    }
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
      connection.unsubscribe = await this.#bus.subscribe(nodeTopic(registration.id), (relayed) =>
        this.#deliverTo(connection, relayed),
      );
    }
    connection.deliver({ type: 'registered', nodeId: registration.id });
    this.#logger.info({ node: registration.id, limits: registration.limits }, 'node registered');
  }

  // Session history is written in the background: a slow database never holds up the node.
  #openSession(
    connection: NodeConnection,
    nodeId: string,
    message: Extract<NodeToApiMessage, { type: 'sessionOpened' }>,
  ): void {
    const opened = this.#sessions
      .open({
        userId: message.userId,
        displayName: message.displayName,
        channel: message.channel,
        nodeId,
      })
      .catch((error: unknown) => {
        this.#logger.error({ err: error, node: nodeId }, 'recording a voice session failed');
        return undefined;
      });
    connection.sessions.set(message.peerId, opened);
  }

  #closeSession(connection: NodeConnection, peerId: string): void {
    const opened = connection.sessions.get(peerId);
    if (!opened) return;
    connection.sessions.delete(peerId);
    const leftAt = new Date();
    void opened.then(async (id) => {
      if (id === undefined) return;
      await this.#sessions.close(id, leftAt).catch((error: unknown) => {
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
      if (connection.nodeId) this.#deliverTo(connection, message);
    }
  }

  // Placement events already reach every api instance through the bus, so each instance tells
  // only the nodes connected to it.
  #deliverLocally(message: ApiToNodeMessage): void {
    for (const connection of this.#connections) {
      if (connection.nodeId) connection.deliver(message);
    }
  }
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
