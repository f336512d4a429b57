import { z } from 'zod';
import { SERVER_WIDE, type Ban } from '@hearth/protocol';
import { parseRows, type SqlClient } from './sql-client';

const banRowSchema = z
  .object({
    scope: z.string(),
    user_id: z.string(),
    display_name: z.string(),
    banned_by: z.string(),
    created_at: z.date(),
  })
  .transform((row): Ban => ({
    scope: row.scope,
    userId: row.user_id,
    displayName: row.display_name,
    bannedBy: row.banned_by,
    createdAt: row.created_at.toISOString(),
  }));

const BAN_COLUMNS = 'scope, user_id, display_name, banned_by, created_at';

// A ban read as JSON carries its time as text.
const standingRowSchema = z.object({
  ban: z.object({ created_at: z.coerce.date() }).passthrough().nullable(),
  server_muted: z.boolean(),
  open_sessions: z.coerce.number(),
});
const ACCOUNT_ID = z.uuid();

/**
 * Bans (per account or guest session, in one channel or every channel) and the server mutes of
 * accounts, in the `bans` and `server_mutes` tables: what a join checks before it is admitted.
 */
export class ModerationStore {
  readonly #db: SqlClient;

  constructor(db: SqlClient) {
    this.#db = db;
  }

  /** Bans a user in a channel, or everywhere with `*`; banning again keeps the first record. */
  async ban(ban: { scope: string; userId: string; displayName: string; bannedBy: string }) {
    await this.#db.query(
      `INSERT INTO bans (scope, user_id, display_name, banned_by) VALUES ($1, $2, $3, $4)
       ON CONFLICT (scope, user_id) DO NOTHING`,
      [ban.scope, ban.userId, ban.displayName, ban.bannedBy],
    );
  }

  /** Lifts a ban; false when there was none. */
  async unban(scope: string, userId: string): Promise<boolean> {
    const rows = await this.#db.query(
      'DELETE FROM bans WHERE scope = $1 AND user_id = $2 RETURNING scope',
      [scope, userId],
    );
    return rows.length > 0;
  }

  /**
   * What a join checks of a user, in one round trip: the ban keeping it out of the channel (one
   * there or server-wide), whether an account joins muted, and how many voice sessions it holds.
   */
  async joinStanding(
    channel: string,
    userId: string,
  ): Promise<{ ban: Ban | undefined; serverMuted: boolean; openSessions: number }> {
    const rows = await this.#db.query(
      `SELECT
         (SELECT row_to_json(b) FROM (
            SELECT ${BAN_COLUMNS} FROM bans WHERE user_id = $1 AND scope IN ($2, $3)
            ORDER BY scope = $3 DESC LIMIT 1) b) AS ban,
         EXISTS (SELECT 1 FROM server_mutes
                 WHERE channel = $2 AND user_id::text = $1) AS server_muted,
         (SELECT count(*) FROM session_history
          WHERE user_id = $1 AND left_at IS NULL) AS open_sessions`,
      [userId, channel, SERVER_WIDE],
    );
    const row = parseRows(standingRowSchema, rows)[0]!;
    return {
      ban: row.ban === null ? undefined : banRowSchema.parse(row.ban),
      serverMuted: row.server_muted,
      openSessions: row.open_sessions,
    };
  }

  /** Bans in one scope, or every ban without one; newest first, at most `limit`. */
  async bans(options: { scope?: string; limit: number; offset: number }): Promise<Ban[]> {
    const rows = await this.#db.query(
      `SELECT ${BAN_COLUMNS} FROM bans WHERE ($1::text IS NULL OR scope = $1)
       ORDER BY created_at DESC, user_id LIMIT $2 OFFSET $3`,
      [options.scope ?? null, options.limit, options.offset],
    );
    return parseRows(banRowSchema, rows);
  }

  /** Records or lifts an account's server mute in a channel; guests' mutes end with them. */
  async setServerMuted(channel: string, userId: string, muted: boolean): Promise<void> {
    if (!ACCOUNT_ID.safeParse(userId).success) return;
    if (muted) {
      await this.#db.query(
        `INSERT INTO server_mutes (channel, user_id) SELECT $1, id FROM users WHERE id = $2
         ON CONFLICT (channel, user_id) DO NOTHING`,
        [channel, userId],
      );
    } else {
      await this.#db.query('DELETE FROM server_mutes WHERE channel = $1 AND user_id = $2', [
        channel,
        userId,
      ]);
    }
  }
}
