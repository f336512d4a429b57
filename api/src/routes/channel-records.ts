import type { ChannelDirectory, ChannelRecord } from '../channel-directory';

// Joins are the hottest path of the api, and nearly all of them go to channels that exist. A
// channel record read is kept for a few seconds without asking the database again. A channel
// deleted or made private meanwhile is forgotten at once on this instance (`forget`); another
// instance may admit joins on the old record for that long, and a deleted channel is closed on
// its nodes anyway.
const CHANNEL_RECORD_TTL_MS = 5000;
const MAX_REMEMBERED = 10_000;

/** Channel records recently read, so most joins skip a database read. */
export class ChannelRecordCache {
  readonly #channels: ChannelDirectory;
  readonly #seen = new Map<string, { record: ChannelRecord; at: number }>();

  constructor(channels: ChannelDirectory) {
    this.#channels = channels;
  }

  /** The channel's record, from the cache while it is fresh; undefined when there is none. */
  async get(channel: string): Promise<ChannelRecord | undefined> {
    const now = performance.now();
    const seen = this.#seen.get(channel);
    if (seen && now - seen.at < CHANNEL_RECORD_TTL_MS) return seen.record;
    const record = await this.#channels.get(channel);
    // Bounded memory: forgetting every entry only costs one lookup each.
    if (this.#seen.size > MAX_REMEMBERED) this.#seen.clear();
    if (record) this.#seen.set(channel, { record, at: now });
    else this.#seen.delete(channel);
    return record;
  }

  /** Drops a channel's record after this instance changed or deleted it. */
  forget(channel: string): void {
    this.#seen.delete(channel);
  }
}
