import { z } from 'zod';
import { accountRoleSchema, type AccountRole } from '@hearth/protocol';
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
  /** Owner, admin or member. */
  readonly role: AccountRole;
}

const userRowSchema = z
  .object({
    id: z.string(),
    username: z.string(),
    display_name: z.string(),
    password_hash: z.string(),
    created_at: z.date(),
    disabled_at: z.date().nullable(),
    role: accountRoleSchema,
  })
  .transform((row): UserRecord => ({
    id: row.id,
    username: row.username,
    displayName: row.display_name,
    passwordHash: row.password_hash,
    createdAt: row.created_at,
    disabledAt: row.disabled_at,
    role: row.role,
  }));

const COLUMNS = 'id, username, display_name, password_hash, created_at, disabled_at, role';

/** Accounts in the `users` table. */
export class UserStore {
  readonly #db: SqlClient;

  constructor(db: SqlClient) {
    this.#db = db;
  }

  /**
   * Creates an account; `conflict` when the username is taken in any case. With `firstIsOwner`
   * the account becomes the owner when there is none yet (a fresh install), else a member.
   */
  async create(user: {
    username: string;
    displayName: string;
    passwordHash: string;
    role?: AccountRole;
    firstIsOwner?: boolean;
  }): Promise<UserRecord> {
    const role = user.role ?? 'member';
    try {
      const rows = await this.#db.query(
        `INSERT INTO users (username, display_name, password_hash, role)
         VALUES ($1, $2, $3, CASE WHEN $5::boolean AND NOT EXISTS (SELECT 1 FROM users WHERE role = 'owner')
                                  THEN 'owner' ELSE $4::text END)
         RETURNING ${COLUMNS}`,
        [user.username, user.displayName, user.passwordHash, role, user.firstIsOwner ?? false],
      );
      return parseRows(userRowSchema, rows)[0]!;
    } catch (error) {
      if (isUniqueViolation(error) && user.firstIsOwner) {
        // Two first accounts raced for the owner seat; this one lost and is a member.
        const taken = await this.byUsername(user.username);
        if (!taken) return this.create({ ...user, firstIsOwner: false });
      }
      if (isUniqueViolation(error)) {
        throw new AppError('conflict', `the username ${user.username} is taken`);
      }
      throw error;
    }
  }

  /**
   * Sets an account's role. Naming a new owner makes the current one an admin, in one
   * transaction. `not_found` when there is no such account.
   */
  async setRole(id: string, role: AccountRole): Promise<UserRecord> {
    return this.#db.transaction(async (tx) => {
      if (role === 'owner') {
        await tx.query(`UPDATE users SET role = 'admin' WHERE role = 'owner' AND id <> $1`, [id]);
      }
      const rows = await tx.query(`UPDATE users SET role = $2 WHERE id = $1 RETURNING ${COLUMNS}`, [
        id,
        role,
      ]);
      const user = parseRows(userRowSchema, rows)[0];
      if (!user) throw new AppError('not_found', 'no such user');
      return user;
    });
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
