import { z } from 'zod';
import { AppError } from '@hearth/server-common';
import { sharePresetIdSchema, shareRoutingSchema } from '@hearth/protocol';
import type { ChannelDirectory, ChannelRecord, ChannelSettings } from '../channel-directory';
import { isUniqueViolation, parseRows, type SqlClient } from './sql-client';

const channelRowSchema = z
  .object({
    name: z.string(),
    created_at: z.date(),
    created_by: z.string().nullable(),
    private: z.boolean(),
    max_share_preset: sharePresetIdSchema,
    share_routing: shareRoutingSchema,
  })
  .transform((row): ChannelRecord => ({
    name: row.name,
    createdAt: row.created_at,
    createdBy: row.created_by,
    private: row.private,
    maxSharePreset: row.max_share_preset,
    shareRouting: row.share_routing,
  }));

const COLUMNS = 'name, created_at, created_by, private, max_share_preset, share_routing';

/** Channel records in the `channels` table. */
export class SqlChannelDirectory implements ChannelDirectory {
  readonly #db: SqlClient;

  constructor(db: SqlClient) {
    this.#db = db;
  }

  /** Every channel, oldest first. */
  async list(page?: { limit: number; offset: number }): Promise<ChannelRecord[]> {
    const rows = await this.#db.query(
      `SELECT ${COLUMNS} FROM channels ORDER BY created_at, name LIMIT $1 OFFSET $2`,
      [page?.limit ?? null, page?.offset ?? 0],
    );
    return parseRows(channelRowSchema, rows);
  }

  /** One channel, if it exists. */
  async get(name: string): Promise<ChannelRecord | undefined> {
    const rows = await this.#db.query(`SELECT ${COLUMNS} FROM channels WHERE name = $1`, [name]);
    return parseRows(channelRowSchema, rows)[0];
  }

  /** Creates a channel, public unless `options.private`; `conflict` when the name is taken. */
  async create(
    name: string,
    createdBy?: string,
    options: { private?: boolean } = {},
  ): Promise<ChannelRecord> {
    try {
      const rows = await this.#db.query(
        `INSERT INTO channels (name, created_by, private) VALUES ($1, $2, $3) RETURNING ${COLUMNS}`,
        [name, createdBy ?? null, options.private ?? false],
      );
      return parseRows(channelRowSchema, rows)[0]!;
    } catch (error) {
      if (isUniqueViolation(error))
        throw new AppError('conflict', `channel ${name} already exists`);
      throw error;
    }
  }

  /** Creates the channel unless it exists, and returns it; safe when callers race. */
  async ensure(name: string): Promise<ChannelRecord> {
    await this.#db.query('INSERT INTO channels (name) VALUES ($1) ON CONFLICT (name) DO NOTHING', [
      name,
    ]);
    const record = await this.get(name);
    if (!record) throw new AppError('conflict', `channel ${name} was deleted while opening it`);
    return record;
  }

  /** Changes the settings named, leaving the others; `not_found` if none. */
  async update(name: string, settings: ChannelSettings): Promise<ChannelRecord> {
    const rows = await this.#db.query(
      `UPDATE channels SET private = COALESCE($2, private),
         max_share_preset = COALESCE($3, max_share_preset),
         share_routing = COALESCE($4, share_routing)
       WHERE name = $1 RETURNING ${COLUMNS}`,
      [
        name,
        settings.private ?? null,
        settings.maxSharePreset ?? null,
        settings.shareRouting ?? null,
      ],
    );
    const record = parseRows(channelRowSchema, rows)[0];
    if (!record) throw new AppError('not_found', `no channel ${name}`);
    return record;
  }

  /** Deletes a channel with its stream key and the grants given in it; `not_found` if none. */
  async delete(name: string): Promise<void> {
    await this.#db.transaction(async (tx) => {
      const deleted = await tx.query('DELETE FROM channels WHERE name = $1 RETURNING name', [name]);
      if (deleted.length === 0) throw new AppError('not_found', `no channel ${name}`);
      await tx.query('DELETE FROM memberships WHERE channel = $1', [name]);
    });
  }
}
