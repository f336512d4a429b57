import { z } from 'zod';
import { parseRows, type SqlClient } from './sql-client';

/** What presenting a refresh token for rotation led to. */
export type RotationResult =
  /** The token was current: it is used up now and `next` joined its family. */
  | { readonly kind: 'rotated'; readonly userId: string; readonly familyId: string }
  /** No such token, or it expired. */
  | { readonly kind: 'invalid' }
  /** The token was revoked (logout, disabled account, or its family was revoked before). */
  | { readonly kind: 'revoked' }
  /** The token had been used already: it leaked, and its whole family is revoked now. */
  | { readonly kind: 'reused'; readonly userId: string; readonly familyId: string };

/** A refresh token to store: only its hash. */
export interface NewRefreshToken {
  /** SHA-256 of the token text. */
  readonly tokenHash: Buffer;
  /** When it stops working. */
  readonly expiresAt: Date;
}

const tokenRowSchema = z.object({
  id: z.string(),
  user_id: z.string(),
  family_id: z.string(),
  expires_at: z.date(),
  used_at: z.date().nullable(),
  revoked_at: z.date().nullable(),
});

/** Hashed refresh tokens in the `refresh_tokens` table, grouped in families per login. */
export class RefreshTokenStore {
  readonly #db: SqlClient;

  constructor(db: SqlClient) {
    this.#db = db;
  }

  /** Stores the first token of a new family (a login) and forgets the account's expired ones. */
  async issue(
    userId: string,
    familyId: string,
    token: NewRefreshToken,
    now = new Date(),
  ): Promise<void> {
    await this.#db.transaction(async (tx) => {
      await tx.query('DELETE FROM refresh_tokens WHERE user_id = $1 AND expires_at < $2', [
        userId,
        now,
      ]);
      await tx.query(
        `INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at)
         VALUES ($1, $2, $3, $4)`,
        [userId, familyId, token.tokenHash, token.expiresAt],
      );
    });
  }

  /**
   * Uses up the token with `presentedHash` and stores `next` in its family, atomically: of two
   * requests presenting the same token, one rotates and the other is seen as reuse.
   */
  async rotate(
    presentedHash: Buffer,
    next: NewRefreshToken,
    now = new Date(),
  ): Promise<RotationResult> {
    return this.#db.transaction(async (tx): Promise<RotationResult> => {
      const rows = await tx.query(
        `SELECT id, user_id, family_id, expires_at, used_at, revoked_at FROM refresh_tokens
         WHERE token_hash = $1 FOR UPDATE`,
        [presentedHash],
      );
      const token = parseRows(tokenRowSchema, rows)[0];
      if (!token) return { kind: 'invalid' };
      if (token.used_at !== null) {
        await tx.query(
          'UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL',
          [token.family_id, now],
        );
        return { kind: 'reused', userId: token.user_id, familyId: token.family_id };
      }
      if (token.revoked_at !== null) return { kind: 'revoked' };
      if (token.expires_at <= now) return { kind: 'invalid' };
      await tx.query('UPDATE refresh_tokens SET used_at = $2 WHERE id = $1', [token.id, now]);
      await tx.query(
        `INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at)
         VALUES ($1, $2, $3, $4)`,
        [token.user_id, token.family_id, next.tokenHash, next.expiresAt],
      );
      return { kind: 'rotated', userId: token.user_id, familyId: token.family_id };
    });
  }

  /** Revokes every token of a family (one login). */
  async revokeFamily(familyId: string, now = new Date()): Promise<void> {
    await this.#db.query(
      'UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL',
      [familyId, now],
    );
  }

  /** Revokes the family of a presented token (logout); an unknown token changes nothing. */
  async revokeFamilyOf(presentedHash: Buffer, now = new Date()): Promise<void> {
    await this.#db.query(
      `UPDATE refresh_tokens SET revoked_at = $2
       WHERE revoked_at IS NULL
         AND family_id = (SELECT family_id FROM refresh_tokens WHERE token_hash = $1)`,
      [presentedHash, now],
    );
  }
}
