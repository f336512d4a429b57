import { createHash, timingSafeEqual } from 'node:crypto';
import {
  describeZodError,
  nodeToApiMessageSchema,
  type ApiToNodeMessage,
  type NodeToApiMessage,
  type ReplayedSession,
} from '@hearth/protocol';
import { SerialQueue, type Logger } from '@hearth/server-common';
import type { SessionHistory } from '../db/session-history';
import { INGEST_ONLY_DELIVERIES } from '../streams/ingest-messages';
import { NodePresence } from './node-presence';
import { NodeSessions } from './node-sessions';
import { NodeShares, type ShareListener } from './node-shares';
import type { PresenceStore } from './presence';

/** How the api reaches one node: over the node's control WebSocket, or in process. */
export interface NodeTransport {
  /** Sends a message to the node. */
  deliver(message: ApiToNodeMessage): void;
  /** Ends the connection, with a WebSocket close code and reason. */
  close(code: number, reason: string): void;
}

/** Where the connections of one hub write what their nodes report. */
export interface NodeConnectionDeps {
  /** Where the sessions of the node's peers are recorded. */
  history: SessionHistory;
  /** Where the node's participants are listed. */
  presence: PresenceStore;
  /** Logs the failed writes of the node's parts. */
  logger: Logger;
  /** Hears the shares of the connection's node start and end. */
  shareChanged: ShareListener;
}

/** The api's end of one node's control connection, and what it tracks of the node. */
export class NodeConnection {
  /** The node's id, once it registered. */
  nodeId: string | undefined;
  /** What the node registered as. */
  kind: 'voice' | 'ingest' | undefined;
  /** Stops relaying the node's bus topic to it; set once it registered. */
  unsubscribe: (() => Promise<void>) | undefined;
  /** Sessions of a replay still arriving in batches, from the node's last register. */
  replaying: ReplayedSession[] | undefined;
  /** Peers the node last reported as muted by a moderator. */
  readonly serverMuted = new Set<string>();
  /** The node's messages, handled one after another in the order it sent them. */
  readonly inbox = new SerialQueue();
  /** The session history of the node's peers. */
  readonly sessions: NodeSessions;
  /** The presence of the node's participants. */
  readonly presence: NodePresence;
  /** The screen shares of the node's participants. */
  readonly shares: NodeShares;
  readonly #transport: NodeTransport;

  constructor(transport: NodeTransport, deps: NodeConnectionDeps) {
    this.#transport = transport;
    this.sessions = new NodeSessions(deps.history, deps.logger);
    this.presence = new NodePresence(deps.presence, deps.logger);
    this.shares = new NodeShares(deps.shareChanged);
  }

  /** Sends a message to the node. */
  deliver(message: ApiToNodeMessage): void {
    this.#transport.deliver(message);
  }

  /** Ends the connection, with a WebSocket close code and reason. */
  close(code: number, reason: string): void {
    this.#transport.close(code, reason);
  }

  /**
   * Whether a message is for this kind of node: stream messages go to ingest nodes only,
   * placement and cascade messages to voice nodes only.
   */
  concerns(message: unknown): boolean {
    const type = (message as { type?: unknown } | null)?.type;
    const forIngest = typeof type === 'string' && INGEST_ONLY_DELIVERIES.has(type);
    return forIngest === (this.kind === 'ingest');
  }
}

/** The cluster secret that nodes prove they belong to the cluster with. */
export class ClusterSecret {
  readonly #hash: Buffer;

  constructor(secret: string) {
    this.#hash = sha256(secret);
  }

  /** Whether an Authorization header is `Cluster <secret>`, compared in constant time. */
  isPresentedIn(authorization: string | undefined): boolean {
    const presented = authorization?.match(/^Cluster (.+)$/)?.[1];
    return presented !== undefined && timingSafeEqual(sha256(presented), this.#hash);
  }
}

/** Parses one text frame of a node's control socket: JSON holding a node-to-api message. */
export function parseNodeFrame(
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

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
