import { Redis } from 'ioredis';
import { z } from 'zod';
import {
  describeZodError,
  participantLinkSchema,
  participantSchema,
  type Participant,
  type ParticipantLink,
} from '@hearth/protocol';
import { ServiceUnavailableError } from '@hearth/server-common';
import { DEFAULT_REDIS_COMMAND_TIMEOUT_MS } from '../nodes/registry';

/**
 * Who is in which voice channel, across every node, as the nodes report it: what the channel
 * list shows. In Redis it is shared by every api instance; in process it serves one.
 */
export interface PresenceStore {
  /** Adds or updates a participant served by a node. */
  upsert(nodeId: string, channel: string, participant: Participant): Promise<void>;
  /** Removes a participant that left. */
  remove(nodeId: string, peerId: string): Promise<void>;
  /** Removes every participant of a node that went down. */
  removeNode(nodeId: string): Promise<void>;
  /**
   * Makes a node's participants exactly these, as the node replays them after registering:
   * whatever else was listed for the node goes.
   */
  replaceNode(
    nodeId: string,
    participants: readonly { channel: string; participant: Participant }[],
  ): Promise<void>;
  /** The participants of a channel, in no particular order. */
  list(channel: string): Promise<Participant[]>;
  /**
   * Keeps what a node last reported of its participants' links in a channel, for `LINKS_TTL_MS`
   * (a node reports every few seconds; a gone node's report lapses by itself).
   */
  putLinks(nodeId: string, channel: string, links: readonly ParticipantLink[]): Promise<void>;
  /** The links every node reported for a channel, still fresh. */
  links(channel: string): Promise<ParticipantLink[]>;
  /** Releases connections. */
  close(): Promise<void>;
}

/** How long a node's report of its participants' links stays readable. */
export const LINKS_TTL_MS = 30_000;

/** The in-process presence of a single api instance. */
export class InMemoryPresenceStore implements PresenceStore {
  readonly #byChannel = new Map<string, Map<string, Participant>>();
  readonly #byNode = new Map<string, Map<string, string>>();
  readonly #links = new Map<string, Map<string, { links: ParticipantLink[]; expiresAt: number }>>();

  async upsert(nodeId: string, channel: string, participant: Participant): Promise<void> {
    let participants = this.#byChannel.get(channel);
    if (!participants) {
      participants = new Map();
      this.#byChannel.set(channel, participants);
    }
    participants.set(participant.id, participant);
    let peers = this.#byNode.get(nodeId);
    if (!peers) {
      peers = new Map();
      this.#byNode.set(nodeId, peers);
    }
    peers.set(participant.id, channel);
  }

  async remove(nodeId: string, peerId: string): Promise<void> {
    const channel = this.#byNode.get(nodeId)?.get(peerId);
    if (channel === undefined) return;
    this.#byNode.get(nodeId)!.delete(peerId);
    const participants = this.#byChannel.get(channel);
    participants?.delete(peerId);
    if (participants?.size === 0) this.#byChannel.delete(channel);
  }

  async removeNode(nodeId: string): Promise<void> {
    for (const peerId of [...(this.#byNode.get(nodeId)?.keys() ?? [])]) {
      await this.remove(nodeId, peerId);
    }
    this.#byNode.delete(nodeId);
  }

  async replaceNode(
    nodeId: string,
    participants: readonly { channel: string; participant: Participant }[],
  ): Promise<void> {
    await this.removeNode(nodeId);
    for (const { channel, participant } of participants) {
      await this.upsert(nodeId, channel, participant);
    }
  }

  async list(channel: string): Promise<Participant[]> {
    return [...(this.#byChannel.get(channel)?.values() ?? [])];
  }

  async putLinks(
    nodeId: string,
    channel: string,
    links: readonly ParticipantLink[],
  ): Promise<void> {
    let byNode = this.#links.get(channel);
    if (!byNode) {
      byNode = new Map();
      this.#links.set(channel, byNode);
    }
    byNode.set(nodeId, { links: [...links], expiresAt: Date.now() + LINKS_TTL_MS });
  }

  async links(channel: string): Promise<ParticipantLink[]> {
    const byNode = this.#links.get(channel);
    if (!byNode) return [];
    const now = Date.now();
    for (const [nodeId, report] of byNode) if (report.expiresAt <= now) byNode.delete(nodeId);
    if (byNode.size === 0) this.#links.delete(channel);
    return [...byNode.values()].flatMap((report) => report.links);
  }

  async close(): Promise<void> {}
}

// A JSON string as stored in Redis, parsed and checked against `schema`.
function storedJson<T extends z.ZodType>(schema: T) {
  return z
    .string()
    .transform((text, context) => {
      try {
        return JSON.parse(text) as unknown;
      } catch {
        context.addIssue({ code: 'custom', message: 'not JSON' });
        return z.NEVER;
      }
    })
    .pipe(schema);
}

const storedParticipantSchema = storedJson(participantSchema);

const storedLinksSchema = storedJson(
  z.object({ expiresAt: z.number(), links: z.array(participantLinkSchema) }),
);

/**
 * Presence in Redis: a hash per channel (peer id → participant) and one per node (peer id →
 * channel), so a node that went down is cleared without scanning every channel.
 */
export class RedisPresenceStore implements PresenceStore {
  readonly #redis: Redis;
  readonly #prefix: string;

  constructor(options: {
    url: string;
    prefix?: string;
    /** Time a command may take before it fails: a hung Redis must not hold up a node's messages. */
    commandTimeoutMs?: number;
  }) {
    this.#redis = new Redis(options.url, {
      maxRetriesPerRequest: 3,
      enableAutoPipelining: true,
      commandTimeout: options.commandTimeoutMs ?? DEFAULT_REDIS_COMMAND_TIMEOUT_MS,
    });
    // A lost connection shows as failed commands, which their callers log; without a listener
    // ioredis would also print every reconnect attempt on stderr.
    this.#redis.on('error', () => undefined);
    this.#prefix = options.prefix ?? 'hearth:';
  }

  async upsert(nodeId: string, channel: string, participant: Participant): Promise<void> {
    await this.#redis
      .multi()
      .hset(this.#channelKey(channel), participant.id, JSON.stringify(participant))
      .hset(this.#nodeKey(nodeId), participant.id, channel)
      .exec();
  }

  async remove(nodeId: string, peerId: string): Promise<void> {
    const channel = await this.#redis.hget(this.#nodeKey(nodeId), peerId);
    if (channel === null) return;
    await this.#redis
      .multi()
      .hdel(this.#channelKey(channel), peerId)
      .hdel(this.#nodeKey(nodeId), peerId)
      .exec();
  }

  async removeNode(nodeId: string): Promise<void> {
    const peers = await this.#redis.hgetall(this.#nodeKey(nodeId));
    const transaction = this.#redis.multi();
    for (const [peerId, channel] of Object.entries(peers)) {
      transaction.hdel(this.#channelKey(channel), peerId);
    }
    await transaction.del(this.#nodeKey(nodeId)).exec();
  }

  async replaceNode(
    nodeId: string,
    participants: readonly { channel: string; participant: Participant }[],
  ): Promise<void> {
    const previous = await this.#redis.hgetall(this.#nodeKey(nodeId));
    // One transaction: a reader never sees the node's participants half replaced.
    const transaction = this.#redis.multi();
    for (const [peerId, channel] of Object.entries(previous)) {
      transaction.hdel(this.#channelKey(channel), peerId);
    }
    transaction.del(this.#nodeKey(nodeId));
    for (const { channel, participant } of participants) {
      transaction
        .hset(this.#channelKey(channel), participant.id, JSON.stringify(participant))
        .hset(this.#nodeKey(nodeId), participant.id, channel);
    }
    await transaction.exec();
  }

  async list(channel: string): Promise<Participant[]> {
    // Read by requests (channel pages, guests' joins): an outage answers 503, not 500.
    const stored = await this.#redis.hvals(this.#channelKey(channel)).catch((error: unknown) => {
      throw new ServiceUnavailableError('presence', { cause: error });
    });
    return stored.map((text) => {
      const parsed = storedParticipantSchema.safeParse(text);
      if (!parsed.success) {
        throw new Error(`invalid presence in Redis: ${describeZodError(parsed.error)}`);
      }
      return parsed.data;
    });
  }

  async close(): Promise<void> {
    await this.#redis.quit();
  }

  async putLinks(
    nodeId: string,
    channel: string,
    links: readonly ParticipantLink[],
  ): Promise<void> {
    const report = JSON.stringify({ expiresAt: Date.now() + LINKS_TTL_MS, links });
    await this.#redis
      .multi()
      .hset(this.#linksKey(channel), nodeId, report)
      .pexpire(this.#linksKey(channel), LINKS_TTL_MS)
      .exec();
  }

  async links(channel: string): Promise<ParticipantLink[]> {
    const reports = await this.#redis.hvals(this.#linksKey(channel)).catch((error: unknown) => {
      throw new ServiceUnavailableError('presence', { cause: error });
    });
    const now = Date.now();
    return reports.flatMap((text) => {
      const parsed = storedLinksSchema.safeParse(text);
      if (!parsed.success) {
        throw new Error(`invalid links in Redis: ${describeZodError(parsed.error)}`);
      }
      return parsed.data.expiresAt > now ? parsed.data.links : [];
    });
  }

  #linksKey(channel: string): string {
    return `${this.#prefix}presence:links:${channel}`;
  }

  #channelKey(channel: string): string {
    return `${this.#prefix}presence:channel:${channel}`;
  }

  #nodeKey(nodeId: string): string {
    return `${this.#prefix}presence:node:${nodeId}`;
  }
}
