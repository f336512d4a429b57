import { Redis, ReplyError } from 'ioredis';
import { z } from 'zod';
import {
  channelAssignmentSchema,
  describeZodError,
  nodeLoadSchema,
  nodeRegistrationSchema,
  nodeStatusSchema,
  type ChannelAssignment,
  type NodeInfo,
  type NodeLoad,
  type NodeRegistration,
} from '@hearth/protocol';
import { AppError, ServiceUnavailableError, type Logger } from '@hearth/server-common';
import type { NodeSnapshot } from './placement';

/** A registered node as the registry keeps it; times are epoch milliseconds. */
export interface NodeRecord extends NodeSnapshot {
  /** When the last heartbeat (or the registration) arrived. */
  readonly lastHeartbeatAt: number;
  /** When the latest placement reserved a seat on it, or 0. */
  readonly pendingSince: number;
  /** When the node registered. */
  readonly registeredAt: number;
}

/**
 * Thrown by `heartbeat` for a node the registry does not know or has marked down: the node must
 * register again (its channels may have moved elsewhere meanwhile).
 */
export class NodeNotRegisteredError extends AppError {
  /** Whether the registry never heard of the node (or dropped it), or marked it down. */
  readonly reason: 'unknown' | 'down';

  constructor(id: string, reason: 'unknown' | 'down') {
    super(
      'not_found',
      reason === 'unknown'
        ? `node ${id} is not registered; register again`
        : `node ${id} was marked down; register again`,
    );
    this.name = 'NodeNotRegisteredError';
    this.reason = reason;
  }
}

/** Nodes and channel assignments, shared by every api instance of a cluster. */
export interface NodeRegistry {
  /** Adds a node, or resets it when its id is known: status up, zero load, no pending. */
  register(registration: NodeRegistration, now: number): Promise<NodeRecord>;
  /** Records a load report; throws `NodeNotRegisteredError` for an unknown or down node. */
  heartbeat(id: string, load: NodeLoad, now: number): Promise<void>;
  /** Every known node, by id. */
  list(): Promise<NodeRecord[]>;
  /** One node, if known. */
  get(id: string): Promise<NodeRecord | undefined>;
  /**
   * Marks an up node down; with `lastHeartbeatBefore`, only if its last heartbeat is older.
   * Resolves true only for the call that changed the status, so one caller announces it.
   */
  markDown(id: string, options?: { lastHeartbeatBefore?: number }): Promise<boolean>;
  /** Forgets a node; resolves whether it was known. Assignments naming it are left alone. */
  remove(id: string): Promise<boolean>;
  /**
   * Adds `delta` (1 by default, -1 to take a placement back) to the participants placed on a
   * known node and not yet seen in its load, never below 0; resolves the new count, or undefined
   * for an unknown node. Atomic, so concurrent placements see each other's reservations. Each
   * reservation is taken back when its join token is admitted or expires (`JoinReservations`);
   * as a backstop for an api instance that died holding some, a heartbeat drops them all once
   * the newest is older than `PENDING_TTL_MS`.
   */
  addPending(id: string, delta?: number, now?: number): Promise<number | undefined>;
  /** The channel's assignment, if it has one. */
  assignment(channel: string): Promise<ChannelAssignment | undefined>;
  /**
   * Writes `next` (or deletes the assignment when undefined) only if the stored assignment has
   * `expectedVersion` (or there is none when undefined); resolves whether it wrote. A `next`
   * with the expected version itself (no change) matches only an equal stored assignment:
   * versions restart at 1 after a delete, and this keeps a placement read before a release and
   * re-allocation from passing as current.
   */
  compareAndSetAssignment(
    channel: string,
    expectedVersion: number | undefined,
    next: ChannelAssignment | undefined,
  ): Promise<boolean>;
  /** Every assignment, by channel. */
  assignments(): Promise<ChannelAssignment[]>;
  /** Channels whose assignment names the node as core or edge, sorted. */
  channelsOnNode(id: string): Promise<string[]>;
  /**
   * Records that an api instance has written every heartbeat its nodes sent up to `at`, and
   * resolves with each instance's latest such time (this one's included).
   */
  vouch(instanceId: string, at: number): Promise<Map<string, number>>;
  /** Drops an api instance's vouches: it stopped, or it is gone. */
  forgetInstance(instanceId: string): Promise<void>;
  /** Releases connections; the registry is unusable afterwards. */
  close(): Promise<void>;
}

/** The REST view of a node record. */
export function toNodeInfo(record: NodeRecord): NodeInfo {
  return {
    ...record.registration,
    load: record.load,
    status: record.status,
    lastHeartbeatAt: new Date(record.lastHeartbeatAt).toISOString(),
    registeredAt: new Date(record.registeredAt).toISOString(),
  };
}

const zeroLoad: NodeLoad = nodeLoadSchema.parse({});

function copyAssignment(assignment: ChannelAssignment): ChannelAssignment {
  return { ...assignment, edges: [...assignment.edges] };
}

function byId(a: NodeRecord, b: NodeRecord): number {
  return a.registration.id < b.registration.id ? -1 : a.registration.id > b.registration.id ? 1 : 0;
}

function sameAssignment(a: ChannelAssignment, b: ChannelAssignment): boolean {
  return (
    JSON.stringify(channelAssignmentSchema.parse(a)) ===
    JSON.stringify(channelAssignmentSchema.parse(b))
  );
}

function checkAssignmentChannel(channel: string, next: ChannelAssignment | undefined): void {
  if (next && next.channel !== channel) {
    throw new Error(`assignment of channel ${next.channel} written under channel ${channel}`);
  }
}

/**
 * How long after the newest reservation a heartbeat drops every reservation of a node: longer
 * than a join token lives by default, so only reservations nobody settled (their api instance
 * died) go this way.
 */
export const PENDING_TTL_MS = 65_000;

function pendingAfterHeartbeat(record: NodeRecord, now: number): number {
  return now - record.pendingSince > PENDING_TTL_MS ? 0 : record.pending;
}

/** The in-process registry of the embedded profile, and of tests. */
export class InMemoryNodeRegistry implements NodeRegistry {
  readonly #nodes = new Map<string, NodeRecord>();
  readonly #assignments = new Map<string, ChannelAssignment>();
  readonly #vouches = new Map<string, number>();

  async register(registration: NodeRegistration, now: number): Promise<NodeRecord> {
    const record: NodeRecord = {
      registration,
      load: zeroLoad,
      status: 'up',
      pending: 0,
      pendingSince: 0,
      lastHeartbeatAt: now,
      registeredAt: now,
    };
    this.#nodes.set(registration.id, record);
    return record;
  }

  async heartbeat(id: string, load: NodeLoad, now: number): Promise<void> {
    const record = this.#nodes.get(id);
    if (!record) throw new NodeNotRegisteredError(id, 'unknown');
    if (record.status === 'down') throw new NodeNotRegisteredError(id, 'down');
    const pending = pendingAfterHeartbeat(record, now);
    this.#nodes.set(id, { ...record, load, lastHeartbeatAt: now, pending });
  }

  async list(): Promise<NodeRecord[]> {
    return [...this.#nodes.values()].sort(byId);
  }

  async get(id: string): Promise<NodeRecord | undefined> {
    return this.#nodes.get(id);
  }

  async markDown(id: string, options: { lastHeartbeatBefore?: number } = {}): Promise<boolean> {
    const record = this.#nodes.get(id);
    if (!record || record.status !== 'up') return false;
    const before = options.lastHeartbeatBefore;
    if (before !== undefined && record.lastHeartbeatAt >= before) return false;
    this.#nodes.set(id, { ...record, status: 'down' });
    return true;
  }

  async remove(id: string): Promise<boolean> {
    return this.#nodes.delete(id);
  }

  async addPending(id: string, delta = 1, now = Date.now()): Promise<number | undefined> {
    const record = this.#nodes.get(id);
    if (!record) return undefined;
    const pending = Math.max(0, record.pending + delta);
    const pendingSince = delta > 0 ? now : record.pendingSince;
    this.#nodes.set(id, { ...record, pending, pendingSince });
    return pending;
  }

  async assignment(channel: string): Promise<ChannelAssignment | undefined> {
    const assignment = this.#assignments.get(channel);
    return assignment && copyAssignment(assignment);
  }

  async compareAndSetAssignment(
    channel: string,
    expectedVersion: number | undefined,
    next: ChannelAssignment | undefined,
  ): Promise<boolean> {
    checkAssignmentChannel(channel, next);
    const current = this.#assignments.get(channel);
    if (current?.version !== expectedVersion) return false;
    if (current && next && next.version === expectedVersion) return sameAssignment(current, next);
    if (next) this.#assignments.set(channel, copyAssignment(channelAssignmentSchema.parse(next)));
    else this.#assignments.delete(channel);
    return true;
  }

  async assignments(): Promise<ChannelAssignment[]> {
    return [...this.#assignments.keys()]
      .sort()
      .map((c) => copyAssignment(this.#assignments.get(c)!));
  }

  async channelsOnNode(id: string): Promise<string[]> {
    return [...this.#assignments.values()]
      .filter((assignment) => assignment.core === id || assignment.edges.includes(id))
      .map((assignment) => assignment.channel)
      .sort();
  }

  async vouch(instanceId: string, at: number): Promise<Map<string, number>> {
    this.#vouches.set(instanceId, at);
    return new Map(this.#vouches);
  }

  async forgetInstance(instanceId: string): Promise<void> {
    this.#vouches.delete(instanceId);
  }

  async close(): Promise<void> {}
}

/** Parses a JSON text field, then checks the value against a schema. */
function jsonText<S extends z.ZodType>(schema: S) {
  return z
    .string()
    .transform((text, ctx): unknown => {
      try {
        return JSON.parse(text);
      } catch {
        ctx.addIssue({ code: 'custom', message: 'not valid JSON' });
        return z.NEVER;
      }
    })
    .pipe(schema);
}

const decimalInteger = z.string().regex(/^\d+$/).transform(Number);
const vouchesSchema = z.record(z.string(), decimalInteger);

// A node hash as Redis returns it: every field a string.
const storedNodeSchema = z.object({
  registration: jsonText(nodeRegistrationSchema),
  load: jsonText(nodeLoadSchema),
  status: nodeStatusSchema,
  pending: decimalInteger,
  pendingSince: decimalInteger,
  lastHeartbeatAt: decimalInteger,
  registeredAt: decimalInteger,
});

const storedAssignmentSchema = jsonText(channelAssignmentSchema);

// Each script runs atomically in Redis, which is what makes these steps safe across api instances.
const scripts = {
  /**
   * KEYS: node hash. ARGV: load JSON, now, its participants, PENDING_TTL_MS. Returns 1 done,
   * 0 unknown, 2 down. Drops stale reservations as pendingAfterHeartbeat does.
   */
  hearthHeartbeat: `
    local status = redis.call('HGET', KEYS[1], 'status')
    if not status then return 0 end
    if status ~= 'up' then return 2 end
    local pending = tonumber(redis.call('HGET', KEYS[1], 'pending') or '0')
    local since = tonumber(redis.call('HGET', KEYS[1], 'pendingSince') or '0')
    local now = tonumber(ARGV[2])
    if pending > 0 and now - since > tonumber(ARGV[4]) then
      pending = 0
    end
    redis.call('HSET', KEYS[1], 'load', ARGV[1], 'lastHeartbeatAt', ARGV[2], 'pending', pending)
    return 1`,
  /** KEYS: node hash. ARGV: last-heartbeat bound or ''. Returns 1 when it changed the status. */
  hearthMarkDown: `
    if redis.call('HGET', KEYS[1], 'status') ~= 'up' then return 0 end
    if ARGV[1] ~= '' and tonumber(redis.call('HGET', KEYS[1], 'lastHeartbeatAt')) >= tonumber(ARGV[1]) then
      return 0
    end
    redis.call('HSET', KEYS[1], 'status', 'down')
    return 1`,
  /** KEYS: node hash. ARGV: delta, now. Returns the new pending count, or -1 for an unknown node. */
  hearthAddPending: `
    if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
    if tonumber(ARGV[1]) > 0 then redis.call('HSET', KEYS[1], 'pendingSince', ARGV[2]) end
    local pending = redis.call('HINCRBY', KEYS[1], 'pending', ARGV[1])
    if pending < 0 then
      redis.call('HSET', KEYS[1], 'pending', 0)
      return 0
    end
    return pending`,
  /**
   * KEYS: assignment key, assignment set. ARGV: expected version or '', next JSON or '', channel,
   * node-channels key prefix, then the next assignment's node ids. Keeps the per-node channel
   * sets in step with the assignments. Returns 1 when it wrote (or, for a next assignment at the
   * stored version, when the stored one is the same text).
   */
  hearthCompareAndSet: `
    local current = redis.call('GET', KEYS[1])
    local previousNodes = {}
    if current then
      local decoded = cjson.decode(current)
      if ARGV[1] == '' or tonumber(ARGV[1]) ~= decoded.version then return 0 end
      if ARGV[2] ~= '' and cjson.decode(ARGV[2]).version == decoded.version then
        if ARGV[2] == current then return 1 end
        return 0
      end
      previousNodes = { decoded.core }
      for _, id in ipairs(decoded.edges) do table.insert(previousNodes, id) end
    elseif ARGV[1] ~= '' then
      return 0
    end
    for _, id in ipairs(previousNodes) do redis.call('SREM', ARGV[4] .. id, ARGV[3]) end
    if ARGV[2] == '' then
      redis.call('DEL', KEYS[1])
      redis.call('SREM', KEYS[2], ARGV[3])
    else
      redis.call('SET', KEYS[1], ARGV[2])
      redis.call('SADD', KEYS[2], ARGV[3])
      for i = 5, #ARGV do redis.call('SADD', ARGV[4] .. ARGV[i], ARGV[3]) end
    end
    return 1`,
} as const;

/** Default time a Redis command may take before it fails as an outage, in milliseconds. */
export const DEFAULT_REDIS_COMMAND_TIMEOUT_MS = 1000;

/**
 * What a failed Redis call means: Redis answering with an error (`ReplyError`) is a bug and stays
 * as it is; anything else from the client (refused, reset, timed out, retries exhausted) means
 * the store cannot be reached, and becomes a `ServiceUnavailableError("node registry")`.
 */
export function redisStoreError(error: unknown): unknown {
  if (error instanceof ReplyError || error instanceof ServiceUnavailableError) return error;
  return new ServiceUnavailableError('node registry', { cause: error });
}

// Every call to the Redis client goes through this, so that an outage reaches callers as one class.
async function redisCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw redisStoreError(error);
  }
}

type ScriptCommands = {
  [K in keyof typeof scripts]: (...args: (string | number)[]) => Promise<number>;
};

/**
 * The registry of a cluster of api instances, in Redis. Keys, under the prefix (`hearth:`):
 * `nodes` (set of ids), `node:<id>` (hash), `assignments` (set of channels),
 * `assignment:<channel>` (JSON), `node-channels:<id>` (set of channels naming the node),
 * `vouches` (hash of api instance id to the time it last vouched for its nodes' heartbeats).
 * Everything read back is parsed with its schema. A call that cannot reach Redis, or that gets no
 * answer within `commandTimeoutMs`, rejects with `ServiceUnavailableError("node registry")`.
 */
export class RedisNodeRegistry implements NodeRegistry {
  readonly #redis: Redis;
  readonly #prefix: string;

  constructor(options: {
    url: string;
    logger: Logger;
    keyPrefix?: string;
    /** Time a command may take before it fails; a hung Redis must not hang the detector. */
    commandTimeoutMs?: number;
  }) {
    this.#prefix = options.keyPrefix ?? 'hearth:';
    this.#redis = new Redis(options.url, {
      maxRetriesPerRequest: 3,
      enableAutoPipelining: true,
      commandTimeout: options.commandTimeoutMs ?? DEFAULT_REDIS_COMMAND_TIMEOUT_MS,
    });
    this.#redis.on('error', (error: unknown) =>
      options.logger.warn({ err: error }, 'node registry: Redis connection error'),
    );
    for (const [name, lua] of Object.entries(scripts)) {
      this.#redis.defineCommand(name, {
        lua,
        numberOfKeys: name === 'hearthCompareAndSet' ? 2 : 1,
      });
    }
  }

  get #scripts(): ScriptCommands {
    return this.#redis as unknown as ScriptCommands;
  }

  #nodeKey(id: string): string {
    return `${this.#prefix}node:${id}`;
  }

  #assignmentKey(channel: string): string {
    return `${this.#prefix}assignment:${channel}`;
  }

  async register(registration: NodeRegistration, now: number): Promise<NodeRecord> {
    const record: NodeRecord = {
      registration,
      load: zeroLoad,
      status: 'up',
      pending: 0,
      pendingSince: 0,
      lastHeartbeatAt: now,
      registeredAt: now,
    };
    const key = this.#nodeKey(registration.id);
    await redisCall(() =>
      this.#redis
        .multi()
        .del(key)
        .hset(key, {
          registration: JSON.stringify(registration),
          load: JSON.stringify(record.load),
          status: record.status,
          pending: '0',
          pendingSince: '0',
          lastHeartbeatAt: String(now),
          registeredAt: String(now),
        })
        .sadd(`${this.#prefix}nodes`, registration.id)
        .exec(),
    );
    return record;
  }

  async heartbeat(id: string, load: NodeLoad, now: number): Promise<void> {
    const result = await redisCall(() =>
      this.#scripts.hearthHeartbeat(
        this.#nodeKey(id),
        JSON.stringify(load),
        String(now),
        String(load.participants),
        String(PENDING_TTL_MS),
      ),
    );
    if (result === 0) throw new NodeNotRegisteredError(id, 'unknown');
    if (result === 2) throw new NodeNotRegisteredError(id, 'down');
  }

  async list(): Promise<NodeRecord[]> {
    const ids = await redisCall(() => this.#redis.smembers(`${this.#prefix}nodes`));
    if (ids.length === 0) return [];
    const pipeline = this.#redis.pipeline();
    for (const id of ids) pipeline.hgetall(this.#nodeKey(id));
    const replies = (await redisCall(() => pipeline.exec())) ?? [];
    const records: NodeRecord[] = [];
    replies.forEach(([error, hash], index) => {
      if (error) throw redisStoreError(error);
      const record = this.#parseNode(ids[index]!, hash as Record<string, string>);
      if (record) records.push(record);
    });
    return records.sort(byId);
  }

  async get(id: string): Promise<NodeRecord | undefined> {
    return this.#parseNode(id, await redisCall(() => this.#redis.hgetall(this.#nodeKey(id))));
  }

  // A missing hash (the node was removed meanwhile) reads as an empty object.
  #parseNode(id: string, hash: Record<string, string>): NodeRecord | undefined {
    if (Object.keys(hash).length === 0) return undefined;
    const parsed = storedNodeSchema.safeParse(hash);
    if (!parsed.success) {
      throw new Error(`invalid node record ${id} in Redis: ${describeZodError(parsed.error)}`);
    }
    return parsed.data;
  }

  async markDown(id: string, options: { lastHeartbeatBefore?: number } = {}): Promise<boolean> {
    const bound =
      options.lastHeartbeatBefore === undefined ? '' : String(options.lastHeartbeatBefore);
    return (await redisCall(() => this.#scripts.hearthMarkDown(this.#nodeKey(id), bound))) === 1;
  }

  async remove(id: string): Promise<boolean> {
    const replies = await redisCall(() =>
      this.#redis.multi().del(this.#nodeKey(id)).srem(`${this.#prefix}nodes`, id).exec(),
    );
    return replies?.[1]?.[1] === 1;
  }

  async addPending(id: string, delta = 1, now = Date.now()): Promise<number | undefined> {
    const pending = await redisCall(() =>
      this.#scripts.hearthAddPending(this.#nodeKey(id), String(delta), String(now)),
    );
    return pending < 0 ? undefined : pending;
  }

  async assignment(channel: string): Promise<ChannelAssignment | undefined> {
    const text = await redisCall(() => this.#redis.get(this.#assignmentKey(channel)));
    return text === null ? undefined : this.#parseAssignment(channel, text);
  }

  #parseAssignment(channel: string, text: string): ChannelAssignment {
    const parsed = storedAssignmentSchema.safeParse(text);
    if (!parsed.success) {
      throw new Error(
        `invalid assignment of channel ${channel} in Redis: ${describeZodError(parsed.error)}`,
      );
    }
    return parsed.data;
  }

  async compareAndSetAssignment(
    channel: string,
    expectedVersion: number | undefined,
    next: ChannelAssignment | undefined,
  ): Promise<boolean> {
    checkAssignmentChannel(channel, next);
    const stored = next && channelAssignmentSchema.parse(next);
    const result = await redisCall(() =>
      this.#scripts.hearthCompareAndSet(
        this.#assignmentKey(channel),
        `${this.#prefix}assignments`,
        expectedVersion === undefined ? '' : String(expectedVersion),
        stored ? JSON.stringify(stored) : '',
        channel,
        `${this.#prefix}node-channels:`,
        ...(stored ? [stored.core, ...stored.edges] : []),
      ),
    );
    return result === 1;
  }

  async assignments(): Promise<ChannelAssignment[]> {
    const channels = (
      await redisCall(() => this.#redis.smembers(`${this.#prefix}assignments`))
    ).sort();
    if (channels.length === 0) return [];
    const texts = await redisCall(() =>
      this.#redis.mget(channels.map((channel) => this.#assignmentKey(channel))),
    );
    return channels.flatMap((channel, index) => {
      const text = texts[index];
      return text == null ? [] : [this.#parseAssignment(channel, text)];
    });
  }

  async channelsOnNode(id: string): Promise<string[]> {
    return (
      await redisCall(() => this.#redis.smembers(`${this.#prefix}node-channels:${id}`))
    ).sort();
  }

  async vouch(instanceId: string, at: number): Promise<Map<string, number>> {
    const key = `${this.#prefix}vouches`;
    const replies = await redisCall(() =>
      this.#redis.multi().hset(key, instanceId, String(at)).hgetall(key).exec(),
    );
    const [error, hash] = replies?.[1] ?? [new Error('no reply to HGETALL')];
    if (error) throw redisStoreError(error);
    return new Map(Object.entries(vouchesSchema.parse(hash)));
  }

  async forgetInstance(instanceId: string): Promise<void> {
    await redisCall(() => this.#redis.hdel(`${this.#prefix}vouches`, instanceId));
  }

  async close(): Promise<void> {
    await this.#redis.quit().catch(() => this.#redis.disconnect());
  }
}
