import { Redis, ReplyError } from 'ioredis';
import { z } from 'zod';
import { liveStreamSchema, type LiveStream, type RenditionInfo } from '@hearth/protocol';
import { ServiceUnavailableError, type Logger } from '@hearth/server-common';
import { DEFAULT_REDIS_COMMAND_TIMEOUT_MS } from '../nodes/registry';

/** A stream the control plane knows: what players see of it, and who runs it. */
export interface StreamRecord {
  /** The stream as players see it; viewers are counted apart, per channel. */
  readonly stream: Omit<LiveStream, 'viewers'>;
  /** Id of the stream key it was published with. */
  readonly keyId: string;
  /** Ingest node that runs it. */
  readonly nodeId: string;
  /** When its node last vouched for it (its publish check or a replay), ISO 8601. */
  readonly seenAt: string;
  /** For a bridged screen share: whether its new spectators are sent to this stream now. */
  readonly shareAudience?: boolean;
  /** For a bridged screen share: whether its spectators on WebRTC move to this stream too. */
  readonly moveWebrtc?: boolean;
}

/** A change to a stream that has not ended. */
export interface StreamChange {
  /** `live` once playable. */
  readonly state?: 'live';
  /** Renditions being produced. */
  readonly renditions?: RenditionInfo[];
  /** Its node vouched for it again. */
  readonly seenAt?: string;
  /** The handoff policy sends the bridged share's new spectators to it, or no longer. */
  readonly shareAudience?: boolean;
  /** The handoff policy moves the bridged share's WebRTC spectators to it, or no longer. */
  readonly moveWebrtc?: boolean;
}

/** How long an ended stream stays readable, so players that poll see "ended", not "offline". */
export const ENDED_STREAM_RETENTION_MS = 60_000;

/**
 * Live streams and viewer counts, shared by the api instances of a cluster: in Redis when
 * `REDIS_URL` is set, in the api process otherwise. A channel has at most one stream that has
 * not ended; an ended stream stays readable for `ENDED_STREAM_RETENTION_MS`.
 */
export interface LiveStreamStore {
  /** Registers a starting stream unless its channel has one that has not ended; false then. */
  claim(record: StreamRecord): Promise<boolean>;
  /** Applies a change to a stream that has not ended; the new record, or undefined. */
  update(streamId: string, change: StreamChange): Promise<StreamRecord | undefined>;
  /**
   * Ends a stream; the ended record, or undefined when it was unknown or had ended. With
   * `seenBefore`, a stream its node vouched for at or after that time is left alone.
   */
  end(streamId: string, endedAt: Date, seenBefore?: Date): Promise<StreamRecord | undefined>;
  /** A stream by id, ended or not. */
  get(streamId: string): Promise<StreamRecord | undefined>;
  /** Every stream that has not ended. */
  live(): Promise<StreamRecord[]>;
  /** The channel's stream: the one that has not ended, or its last for a while after it ended. */
  ofChannel(channel: string): Promise<StreamRecord | undefined>;
  /** Adds `delta` to the channel's viewer count; resolves with the new count. */
  addViewers(channel: string, delta: number): Promise<number>;
  /** Viewer counts of these channels. */
  viewers(channels: readonly string[]): Promise<Map<string, number>>;
  /** Releases connections. */
  close(): Promise<void>;
}

function ended(record: StreamRecord | undefined): boolean {
  return record?.stream.state === 'ended';
}

function applyChange(record: StreamRecord, change: StreamChange): StreamRecord {
  return {
    ...record,
    stream: {
      ...record.stream,
      ...(change.state ? { state: change.state } : {}),
      ...(change.renditions ? { renditions: change.renditions } : {}),
    },
    seenAt: change.seenAt ?? record.seenAt,
    ...(change.shareAudience === undefined ? {} : { shareAudience: change.shareAudience }),
    ...(change.moveWebrtc === undefined ? {} : { moveWebrtc: change.moveWebrtc }),
  };
}

function seenSince(record: StreamRecord, since: Date | undefined): boolean {
  return since !== undefined && Date.parse(record.seenAt) >= since.getTime();
}

function endRecord(record: StreamRecord, endedAt: Date): StreamRecord {
  return {
    ...record,
    stream: { ...record.stream, state: 'ended', endedAt: endedAt.toISOString() },
  };
}

/** The store of a single api process. */
export class InMemoryLiveStreamStore implements LiveStreamStore {
  readonly #records = new Map<string, StreamRecord>();
  readonly #byChannel = new Map<string, string>();
  readonly #viewers = new Map<string, number>();
  readonly #expiry = new Set<NodeJS.Timeout>();

  async claim(record: StreamRecord): Promise<boolean> {
    const current = this.#byChannel.get(record.stream.channel);
    if (current !== undefined && !ended(this.#records.get(current))) return false;
    this.#records.set(record.stream.id, record);
    this.#byChannel.set(record.stream.channel, record.stream.id);
    return true;
  }

  async update(streamId: string, change: StreamChange): Promise<StreamRecord | undefined> {
    const record = this.#records.get(streamId);
    if (!record || ended(record)) return undefined;
    const next = applyChange(record, change);
    this.#records.set(streamId, next);
    return next;
  }

  async end(streamId: string, endedAt: Date, seenBefore?: Date): Promise<StreamRecord | undefined> {
    const record = this.#records.get(streamId);
    if (!record || ended(record) || seenSince(record, seenBefore)) return undefined;
    const next = endRecord(record, endedAt);
    this.#records.set(streamId, next);
    const timer = setTimeout(() => {
      this.#expiry.delete(timer);
      if (this.#records.get(streamId) !== next) return;
      this.#records.delete(streamId);
      if (this.#byChannel.get(next.stream.channel) === streamId) {
        this.#byChannel.delete(next.stream.channel);
      }
    }, ENDED_STREAM_RETENTION_MS);
    timer.unref();
    this.#expiry.add(timer);
    return next;
  }

  async get(streamId: string): Promise<StreamRecord | undefined> {
    return this.#records.get(streamId);
  }

  async live(): Promise<StreamRecord[]> {
    return [...this.#records.values()].filter((record) => !ended(record));
  }

  async ofChannel(channel: string): Promise<StreamRecord | undefined> {
    const id = this.#byChannel.get(channel);
    return id === undefined ? undefined : this.#records.get(id);
  }

  async addViewers(channel: string, delta: number): Promise<number> {
    const viewers = Math.max(0, (this.#viewers.get(channel) ?? 0) + delta);
    if (viewers === 0) this.#viewers.delete(channel);
    else this.#viewers.set(channel, viewers);
    return viewers;
  }

  async viewers(channels: readonly string[]): Promise<Map<string, number>> {
    return new Map(channels.map((channel) => [channel, this.#viewers.get(channel) ?? 0]));
  }

  async close(): Promise<void> {
    for (const timer of this.#expiry) clearTimeout(timer);
    this.#expiry.clear();
  }
}

const streamRecordSchema = z.object({
  stream: liveStreamSchema.omit({ viewers: true }),
  keyId: z.string(),
  nodeId: z.string(),
  seenAt: z.string(),
  shareAudience: z.boolean().optional(),
  moveWebrtc: z.boolean().optional(),
});

const scripts = {
  // KEYS: channel pointer, record, live set. ARGV: id, record JSON, record key prefix.
  hearthClaimStream: `
    local current = redis.call('GET', KEYS[1])
    if current then
      local existing = redis.call('GET', ARGV[3] .. current)
      if existing and cjson.decode(existing).stream.state ~= 'ended' then return 0 end
    end
    redis.call('SET', KEYS[1], ARGV[1])
    redis.call('SET', KEYS[2], ARGV[2])
    redis.call('SADD', KEYS[3], ARGV[1])
    return 1`,
  // KEYS: record, live set, channel pointer. ARGV: id, new record JSON, 'ended' or '',
  // retention in ms, the seenAt the record was read with. Writes only over a record that has not
  // ended and that its node has not vouched for since it was read; returns 1 when written.
  hearthUpdateStream: `
    local existing = redis.call('GET', KEYS[1])
    if not existing then return 0 end
    local record = cjson.decode(existing)
    if record.stream.state == 'ended' or record.seenAt ~= ARGV[5] then return 0 end
    if ARGV[3] == 'ended' then
      redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])
      redis.call('SREM', KEYS[2], ARGV[1])
      if redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('PEXPIRE', KEYS[3], ARGV[4]) end
    else
      redis.call('SET', KEYS[1], ARGV[2])
    end
    return 1`,
} as const;

type ScriptCommands = {
  [K in keyof typeof scripts]: (...args: (string | number)[]) => Promise<number>;
};

/**
 * The store of a cluster, in Redis. Keys, under the prefix (`hearth:`): `stream:<id>` (JSON
 * record), `stream-channel:<channel>` (id of the channel's stream), `streams-live` (set of ids),
 * `stream-viewers:<channel>` (count). Ended records and their channel pointers expire after the
 * retention time. A call that cannot reach Redis rejects with ServiceUnavailableError.
 */
export class RedisLiveStreamStore implements LiveStreamStore {
  readonly #redis: Redis;
  readonly #prefix: string;

  constructor(options: { url: string; logger: Logger; keyPrefix?: string }) {
    this.#prefix = options.keyPrefix ?? 'hearth:';
    this.#redis = new Redis(options.url, {
      maxRetriesPerRequest: 3,
      commandTimeout: DEFAULT_REDIS_COMMAND_TIMEOUT_MS,
    });
    this.#redis.on('error', (error: unknown) =>
      options.logger.warn({ err: error }, 'live streams: Redis connection error'),
    );
    this.#redis.defineCommand('hearthClaimStream', {
      lua: scripts.hearthClaimStream,
      numberOfKeys: 3,
    });
    this.#redis.defineCommand('hearthUpdateStream', {
      lua: scripts.hearthUpdateStream,
      numberOfKeys: 3,
    });
  }

  get #scripts(): ScriptCommands {
    return this.#redis as unknown as ScriptCommands;
  }

  #recordKey(id: string): string {
    return `${this.#prefix}stream:${id}`;
  }

  #channelKey(channel: string): string {
    return `${this.#prefix}stream-channel:${channel}`;
  }

  #viewersKey(channel: string): string {
    return `${this.#prefix}stream-viewers:${channel}`;
  }

  get #liveKey(): string {
    return `${this.#prefix}streams-live`;
  }

  async claim(record: StreamRecord): Promise<boolean> {
    const claimed = await call(() =>
      this.#scripts.hearthClaimStream(
        this.#channelKey(record.stream.channel),
        this.#recordKey(record.stream.id),
        this.#liveKey,
        record.stream.id,
        JSON.stringify(record),
        `${this.#prefix}stream:`,
      ),
    );
    return claimed === 1;
  }

  async update(streamId: string, change: StreamChange): Promise<StreamRecord | undefined> {
    // A write that lost a race with another one (a replay, a report) is made again on what won.
    for (let attempt = 0; attempt < 3; attempt++) {
      const record = await this.get(streamId);
      if (!record || ended(record)) return undefined;
      const next = applyChange(record, change);
      if (await this.#write(next, '', record.seenAt)) return next;
    }
    return undefined;
  }

  async end(streamId: string, endedAt: Date, seenBefore?: Date): Promise<StreamRecord | undefined> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const record = await this.get(streamId);
      if (!record || ended(record) || seenSince(record, seenBefore)) return undefined;
      const next = endRecord(record, endedAt);
      if (await this.#write(next, 'ended', record.seenAt)) return next;
    }
    return undefined;
  }

  async #write(record: StreamRecord, mark: '' | 'ended', readSeenAt: string): Promise<boolean> {
    const written = await call(() =>
      this.#scripts.hearthUpdateStream(
        this.#recordKey(record.stream.id),
        this.#liveKey,
        this.#channelKey(record.stream.channel),
        record.stream.id,
        JSON.stringify(record),
        mark,
        ENDED_STREAM_RETENTION_MS,
        readSeenAt,
      ),
    );
    return written === 1;
  }

  async get(streamId: string): Promise<StreamRecord | undefined> {
    const text = await call(() => this.#redis.get(this.#recordKey(streamId)));
    return text === null ? undefined : streamRecordSchema.parse(JSON.parse(text));
  }

  async live(): Promise<StreamRecord[]> {
    const ids = await call(() => this.#redis.smembers(this.#liveKey));
    if (ids.length === 0) return [];
    const texts = await call(() => this.#redis.mget(ids.map((id) => this.#recordKey(id))));
    return texts.flatMap((text) =>
      text === null ? [] : [streamRecordSchema.parse(JSON.parse(text))],
    );
  }

  async ofChannel(channel: string): Promise<StreamRecord | undefined> {
    const id = await call(() => this.#redis.get(this.#channelKey(channel)));
    return id === null ? undefined : this.get(id);
  }

  async addViewers(channel: string, delta: number): Promise<number> {
    const key = this.#viewersKey(channel);
    const viewers = await call(() => this.#redis.incrby(key, delta));
    if (viewers <= 0) {
      await call(() => this.#redis.del(key));
      return 0;
    }
    return viewers;
  }

  async viewers(channels: readonly string[]): Promise<Map<string, number>> {
    if (channels.length === 0) return new Map();
    const counts = await call(() =>
      this.#redis.mget(channels.map((channel) => this.#viewersKey(channel))),
    );
    return new Map(
      channels.map((channel, index) => [channel, Math.max(0, Number(counts[index] ?? 0))]),
    );
  }

  async close(): Promise<void> {
    await this.#redis.quit().catch(() => this.#redis.disconnect());
  }
}

// Redis answering with an error is a bug and stays one; anything else means it cannot be reached.
async function call<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof ReplyError) throw error;
    throw new ServiceUnavailableError('live streams', { cause: error });
  }
}
