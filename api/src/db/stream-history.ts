import type { LiveStream } from '@hearth/protocol';
import type { SqlClient } from './sql-client';

/** A stream as it starts: what the control plane knows when it accepts the publisher. */
export interface StartedStream {
  /** Stream id, as in `LiveStream.id`. */
  readonly id: string;
  /** Channel it publishes to. */
  readonly channel: string;
  /** Id of the stream key used. */
  readonly keyId: string;
  /** Address the publisher connected from. */
  readonly publisherIp: string;
  /** Object key prefix of its playlists and segments. */
  readonly storagePrefix: string;
  /** When the publisher was accepted. */
  readonly startedAt: Date;
}

/** One row per stream: its start, when it became playable, its renditions, and its end. */
export interface StreamHistory {
  /** Records an accepted publisher. */
  started(stream: StartedStream): Promise<void>;
  /** Records the renditions the ingest node transcodes it into. */
  renditions(streamId: string, renditions: LiveStream['renditions']): Promise<void>;
  /** Records when its first segments were playable. */
  live(streamId: string, at: Date): Promise<void>;
  /** Records its end and why; a second end keeps the first. */
  ended(streamId: string, at: Date, reason: string): Promise<void>;
}

/** Stream history in the `stream_history` table. */
export class SqlStreamHistory implements StreamHistory {
  readonly #db: SqlClient;

  constructor(db: SqlClient) {
    this.#db = db;
  }

  /** Records an accepted publisher. */
  async started(stream: StartedStream): Promise<void> {
    await this.#db.query(
      `INSERT INTO stream_history (id, channel, key_id, publisher_ip, storage_prefix, started_at)
       VALUES ($1, $2, $3, $4, $5, $6)`,
      [
        stream.id,
        stream.channel,
        stream.keyId,
        stream.publisherIp,
        stream.storagePrefix,
        stream.startedAt,
      ],
    );
  }

  /** Records the renditions. */
  async renditions(streamId: string, renditions: LiveStream['renditions']): Promise<void> {
    await this.#db.query('UPDATE stream_history SET renditions = $2::jsonb WHERE id = $1', [
      streamId,
      JSON.stringify(renditions),
    ]);
  }

  /** Records when it became playable; a repeated report keeps the first time. */
  async live(streamId: string, at: Date): Promise<void> {
    await this.#db.query(
      'UPDATE stream_history SET live_at = coalesce(live_at, $2) WHERE id = $1',
      [streamId, at],
    );
  }

  /** Records its end; a repeated report keeps the first. */
  async ended(streamId: string, at: Date, reason: string): Promise<void> {
    await this.#db.query(
      `UPDATE stream_history SET ended_at = $2, end_reason = $3
       WHERE id = $1 AND ended_at IS NULL`,
      [streamId, at, reason],
    );
  }
}
