import { z } from 'zod';
import type { StreamKeyRecord, StreamKeyStore } from '../streams/stream-keys';
import { parseRows, type SqlClient } from './sql-client';

// PGlite returns bytea as a Uint8Array and `pg` as a Buffer; records always hold a Buffer.
const bytes = z.instanceof(Uint8Array).transform((value) => Buffer.from(value));

const streamKeyRowSchema = z
  .object({
    id: z.string(),
    channel: z.string(),
    secret_hash: bytes,
    created_at: z.date(),
    last_used_at: z.date().nullable(),
  })
  .transform((row): StreamKeyRecord => ({
    id: row.id,
    channel: row.channel,
    secretHash: row.secret_hash,
    createdAt: row.created_at,
    lastUsedAt: row.last_used_at,
  }));

const COLUMNS = 'id, channel, secret_hash, created_at, last_used_at';

/** Stream keys in the `stream_keys` table: ids and secret hashes, never secrets. */
export class SqlStreamKeyStore implements StreamKeyStore {
  readonly #db: SqlClient;

  constructor(db: SqlClient) {
    this.#db = db;
  }

  /** The key of a channel, if it has one. */
  async byChannel(channel: string): Promise<StreamKeyRecord | undefined> {
    const rows = await this.#db.query(`SELECT ${COLUMNS} FROM stream_keys WHERE channel = $1`, [
      channel,
    ]);
    return parseRows(streamKeyRowSchema, rows)[0];
  }

  /** The key with that id, if any. */
  async byId(id: string): Promise<StreamKeyRecord | undefined> {
    const rows = await this.#db.query(`SELECT ${COLUMNS} FROM stream_keys WHERE id = $1`, [id]);
    return parseRows(streamKeyRowSchema, rows)[0];
  }

  /** Stores the channel's key, replacing any earlier one; the channel must exist. */
  async put(record: StreamKeyRecord): Promise<void> {
    await this.#db.query(
      `INSERT INTO stream_keys (id, channel, secret_hash, created_at, last_used_at)
       VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (channel) DO UPDATE SET
         id = excluded.id,
         secret_hash = excluded.secret_hash,
         created_at = excluded.created_at,
         last_used_at = excluded.last_used_at`,
      [record.id, record.channel, record.secretHash, record.createdAt, record.lastUsedAt],
    );
  }

  /** Removes the channel's key. */
  async delete(channel: string): Promise<void> {
    await this.#db.query('DELETE FROM stream_keys WHERE channel = $1', [channel]);
  }

  /** Every key, oldest first. */
  async list(): Promise<StreamKeyRecord[]> {
    const rows = await this.#db.query(`SELECT ${COLUMNS} FROM stream_keys ORDER BY created_at, id`);
    return parseRows(streamKeyRowSchema, rows);
  }
}
