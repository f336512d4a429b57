import type { ChannelDirectory } from '../channel-directory';

// Joins are the hottest path of the api, and nearly all of them go to channels that exist. A
// channel seen to exist is taken as existing for a few seconds without asking the database again;
// a channel deleted meanwhile is closed on its nodes anyway, so a join in that window finds it gone.
const CHANNEL_EXISTS_TTL_MS = 5000;
const MAX_REMEMBERED = 10_000;

/** Channels recently seen to exist, so most joins skip a database read. */
export class ChannelExistenceCache {
  readonly #channels: ChannelDirectory;
  readonly #seen = new Map<string, number>();

  constructor(channels: ChannelDirectory) {
    this.#channels = channels;
  }

  /** Whether the channel exists, from the cache while it is fresh. */
  async exists(channel: string): Promise<boolean> {
    const now = performance.now();
    const seenAt = this.#seen.get(channel);
    if (seenAt !== undefined && now - seenAt < CHANNEL_EXISTS_TTL_MS) return true;
    const exists = (await this.#channels.get(channel)) !== undefined;
    // Bounded memory: forgetting every entry only costs one lookup each.
    if (this.#seen.size > MAX_REMEMBERED) this.#seen.clear();
    if (exists) this.#seen.set(channel, now);
    else this.#seen.delete(channel);
    return exists;
  }
}
