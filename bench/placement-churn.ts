import type { ChannelAssignment } from '@hearth/protocol';
import { createLogger } from '@hearth/server-common';
import { startRedis, type TestRedis } from '../api/test/support/redis';
import { createPlacementService, type PlacementService } from '../api/src/nodes/placement-service';
import { percentile, round } from './stats';

/** Settings of one placement-churn run. */
export interface PlacementChurnOptions {
  /** Which registry and bus: in-process, or a Redis the run starts (or `redisUrl`). */
  registry: 'memory' | 'redis';
  /** Voice nodes registered. */
  nodes?: number;
  /** Channels placed. */
  channels?: number;
  /** Participants placed in each channel. */
  participantsPerChannel?: number;
  /** Nodes killed one after another (default: all but one). */
  kills?: number;
  /** Capacity each node declares, as a multiple of its even share of channels and participants. */
  headroom?: number;
  /** Time without a heartbeat after which a node is marked down. */
  nodeTimeoutMs?: number;
  /** Period of the failure detector. */
  sweepIntervalMs?: number;
  /** Period of each live node's heartbeat. */
  heartbeatIntervalMs?: number;
  /** Placements run at once while filling the channels. */
  placementConcurrency?: number;
  /** An existing Redis to use instead of starting one. */
  redisUrl?: string;
  /** Longest wait for one failure to be repaired before the run fails. */
  repairTimeoutMs?: number;
}

/** What one node failure cost. */
export interface NodeKillMeasurement {
  /** The node that stopped heartbeating. */
  nodeId: string;
  /** Channels that named it when it stopped. */
  affectedChannels: number;
  /** From its last heartbeat until `nodeDown` was heard, ms. */
  detectedMs: number;
  /** From its last heartbeat until every affected channel was on up nodes only, ms. */
  repairedMs: number;
  /** From `nodeDown` until every affected channel was on up nodes only: sweep and replace, ms. */
  sweepReplaceMs: number;
}

/** Results of one placement-churn run. */
export interface PlacementChurnResult {
  registry: 'memory' | 'redis';
  nodes: number;
  channels: number;
  participants: number;
  nodeTimeoutMs: number;
  sweepIntervalMs: number;
  /** Time to place every participant, ms. */
  placeMs: number;
  /** Placements per second while filling. */
  placementsPerSecond: number;
  /** One entry per killed node, in order. */
  kills: NodeKillMeasurement[];
  /** p50 and max of each measurement over the kills, ms. */
  summary: {
    detectedP50: number;
    detectedMax: number;
    repairedP50: number;
    repairedMax: number;
    sweepReplaceP50: number;
    sweepReplaceMax: number;
  };
}

/**
 * Registers voice nodes, places participants in many channels, then stops the nodes' heartbeats
 * one after another and measures how long the failure detector takes to notice each failure and
 * to move every affected channel onto nodes that are up.
 */
export async function measurePlacementChurn(
  options: PlacementChurnOptions,
): Promise<PlacementChurnResult> {
  const nodeCount = options.nodes ?? 10;
  const channelCount = options.channels ?? 1000;
  const perChannel = options.participantsPerChannel ?? 3;
  const kills = Math.min(options.kills ?? nodeCount - 1, nodeCount - 1);
  const nodeTimeoutMs = options.nodeTimeoutMs ?? 1000;
  const sweepIntervalMs = options.sweepIntervalMs ?? 100;
  const heartbeatIntervalMs = options.heartbeatIntervalMs ?? 100;
  const repairTimeoutMs = options.repairTimeoutMs ?? 30_000;
  const headroom = options.headroom ?? 1.5;
  const limits = {
    maxChannels: Math.ceil((channelCount / nodeCount) * headroom),
    maxParticipants: Math.ceil(((channelCount * perChannel) / nodeCount) * headroom),
  };

  let redis: TestRedis | undefined;
  let redisUrl = options.redisUrl;
  if (options.registry === 'redis' && !redisUrl) {
    redis = await startRedis();
    redisUrl = redis.url;
  }
  const service = createPlacementService({
    redisUrl: options.registry === 'redis' ? redisUrl : undefined,
    logger: createLogger('placement-churn', { level: 'silent' }),
    nodeTimeoutMs,
    sweepIntervalMs,
  });
  const nodeIds = Array.from({ length: nodeCount }, (_, index) => `churn-node-${index}`);
  const channels = Array.from(
    { length: channelCount },
    (_, index) => `churn-${String(index).padStart(5, '0')}`,
  );
  const beating = new Set(nodeIds);
  const tracker = new AssignmentTracker();
  // Participants stay where they were placed; those of a failed node are not placed again.
  const participantsOn = new Map<string, number>();
  service.events.on('assignmentChanged', ({ assignment }) => tracker.update(assignment));
  service.events.on('released', ({ channel }) => tracker.remove(channel));
  let heartbeats: NodeJS.Timeout | undefined;
  try {
    await service.start();
    for (const id of nodeIds) {
      await service.register({ id, kind: 'voice', limits });
    }
    heartbeats = setInterval(() => {
      for (const id of beating) {
        const load = {
          channels: tracker.channelsOn(id),
          participants: participantsOn.get(id) ?? 0,
        };
        void service.heartbeat(id, load).catch(() => undefined);
      }
    }, heartbeatIntervalMs);

    const placeStarted = performance.now();
    await forEachLimited(channels, options.placementConcurrency ?? 16, async (channel) => {
      for (let index = 0; index < perChannel; index++) {
        const placement = await service.placeParticipant(channel);
        tracker.update(placement.assignment);
        participantsOn.set(placement.nodeId, (participantsOn.get(placement.nodeId) ?? 0) + 1);
      }
    });
    const placeMs = performance.now() - placeStarted;

    const measurements: NodeKillMeasurement[] = [];
    for (const victim of nodeIds.slice(0, kills)) {
      measurements.push(await killAndMeasure(service, victim, beating, tracker, repairTimeoutMs));
      // One quiet sweep between failures, so each measurement starts from a settled cluster.
      await new Promise((resolve) => setTimeout(resolve, sweepIntervalMs));
    }

    const participants = channelCount * perChannel;
    const detected = measurements.map((m) => m.detectedMs);
    const repaired = measurements.map((m) => m.repairedMs);
    const sweepReplace = measurements.map((m) => m.sweepReplaceMs);
    return {
      registry: options.registry,
      nodes: nodeCount,
      channels: channelCount,
      participants,
      nodeTimeoutMs,
      sweepIntervalMs,
      placeMs: round(placeMs),
      placementsPerSecond: Math.round(participants / (placeMs / 1000)),
      kills: measurements,
      summary: {
        detectedP50: percentile(detected, 50),
        detectedMax: Math.max(...detected),
        repairedP50: percentile(repaired, 50),
        repairedMax: Math.max(...repaired),
        sweepReplaceP50: percentile(sweepReplace, 50),
        sweepReplaceMax: Math.max(...sweepReplace),
      },
    };
  } finally {
    clearInterval(heartbeats);
    await service.stop();
    await redis?.stop();
  }
}

async function killAndMeasure(
  service: PlacementService,
  victim: string,
  beating: Set<string>,
  tracker: AssignmentTracker,
  timeoutMs: number,
): Promise<NodeKillMeasurement> {
  const affected = new Set(await service.channelsOnNode(victim));
  let downAt: number | undefined;
  const onDown = ({ nodeId }: { nodeId: string }) => {
    if (nodeId === victim) downAt ??= Date.now();
  };
  service.events.on('nodeDown', onDown);
  beating.delete(victim);
  const up = new Set(beating);
  const deadline = Date.now() + timeoutMs;
  let repairedAt: number | undefined;
  try {
    while (repairedAt === undefined) {
      if (Date.now() > deadline) {
        throw new Error(`channels of ${victim} were not all moved within ${timeoutMs} ms`);
      }
      await new Promise((resolve) => setTimeout(resolve, 2));
      if (downAt !== undefined && [...affected].every((c) => tracker.onlyOn(c, up))) {
        repairedAt = Date.now();
      }
    }
  } finally {
    service.events.off('nodeDown', onDown);
  }
  // The registry is the truth; the events only time it.
  for (const channel of affected) {
    const assignment = await service.assignment(channel);
    if (!assignment || ![assignment.core, ...assignment.edges].every((id) => up.has(id))) {
      throw new Error(`channel ${channel} is still on a down node after ${victim} failed`);
    }
  }
  const lastHeartbeatAt = Date.parse((await service.node(victim))!.lastHeartbeatAt);
  return {
    nodeId: victim,
    affectedChannels: affected.size,
    detectedMs: downAt! - lastHeartbeatAt,
    repairedMs: repairedAt - lastHeartbeatAt,
    sweepReplaceMs: repairedAt - downAt!,
  };
}

// The latest assignment of each channel, as announced, and the channels on each node.
class AssignmentTracker {
  readonly #byChannel = new Map<string, ChannelAssignment>();
  readonly #byNode = new Map<string, Set<string>>();

  update(assignment: ChannelAssignment): void {
    const known = this.#byChannel.get(assignment.channel);
    if (known && known.version >= assignment.version) return;
    this.remove(assignment.channel);
    this.#byChannel.set(assignment.channel, assignment);
    for (const id of [assignment.core, ...assignment.edges]) {
      let set = this.#byNode.get(id);
      if (!set) this.#byNode.set(id, (set = new Set()));
      set.add(assignment.channel);
    }
  }

  remove(channel: string): void {
    const known = this.#byChannel.get(channel);
    if (!known) return;
    this.#byChannel.delete(channel);
    for (const id of [known.core, ...known.edges]) this.#byNode.get(id)?.delete(channel);
  }

  channelsOn(nodeId: string): number {
    return this.#byNode.get(nodeId)?.size ?? 0;
  }

  onlyOn(channel: string, up: ReadonlySet<string>): boolean {
    const assignment = this.#byChannel.get(channel);
    return (
      assignment !== undefined && [assignment.core, ...assignment.edges].every((id) => up.has(id))
    );
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
