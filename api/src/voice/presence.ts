import { Redis } from 'ioredis';
import { z } from 'zod';
import { describeZodError, participantSchema, type Participant } from '@hearth/protocol';
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
  /** Releases connections. */
  close(): Promise<void>;
}

/** The in-process presence of a single api instance. */
export class InMemoryPresenceStore implements PresenceStore {
  readonly #byChannel = new Map<string, Map<string, Participant>>();
  readonly #byNode = new Map<string, Map<string, string>>();

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

  async close(): Promise<void> {}
}

const storedParticipantSchema = z
  .string()
  .transform((text, context) => {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      context.addIssue({ code: 'custom', message: 'not JSON' });
      return z.NEVER;
    }
  })
  .pipe(participantSchema);

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

  #channelKey(channel: string): string {
    return `${this.#prefix}presence:channel:${channel}`;
  }

  #nodeKey(nodeId: string): string {
    return `${this.#prefix}presence:node:${nodeId}`;
  }
}
