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
  /** When it joined; now when left out. */
  readonly joinedAt?: Date;
}

/** One row per voice session: who joined which channel on which node, and when they left. */
export interface SessionHistory {
  /** Records a join and resolves with the session's id, for `close`. */
  open(session: OpenedSession): Promise<string>;
  /** Records the leave of a session; closing it again keeps the first time. */
  close(id: string, at?: Date): Promise<void>;
}

const idRowSchema = z.object({ id: z.string() });

/** Voice session history in the `session_history` table. */
export class SqlSessionHistory implements SessionHistory {
  readonly #db: SqlClient;

  constructor(db: SqlClient) {
    this.#db = db;
  }

  /** Records a join; resolves with the new session's id. */
  async open(session: OpenedSession): Promise<string> {
    const rows = await this.#db.query(
      `INSERT INTO session_history (user_id, display_name, channel, node_id, joined_at)
       VALUES ($1, $2, $3, $4, $5) RETURNING id`,
      [
        session.userId,
        session.displayName,
        session.channel,
        session.nodeId,
        session.joinedAt ?? new Date(),
      ],
    );
    return parseRows(idRowSchema, rows)[0]!.id;
  }

  /** Records a leave; a second close keeps the first time. */
  async close(id: string, at: Date = new Date()): Promise<void> {
    await this.#db.query(
      'UPDATE session_history SET left_at = $2 WHERE id = $1::uuid AND left_at IS NULL',
      [id, at],
    );
  }
}
