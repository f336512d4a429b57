import { z } from 'zod';
import { grantSchema, type Grant, type GrantScope } from '@hearth/protocol';
import { parseRows, type SqlClient } from './sql-client';

/** Grants an account holds in one scope: a channel, or `*` for every channel. */
export interface MembershipRecord {
  /** A channel name, or `*`. */
  readonly channel: GrantScope;
  /** The grants, without duplicates. */
  readonly grants: readonly Grant[];
}

const membershipRowSchema = z
  .object({ channel: z.string(), grants: z.array(grantSchema) })
  .transform((row): MembershipRecord => ({ channel: row.channel, grants: row.grants }));

/** Per-account grants in the `memberships` table. */
export class MembershipStore {
  readonly #db: SqlClient;

  constructor(db: SqlClient) {
    this.#db = db;
  }

  /** An account's memberships, `*` first, then by channel name. */
  async forUser(userId: string): Promise<MembershipRecord[]> {
    const rows = await this.#db.query(
      `SELECT channel, grants FROM memberships WHERE user_id = $1
       ORDER BY channel <> '*', channel`,
      [userId],
    );
    return parseRows(membershipRowSchema, rows);
  }

  /** Sets the complete grant list of an account in one scope, replacing what it held there. */
  async set(userId: string, channel: GrantScope, grants: readonly Grant[]): Promise<void> {
    await this.#db.query(
      `INSERT INTO memberships (user_id, channel, grants) VALUES ($1, $2, $3)
       ON CONFLICT (user_id, channel) DO UPDATE SET grants = excluded.grants`,
      [userId, channel, [...new Set(grants)]],
    );
  }

  /** Removes an account's membership in one scope; false when it had none. */
  async remove(userId: string, channel: GrantScope): Promise<boolean> {
    const rows = await this.#db.query(
      'DELETE FROM memberships WHERE user_id = $1 AND channel = $2 RETURNING channel',
      [userId, channel],
    );
    return rows.length > 0;
  }
}
