import { randomUUID } from 'node:crypto';
import {
  channelNameSchema,
  describeZodError,
  nodeIdSchema,
  nodeLoadSchema,
  nodeRegistrationSchema,
  type ChannelAssignment,
  type NodeInfo,
  type NodeLoadInput,
  type NodeRegistrationInput,
} from '@hearth/protocol';
import { AppError, TypedEmitter, type Logger } from '@hearth/server-common';
import type { z } from 'zod';
import { InMemoryClusterBus, RedisClusterBus, type ClusterBus } from '../cluster/bus';
import {
  placeCore,
  placeParticipant,
  removeNode,
  replaceDownNodes,
  type PlacementRole,
} from './placement';
import {
  PLACEMENT_TOPIC,
  placementMessageSchema,
  type PlacementEvents,
  type PlacementMessage,
} from './placement-events';
import {
  DEFAULT_REDIS_COMMAND_TIMEOUT_MS,
  InMemoryNodeRegistry,
  RedisNodeRegistry,
  toNodeInfo,
  type NodeRecord,
  type NodeRegistry,
} from './registry';
import { HealthTrackedRegistry, StoreHealth } from './store-health';

/** Default time without a heartbeat after which a node is marked down. */
export const DEFAULT_NODE_TIMEOUT_MS = 3000;
/** Default period of the failure detector. */
export const DEFAULT_SWEEP_INTERVAL_MS = 1000;
/** Default time a down node stays listed (as down) before it is forgotten. */
export const DEFAULT_DOWN_RETENTION_MS = 60_000;
// An api instance silent for this many node timeouts, while the store answered, is gone.
const INSTANCES_GONE_AFTER_NODE_TIMEOUTS = 10;

// Rounds before a placement gives up. A round is lost only when another placement changed the
// assignment or took the last seat of the chosen node meanwhile, so each round makes progress.
const MAX_WRITE_ATTEMPTS = 16;
// Channels repaired at once by one sweep: enough to hide Redis round trips, few enough to keep
// the connection fair to placements.
const REPAIR_CONCURRENCY = 16;

/** Where a participant was placed. */
export interface ParticipantPlacement {
  /** Node the participant connects to. */
  readonly nodeId: string;
  /** Whether that node holds the channel's core router or an edge router. */
  readonly role: PlacementRole;
  /** The channel's assignment after the placement. */
  readonly assignment: ChannelAssignment;
  /** The node, with its signaling URL. */
  readonly node: NodeInfo;
}

/** What one failure-detector pass did. */
export interface SweepReport {
  /** Nodes this pass marked down (another instance may have marked others). */
  readonly markedDown: string[];
  /** Channels whose assignment this pass changed. */
  readonly reassigned: string[];
  /** Down nodes this pass forgot after their retention time. */
  readonly removed: string[];
}

/** Settings and stores of a `PlacementService`. */
export interface PlacementServiceOptions {
  /** Where nodes and assignments live. */
  readonly registry: NodeRegistry;
  /** Carries placement events to every api instance. */
  readonly bus: ClusterBus;
  /** Logger. */
  readonly logger: Logger;
  /** Current time in epoch milliseconds; `Date.now` unless a test drives it. */
  readonly clock?: () => number;
  /** Time without a heartbeat after which a node is marked down. */
  readonly nodeTimeoutMs?: number;
  /** Period of the failure detector. */
  readonly sweepIntervalMs?: number;
  /** Time a down node stays listed before it is forgotten. */
  readonly downRetentionMs?: number;
  /**
   * Time after which an api instance that stopped vouching for its nodes' heartbeats, while this
   * one reached the store, counts as gone; 10 node timeouts by default.
   */
  readonly instanceGoneMs?: number;
  /** Whether `stop()` also closes the registry and the bus (they were made for this service). */
  readonly ownsStores?: boolean;
}

function parseInput<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new AppError('bad_request', `invalid ${what}: ${describeZodError(parsed.error)}`);
  }
  return parsed.data;
}

/**
 * Node registration, participant placement and failure detection for one api instance. Several
 * instances share a registry and a bus: assignments are written with compare-and-set, a node is
 * announced down by the one instance that marked it, and `events` carries every instance's
 * announcements to each of them.
 */
export class PlacementService {
  /** Placement events heard on the bus, this instance's own included. */
  readonly events: TypedEmitter<PlacementEvents>;
  readonly #registry: HealthTrackedRegistry;
  readonly #health: StoreHealth;
  readonly #bus: ClusterBus;
  readonly #logger: Logger;
  readonly #clock: () => number;
  readonly #nodeTimeoutMs: number;
  readonly #sweepIntervalMs: number;
  readonly #downRetentionMs: number;
  readonly #ownsStores: boolean;
  #unsubscribe: (() => Promise<void>) | undefined;
  #timer: NodeJS.Timeout | undefined;
  #sweeping: Promise<unknown> | undefined;
  readonly #instanceId = randomUUID();
  readonly #instanceGoneMs: number;
  #started = false;
  #closed = false;

  constructor(options: PlacementServiceOptions) {
    this.#bus = options.bus;
    this.#logger = options.logger;
    this.#clock = options.clock ?? Date.now;
    this.#nodeTimeoutMs = options.nodeTimeoutMs ?? DEFAULT_NODE_TIMEOUT_MS;
    // A store outage hides heartbeats: once the store is back, every node gets a full node
    // timeout to be heard from again before its silence counts.
    this.#health = new StoreHealth({
      clock: this.#clock,
      graceMs: this.#nodeTimeoutMs,
      logger: this.#logger,
    });
    this.#registry = new HealthTrackedRegistry(options.registry, this.#health);
    this.#sweepIntervalMs = options.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS;
    this.#downRetentionMs = options.downRetentionMs ?? DEFAULT_DOWN_RETENTION_MS;
    this.#instanceGoneMs =
      options.instanceGoneMs ?? INSTANCES_GONE_AFTER_NODE_TIMEOUTS * this.#nodeTimeoutMs;
    this.#ownsStores = options.ownsStores ?? false;
    this.events = new TypedEmitter((error, event) =>
      this.#logger.error({ err: error, event }, 'placement: an event listener failed'),
    );
  }

  /** The registry this service reads and writes. */
  get registry(): NodeRegistry {
    return this.#registry.inner;
  }

  /** Time without a heartbeat after which a node is marked down, in milliseconds. */
  get nodeTimeoutMs(): number {
    return this.#nodeTimeoutMs;
  }

  /**
   * Whether the failure detector reads silence as failure now: false while the registry's store
   * fails, and for one node timeout after it answers again.
   */
  get detecting(): boolean {
    return this.#health.silenceMeaningful;
  }

  /** The cluster bus, also usable for other topics (e.g. relaying messages to nodes). */
  get bus(): ClusterBus {
    return this.#bus;
  }

  /** Subscribes to placement events and starts the failure detector. */
  async start(): Promise<void> {
    this.#checkOpen();
    if (this.#started) return;
    this.#started = true;
    this.#unsubscribe = await this.#bus.subscribe(PLACEMENT_TOPIC, (message) =>
      this.#onMessage(message),
    );
    this.#scheduleSweep();
  }

  /**
   * Stops the failure detector and the subscription, and closes the stores when it owns them.
   * Idempotent; every other call fails afterwards.
   */
  async stop(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.#sweeping;
    // Stopping on purpose: the other instances need not wait for this one's vouches.
    await this.#registry.forgetInstance(this.#instanceId).catch((error: unknown) => {
      this.#logger.warn({ err: error }, 'placement: withdrawing from the vouches failed');
    });
    await this.#unsubscribe?.();
    if (this.#ownsStores) {
      await this.#bus.close();
      await this.#registry.close();
    }
  }

  /** Registers a node (again, after a restart or after it was marked down). */
  async register(input: NodeRegistrationInput): Promise<NodeInfo> {
    this.#checkOpen();
    const registration = parseInput(nodeRegistrationSchema, input, 'node registration');
    const record = await this.#registry.register(registration, this.#clock());
    this.#logger.info(
      { nodeId: registration.id, kind: registration.kind, limits: registration.limits },
      'node registered',
    );
    return toNodeInfo(record);
  }

  /**
   * A node leaving on purpose: it is marked down at once and announced like a failure, so its
   * channels move and its sessions and streams close; it is forgotten after the usual retention.
   */
  async deregister(id: string): Promise<void> {
    this.#checkOpen();
    if (!(await this.#registry.markDown(parseInput(nodeIdSchema, id, 'node id')))) return;
    const channels = await this.#registry.channelsOnNode(id);
    this.#logger.info({ nodeId: id, channels: channels.length }, 'node deregistered');
    await this.#publish({ type: 'nodeDown', nodeId: id, channels, at: this.#clock() });
  }

  /** Records a node's load; throws `NodeNotRegisteredError` when the node must register again. */
  async heartbeat(id: string, input: NodeLoadInput): Promise<void> {
    this.#checkOpen();
    const load = parseInput(nodeLoadSchema, input, 'node load');
    await this.#registry.heartbeat(parseInput(nodeIdSchema, id, 'node id'), load, this.#clock());
  }

  /**
   * Picks the node a participant of the channel connects to, creating or extending the
   * channel's assignment; `avoid` names nodes the client just lost. Throws `unavailable` when no
   * voice node has room.
   */
  async placeParticipant(
    channel: string,
    options: { avoid?: readonly string[] } = {},
  ): Promise<ParticipantPlacement> {
    this.#checkOpen();
    parseInput(channelNameSchema, channel, 'channel name');
    for (let attempt = 0; attempt < MAX_WRITE_ATTEMPTS; attempt++) {
      const [assignment, nodes] = await Promise.all([
        this.#registry.assignment(channel),
        this.#registry.list(),
      ]);
      const result = placeParticipant({ channel, assignment, nodes, avoid: options.avoid });
      if (result.outcome === 'no_capacity') throw new AppError('unavailable', result.reason);
      const node = nodes.find((candidate) => candidate.registration.id === result.nodeId)!;
      // The seat is reserved before the assignment is written: concurrent placements that read
      // the same pending count would otherwise all fit into the last free seat.
      const pending = await this.#registry.addPending(result.nodeId, 1, this.#clock());
      const limit = node.registration.limits.maxParticipants;
      if (pending === undefined) continue;
      if (limit !== undefined && node.load.participants + pending > limit) {
        await this.#registry.addPending(result.nodeId, -1);
        continue;
      }
      // Written even when unchanged: the compare step proves the answer rests on the assignment
      // every instance sees now.
      if (
        !(await this.#registry.compareAndSetAssignment(
          channel,
          assignment?.version,
          result.assignment,
        ))
      ) {
        await this.#registry.addPending(result.nodeId, -1);
        continue;
      }
      if (result.changed) {
        await this.#publish({
          type: 'assignmentChanged',
          channel,
          assignment: result.assignment,
        });
      }
      return {
        nodeId: result.nodeId,
        role: result.role,
        assignment: result.assignment,
        node: toNodeInfo(node),
      };
    }
    throw new AppError('unavailable', `placement of channel ${channel} kept conflicting; retry`);
  }

  /** Gives back a seat `placeParticipant` reserved on a node: its client came, or never will. */
  async releaseSeat(nodeId: string): Promise<void> {
    await this.#registry.addPending(nodeId, -1, this.#clock());
  }

  /** The channel's assignment, if it has one. */
  async assignment(channel: string): Promise<ChannelAssignment | undefined> {
    this.#checkOpen();
    return this.#registry.assignment(parseInput(channelNameSchema, channel, 'channel name'));
  }

  /**
   * Gives the channel a core without placing a participant (a repaired assignment if it has
   * one). Throws `unavailable` when no voice node has room.
   */
  async allocate(channel: string): Promise<ChannelAssignment> {
    this.#checkOpen();
    parseInput(channelNameSchema, channel, 'channel name');
    for (let attempt = 0; attempt < MAX_WRITE_ATTEMPTS; attempt++) {
      const [assignment, nodes] = await Promise.all([
        this.#registry.assignment(channel),
        this.#registry.list(),
      ]);
      const result = placeCore({ channel, assignment, nodes });
      if (result.outcome === 'no_capacity') throw new AppError('unavailable', result.reason);
      if (!result.changed) return result.assignment;
      if (
        await this.#registry.compareAndSetAssignment(
          channel,
          assignment?.version,
          result.assignment,
        )
      ) {
        await this.#publish({ type: 'assignmentChanged', channel, assignment: result.assignment });
        return result.assignment;
      }
    }
    throw new AppError('unavailable', `allocation of channel ${channel} kept conflicting; retry`);
  }

  /** Deletes the channel's assignment; resolves false when it had none. */
  async release(channel: string): Promise<boolean> {
    this.#checkOpen();
    parseInput(channelNameSchema, channel, 'channel name');
    for (let attempt = 0; attempt < MAX_WRITE_ATTEMPTS; attempt++) {
      const assignment = await this.#registry.assignment(channel);
      if (!assignment) return false;
      if (await this.#registry.compareAndSetAssignment(channel, assignment.version, undefined)) {
        await this.#publish({ type: 'released', channel, reason: 'requested' });
        return true;
      }
    }
    throw new AppError('unavailable', `release of channel ${channel} kept conflicting; retry`);
  }

  /**
   * Takes a node out of a channel's assignment once the node reports it no longer hosts the
   * channel. A leaving core hands over to the least loaded remaining edge; the assignment is
   * deleted (and announced `released`, reason `empty`) when no node is left in it.
   */
  async leaveChannel(channel: string, nodeId: string): Promise<void> {
    this.#checkOpen();
    parseInput(channelNameSchema, channel, 'channel name');
    for (let attempt = 0; attempt < MAX_WRITE_ATTEMPTS; attempt++) {
      const [assignment, nodes] = await Promise.all([
        this.#registry.assignment(channel),
        this.#registry.list(),
      ]);
      if (!assignment) return;
      const next = removeNode(assignment, nodeId, nodes);
      if (next === assignment) return;
      if (await this.#registry.compareAndSetAssignment(channel, assignment.version, next)) {
        await this.#publish(
          next
            ? { type: 'assignmentChanged', channel, assignment: next }
            : { type: 'released', channel, reason: 'empty' },
        );
        return;
      }
    }
    throw new AppError('unavailable', `leaving channel ${channel} kept conflicting; retry`);
  }

  /** Every known node with its load and status. */
  async nodes(): Promise<NodeInfo[]> {
    this.#checkOpen();
    return (await this.#registry.list()).map(toNodeInfo);
  }

  /** One node, if known. */
  async node(id: string): Promise<NodeInfo | undefined> {
    this.#checkOpen();
    const record = await this.#registry.get(id);
    return record && toNodeInfo(record);
  }

  /** Channels whose assignment names the node as core or edge. */
  async channelsOnNode(id: string): Promise<string[]> {
    this.#checkOpen();
    return this.#registry.channelsOnNode(id);
  }

  /**
   * One failure-detector pass: marks down the up nodes silent for longer than the node timeout
   * before every api instance last vouched for its nodes (announcing each), moves every channel off down nodes, and forgets down nodes past their
   * retention time. `start()` runs it periodically; safe to run on several instances at once.
   * No node is marked down while the registry's store fails, nor for one node timeout after it
   * is back: heartbeats that could not be written are not silence.
   */
  async sweep(): Promise<SweepReport> {
    this.#checkOpen();
    const now = this.#clock();
    const nodes = new Map((await this.#registry.list()).map((n) => [n.registration.id, n]));
    // Read after the list: that call may be the one that found the store back.
    const markedDown = this.#health.silenceMeaningful
      ? await this.#markSilentNodesDown(
          nodes,
          (await this.#silenceHorizon(now)) - this.#nodeTimeoutMs,
        )
      : [];

    const downNodes = [...nodes.values()].filter((record) => record.status === 'down');
    const affected = new Set<string>();
    const removed: string[] = [];
    for (const record of downNodes) {
      const channels = await this.#registry.channelsOnNode(record.registration.id);
      for (const channel of channels) affected.add(channel);
      if (channels.length === 0 && now - record.lastHeartbeatAt > this.#downRetentionMs) {
        if (await this.#registry.remove(record.registration.id)) {
          removed.push(record.registration.id);
        }
      }
    }
    const reassigned: string[] = [];
    await forEachLimited([...affected].sort(), REPAIR_CONCURRENCY, async (channel) => {
      if (await this.#moveOffDownNodes(channel, nodes)) reassigned.push(channel);
    });
    if (reassigned.length > 0) {
      this.#logger.info({ channels: reassigned.length }, 'channels moved off down nodes');
    }
    return { markedDown, reassigned: reassigned.sort(), removed };
  }

  // Marks down the up nodes of the sweep's view last heard before `deadline`, announcing each.
  async #markSilentNodesDown(nodes: Map<string, NodeRecord>, deadline: number): Promise<string[]> {
    const markedDown: string[] = [];
    for (const [id, record] of nodes) {
      if (record.status !== 'up' || record.lastHeartbeatAt >= deadline) continue;
      if (!(await this.#registry.markDown(id, { lastHeartbeatBefore: deadline }))) continue;
      const downAt = this.#clock();
      nodes.set(id, { ...record, status: 'down' });
      markedDown.push(id);
      const channels = await this.#registry.channelsOnNode(id);
      this.#logger.warn({ nodeId: id, channels: channels.length }, 'node marked down');
      await this.#publish({ type: 'nodeDown', nodeId: id, channels, at: downAt });
    }
    return markedDown;
  }

  // Silence counts only up to the moment every api instance last vouched for its nodes. An
  // instance vouches on each sweep once it has reached the store for a node timeout, so it has
  // written every heartbeat its nodes sent since. After a store outage the instances reconnect
  // each on its own backoff: the nodes of one still cut off are not judged on heartbeats it could
  // not write. One that has not vouched for `instanceGoneMs` while this one reached the store is
  // gone; its vouches are dropped.
  async #silenceHorizon(now: number): Promise<number> {
    const vouches = await this.#registry.vouch(this.#instanceId, now);
    const goneBefore = now - this.#instanceGoneMs;
    let horizon = now;
    for (const [instance, at] of vouches) {
      if (at < goneBefore && this.#health.answeringSince <= goneBefore) {
        await this.#registry.forgetInstance(instance);
        this.#logger.warn({ instance }, 'placement: an api instance stopped vouching; it is gone');
      } else {
        horizon = Math.min(horizon, at);
      }
    }
    return horizon;
  }

  // `nodes` is the sweep's view. Each move counts the channel on the nodes it lands on before
  // the write (and takes it back if the write loses), so concurrent moves of one sweep spread a
  // failed node's channels instead of sending all of them to the same node.
  async #moveOffDownNodes(channel: string, nodes: Map<string, NodeRecord>): Promise<boolean> {
    for (let attempt = 0; attempt < MAX_WRITE_ATTEMPTS; attempt++) {
      const assignment = await this.#registry.assignment(channel);
      if (!assignment) return false;
      const next = replaceDownNodes(assignment, [...nodes.values()]);
      if (next === assignment) return false;
      const before = new Set([assignment.core, ...assignment.edges]);
      const landed = next ? [next.core, ...next.edges].filter((id) => !before.has(id)) : [];
      countChannels(nodes, landed, 1);
      if (!(await this.#registry.compareAndSetAssignment(channel, assignment.version, next))) {
        countChannels(nodes, landed, -1);
        continue;
      }
      await this.#publish(
        next
          ? { type: 'assignmentChanged', channel, assignment: next }
          : { type: 'released', channel, reason: 'noVoiceNode' },
      );
      return true;
    }
    this.#logger.warn({ channel }, 'moving a channel off down nodes kept conflicting');
    return false;
  }

  #scheduleSweep(): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#sweeping = this.sweep()
        .catch((error: unknown) => {
          this.#logger.error({ err: error }, 'placement: failure detector pass failed');
        })
        .finally(() => {
          this.#sweeping = undefined;
          this.#scheduleSweep();
        });
    }, this.#sweepIntervalMs);
    // The HTTP server keeps the process alive; the detector alone should not.
    this.#timer.unref();
  }

  // The state is already in the registry, so a lost announcement costs only timeliness; other
  // instances read the registry on their next placement anyway.
  async #publish(message: PlacementMessage): Promise<void> {
    try {
      await this.#bus.publish(PLACEMENT_TOPIC, message);
    } catch (error) {
      this.#logger.error({ err: error, type: message.type }, 'placement: publish failed');
    }
  }

  #onMessage(message: unknown): void {
    const parsed = placementMessageSchema.safeParse(message);
    if (!parsed.success) {
      this.#logger.warn(
        { problem: describeZodError(parsed.error) },
        'placement: dropped an invalid bus message',
      );
      return;
    }
    const event = parsed.data;
    switch (event.type) {
      case 'nodeDown':
        this.events.safeEmit('nodeDown', event);
        break;
      case 'assignmentChanged':
        this.events.safeEmit('assignmentChanged', event);
        break;
      case 'released':
        this.events.safeEmit('released', event);
        break;
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw new AppError('unavailable', 'the placement service is closed');
  }
}

function countChannels(nodes: Map<string, NodeRecord>, ids: readonly string[], delta: number) {
  for (const id of ids) {
    const record = nodes.get(id);
    if (record) {
      nodes.set(id, {
        ...record,
        load: { ...record.load, channels: record.load.channels + delta },
      });
    }
  }
}

async function forEachLimited<T>(
  items: readonly T[],
  concurrency: number,
  task: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await task(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

/** Settings of `createPlacementService`. */
export interface PlacementServiceSettings {
  /** Redis shared by the api instances; in-process stores when absent. */
  readonly redisUrl?: string;
  /** Logger. */
  readonly logger: Logger;
  /** Time without a heartbeat after which a node is marked down. */
  readonly nodeTimeoutMs?: number;
  /** Period of the failure detector. */
  readonly sweepIntervalMs?: number;
  /** Time after which an api instance that stopped vouching counts as gone. */
  readonly instanceGoneMs?: number;
}

/**
 * Builds a placement service on Redis when `redisUrl` is set, else on in-process stores. The
 * service owns them: `stop()` closes them. Call `start()` to run the failure detector. A Redis
 * command fails after 1 s, or half the node timeout when that is shorter, so a hung Redis
 * cannot stall the detector past a node timeout.
 */
export function createPlacementService(settings: PlacementServiceSettings): PlacementService {
  const logger = settings.logger.child({ component: 'placement' });
  const { redisUrl } = settings;
  const commandTimeoutMs = Math.min(
    DEFAULT_REDIS_COMMAND_TIMEOUT_MS,
    Math.floor((settings.nodeTimeoutMs ?? DEFAULT_NODE_TIMEOUT_MS) / 2),
  );
  return new PlacementService({
    registry: redisUrl
      ? new RedisNodeRegistry({ url: redisUrl, logger, commandTimeoutMs })
      : new InMemoryNodeRegistry(),
    bus: redisUrl
      ? new RedisClusterBus({ url: redisUrl, logger, commandTimeoutMs })
      : new InMemoryClusterBus(logger),
    logger,
    nodeTimeoutMs: settings.nodeTimeoutMs,
    sweepIntervalMs: settings.sweepIntervalMs,
    instanceGoneMs: settings.instanceGoneMs,
    ownsStores: true,
  });
}
