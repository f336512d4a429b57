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
  /** Ingest node that runs it. */
  readonly nodeId: string;
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
  /** Opens again the row of a stream that was ended while its node still ran it. */
  reopen(streamId: string): Promise<void>;
  /**
   * Ends the open rows of a node, except the streams in `keep`, with `reason`; resolves with how
   * many it ended. A node of `null` means rows from before streams named their node.
   */
  closeNode(
    nodeId: string | null,
    at: Date,
    reason: string,
    keep?: readonly string[],
  ): Promise<number>;
  /** Nodes with open rows (`null` for rows that name none). */
  nodesWithOpenStreams(): Promise<(string | null)[]>;
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
      `INSERT INTO stream_history
         (id, channel, key_id, publisher_ip, storage_prefix, started_at, node_id)
       VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (id) DO NOTHING`,
      [
        stream.id,
        stream.channel,
        stream.keyId,
        stream.publisherIp,
        stream.storagePrefix,
        stream.startedAt,
        stream.nodeId,
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

  /** Opens a row again. */
  async reopen(streamId: string): Promise<void> {
    await this.#db.query(
      'UPDATE stream_history SET ended_at = NULL, end_reason = NULL WHERE id = $1',
      [streamId],
    );
  }

  /** Ends a node's open rows but those in `keep`. */
  async closeNode(
    nodeId: string | null,
    at: Date,
    reason: string,
    keep: readonly string[] = [],
  ): Promise<number> {
    const rows = await this.#db.query(
      `UPDATE stream_history SET ended_at = $2, end_reason = $3
       WHERE node_id IS NOT DISTINCT FROM $1 AND ended_at IS NULL AND NOT (id = ANY($4::uuid[]))
       RETURNING id`,
      [nodeId, at, reason, [...keep]],
    );
    return rows.length;
  }

  /** Nodes with open rows. */
  async nodesWithOpenStreams(): Promise<(string | null)[]> {
    const rows = await this.#db.query(
      'SELECT DISTINCT node_id FROM stream_history WHERE ended_at IS NULL',
    );
    return rows.map((row) => (row.node_id as string | null) ?? null);
  }
}
