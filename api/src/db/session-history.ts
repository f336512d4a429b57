import { z } from 'zod';
import { parseRows, type SqlClient } from './sql-client';

/** A voice session as it starts. */
export interface OpenedSession {
  /** Account id, or a guest's generated id. */
  readonly userId: string;
  /** Name shown in the channel. */
  readonly displayName: string;
  /** Channel joined. */
  readonly channel: string;
  /** Voice node that hosts the session. */
  readonly nodeId: string;
  /** The peer's id on that node. */
  readonly peerId: string;
  /** When it joined, which is also when the api saw it live; now when left out. */
  readonly joinedAt?: Date;
}

/** A session a node serves now, as it replays it: no join time, the replay is when it was seen. */
export interface LiveSession {
  /** The peer's id on the node. */
  readonly peerId: string;
  /** Channel it is in. */
  readonly channel: string;
  /** Account id, or a guest's generated id. */
  readonly userId: string;
  /** Name shown in the channel. */
  readonly displayName: string;
}

/**
 * One row per voice session: who joined which channel on which node, and when they left. Each
 * open row also keeps when the api last saw it live (`seen_at`): its join, or a replay of its
 * node. Closes that act on a node's rows spare rows seen at or after their cut-off, so a close
 * decided before a node came back never ends what the node replayed since.
 */
export interface SessionHistory {
  /**
   * Records a join and resolves with the session's id, for `close`; a session of the same node
   * and peer that is open already keeps its row.
   */
  open(session: OpenedSession): Promise<string>;
  /**
   * Records the leave of a session; closing it again keeps the first time. With `seenUpTo`, only
   * if nobody saw it live after that time (the node replayed it elsewhere since).
   */
  close(id: string, at?: Date, options?: { seenUpTo?: Date }): Promise<void>;
  /**
   * Makes a node's open rows what it replays: each replayed session keeps its open row or gets
   * a new one (joined at `at`), all are seen at `at`, and the node's other open rows close at
   * `at`. Resolves with the row id of each peer.
   */
  replay(nodeId: string, sessions: readonly LiveSession[], at: Date): Promise<Map<string, string>>;
  /**
   * Closes, at `at`, the open rows of a node (marked down, or found gone) last seen before
   * `seenBefore`; resolves with how many it closed.
   */
  closeNode(nodeId: string, at: Date, seenBefore: Date): Promise<number>;
  /** Nodes that have open rows, sorted. */
  nodesWithOpenSessions(): Promise<string[]>;
  /** Who holds an open session as a peer in a channel, if anyone: what a moderator acts on. */
  openSessionOf(
    channel: string,
    peerId: string,
  ): Promise<{ userId: string; displayName: string } | undefined>;
}

const holderRowSchema = z
  .object({ user_id: z.string(), display_name: z.string() })
  .transform((row) => ({ userId: row.user_id, displayName: row.display_name }));

const idRowSchema = z.object({ id: z.string() });
const replayedRowSchema = z.object({ id: z.string(), peer_id: z.string() });
const nodeRowSchema = z.object({ node_id: z.string() });

// A replayed or reported session finds its node's open row for the peer through the partial
// unique index, and marks it seen; a seen time never moves back.
const UPSERT_OPEN = `
  ON CONFLICT (node_id, peer_id) WHERE left_at IS NULL
  DO UPDATE SET seen_at = greatest(session_history.seen_at, excluded.seen_at)
  RETURNING id, peer_id`;

/** Voice session history in the `session_history` table. */
export class SqlSessionHistory implements SessionHistory {
  readonly #db: SqlClient;

  constructor(db: SqlClient) {
    this.#db = db;
  }

  /** Records a join; resolves with the session's id. */
  async open(session: OpenedSession): Promise<string> {
    const joinedAt = session.joinedAt ?? new Date();
    const rows = await this.#db.query(
      `INSERT INTO session_history
         (user_id, display_name, channel, node_id, peer_id, joined_at, seen_at)
       VALUES ($1, $2, $3, $4, $5, $6, $6) ${UPSERT_OPEN}`,
      [
        session.userId,
        session.displayName,
        session.channel,
        session.nodeId,
        session.peerId,
        joinedAt,
      ],
    );
    return parseRows(idRowSchema, rows)[0]!.id;
  }

  /** Records a leave; a second close keeps the first time. */
  async close(id: string, at: Date = new Date(), options: { seenUpTo?: Date } = {}): Promise<void> {
    await this.#db.query(
      `UPDATE session_history SET left_at = $2
       WHERE id = $1::uuid AND left_at IS NULL AND ($3::timestamptz IS NULL OR seen_at <= $3)`,
      [id, at, options.seenUpTo ?? null],
    );
  }

  /** Reconciles a node's open rows with what it replays, in one transaction. */
  async replay(
    nodeId: string,
    sessions: readonly LiveSession[],
    at: Date,
  ): Promise<Map<string, string>> {
    // A peer replayed twice would make the upsert touch one row twice, which PostgreSQL refuses.
    const unique = [...new Map(sessions.map((session) => [session.peerId, session])).values()];
    return this.#db.transaction(async (tx) => {
      const rows =
        unique.length === 0
          ? []
          : await tx.query(
              `INSERT INTO session_history
                 (user_id, display_name, channel, node_id, peer_id, joined_at, seen_at)
               SELECT user_id, display_name, channel, $1, peer_id, $2, $2
               FROM unnest($3::text[], $4::text[], $5::text[], $6::uuid[])
                 AS replayed (user_id, display_name, channel, peer_id)
               ${UPSERT_OPEN}`,
              [
                nodeId,
                at,
                unique.map((session) => session.userId),
                unique.map((session) => session.displayName),
                unique.map((session) => session.channel),
                unique.map((session) => session.peerId),
              ],
            );
      await tx.query(
        `UPDATE session_history SET left_at = $2
         WHERE node_id = $1 AND left_at IS NULL AND seen_at < $2`,
        [nodeId, at],
      );
      return new Map(parseRows(replayedRowSchema, rows).map((row) => [row.peer_id, row.id]));
    });
  }

  /** Closes a node's open rows last seen before `seenBefore`. */
  async closeNode(nodeId: string, at: Date, seenBefore: Date): Promise<number> {
    const rows = await this.#db.query(
      `UPDATE session_history SET left_at = $2
       WHERE node_id = $1 AND left_at IS NULL AND seen_at < $3 RETURNING id`,
      [nodeId, at, seenBefore],
    );
    return rows.length;
  }

  /** Nodes with open rows. */
  async nodesWithOpenSessions(): Promise<string[]> {
    const rows = await this.#db.query(
      'SELECT DISTINCT node_id FROM session_history WHERE left_at IS NULL ORDER BY node_id',
    );
    return parseRows(nodeRowSchema, rows).map((row) => row.node_id);
  }

  async openSessionOf(
    channel: string,
    peerId: string,
  ): Promise<{ userId: string; displayName: string } | undefined> {
    if (!z.uuid().safeParse(peerId).success) return undefined;
    const rows = await this.#db.query(
      `SELECT user_id, display_name FROM session_history
       WHERE channel = $1 AND peer_id = $2 AND left_at IS NULL LIMIT 1`,
      [channel, peerId],
    );
    return parseRows(holderRowSchema, rows)[0];
  }
}
