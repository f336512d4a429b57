import { z } from 'zod';
import { AppError } from '@hearth/server-common';
import { isUniqueViolation, parseRows, type SqlClient } from './sql-client';

/** An account as stored. */
export interface UserRecord {
  /** Stable id (uuid). */
  readonly id: string;
  /** Login name as registered; matched without regard to case. */
  readonly username: string;
  /** Name shown to others. */
  readonly displayName: string;
  /** scrypt hash with its parameters and salt. */
  readonly passwordHash: string;
  /** When it was created. */
  readonly createdAt: Date;
  /** When it was disabled, or null while it may log in. */
  readonly disabledAt: Date | null;
}

const userRowSchema = z
  .object({
    id: z.string(),
    username: z.string(),
    display_name: z.string(),
    password_hash: z.string(),
    created_at: z.date(),
    disabled_at: z.date().nullable(),
  })
  .transform((row): UserRecord => ({
    id: row.id,
    username: row.username,
    displayName: row.display_name,
    passwordHash: row.password_hash,
    createdAt: row.created_at,
    disabledAt: row.disabled_at,
  }));

const COLUMNS = 'id, username, display_name, password_hash, created_at, disabled_at';

/** Accounts in the `users` table. */
export class UserStore {
  readonly #db: SqlClient;

  constructor(db: SqlClient) {
    this.#db = db;
  }

  /** Creates an account; `conflict` when the username is taken in any case. */
  async create(user: {
    username: string;
    displayName: string;
    passwordHash: string;
  }): Promise<UserRecord> {
    try {
      const rows = await this.#db.query(
        `INSERT INTO users (username, display_name, password_hash) VALUES ($1, $2, $3)
         RETURNING ${COLUMNS}`,
        [user.username, user.displayName, user.passwordHash],
      );
      return parseRows(userRowSchema, rows)[0]!;
    } catch (error) {
      if (isUniqueViolation(error)) {
        throw new AppError('conflict', `the username ${user.username} is taken`);
      }
      throw error;
    }
  }

  /** The account with that id, if any. */
  async byId(id: string): Promise<UserRecord | undefined> {
    // Ids come from tokens and URLs; one that is not a uuid names no account rather than failing.
    if (!z.uuid().safeParse(id).success) return undefined;
    const rows = await this.#db.query(`SELECT ${COLUMNS} FROM users WHERE id = $1`, [id]);
    return parseRows(userRowSchema, rows)[0];
  }

  /** The account with that username in any case, if any. */
  async byUsername(username: string): Promise<UserRecord | undefined> {
    const rows = await this.#db.query(
      `SELECT ${COLUMNS} FROM users WHERE lower(username) = lower($1)`,
      [username],
    );
    return parseRows(userRowSchema, rows)[0];
  }

  /** Every account, oldest first. */
  async list(): Promise<UserRecord[]> {
    const rows = await this.#db.query(`SELECT ${COLUMNS} FROM users ORDER BY created_at, username`);
    return parseRows(userRowSchema, rows);
  }

  /**
   * Disables an account and revokes its refresh tokens in one transaction; disabling it again
   * keeps the first date. `not_found` when there is no such account.
   */
  async disable(id: string, at: Date = new Date()): Promise<UserRecord> {
    return this.#db.transaction(async (tx) => {
      const rows = await tx.query(
        `UPDATE users SET disabled_at = coalesce(disabled_at, $2) WHERE id = $1
         RETURNING ${COLUMNS}`,
        [id, at],
      );
      const user = parseRows(userRowSchema, rows)[0];
      if (!user) throw new AppError('not_found', 'no such user');
      await tx.query(
        'UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL',
        [id, at],
      );
      return user;
    });
  }
}
