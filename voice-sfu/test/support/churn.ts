import fs from 'node:fs';
import type { VoiceNode } from '../../src/voice-node';
import type { WorkerLoad } from '../../src/worker-pool';
import {
  joinPlainListener,
  joinPlainSpeaker,
  waitFor,
  type PlainListener,
  type PlainSpeaker,
} from './plain-peers';
import { PACKETS_PER_SECOND } from './rtp';

/** mediasoup objects of every worker added up. */
export type ObjectCounts = Omit<WorkerLoad, 'index'>;

/** Resident memory of the node, in MiB: its own process and its mediasoup workers. */
export interface NodeMemory {
  /** The Node.js process running the voice node (and, in process, whoever drives it). */
  processMiB: number;
  /** The mediasoup worker processes, added up. */
  workersMiB: number;
}

/** What a churn run did and what it left behind. */
export interface ChurnResult {
  /** Participants kept in the channels at any time. */
  participants: number;
  /** Of them, speakers sending Opus-like RTP at 50 packets/s. */
  speakers: number;
  /** How long participants came and went. */
  durationMs: number;
  /** Joins done, the initial ones included. */
  joins: number;
  /** Leaves done, the final ones included. */
  leaves: number;
  /** Joins or leaves that threw. */
  failures: number;
  /** Most objects alive at once. */
  peak: ObjectCounts;
  /** Objects once everyone had left, as the pool's observers count them. */
  after: ObjectCounts;
  /** Routers the worker processes still report in their own dumps once everyone had left. */
  workerRouters: number;
  /** Channels still open on the node once everyone had left. */
  openChannels: number;
  /** RTP packets the listeners received: proof that audio flowed through the churn. */
  packetsDelivered: number;
  /** Memory before the first join. */
  memoryBefore: NodeMemory;
  /** Memory once everyone had left. */
  memoryAfter: NodeMemory;
}

/** Adds up the object counts of every worker of a node. */
export function objectCounts(node: VoiceNode): ObjectCounts {
  return node.pool.loads().reduce(
    (sum, load) => ({
      routers: sum.routers + load.routers,
      transports: sum.transports + load.transports,
      producers: sum.producers + load.producers,
      consumers: sum.consumers + load.consumers,
    }),
    { routers: 0, transports: 0, producers: 0, consumers: 0 },
  );
}

/** Resident set of a process from /proc, in KiB; 0 once it is gone. */
export function residentKiB(pid: number): number {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0);
  } catch {
    // The process ended.
    return 0;
  }
}

/** Current resident memory of the node's process and workers. */
export function nodeMemory(node: VoiceNode): NodeMemory {
  const mib = (kib: number) => Math.round((kib / 1024) * 10) / 10;
  return {
    processMiB: mib(residentKiB(process.pid)),
    workersMiB: mib(node.pool.slots.reduce((sum, slot) => sum + residentKiB(slot.worker.pid), 0)),
  };
}

type Member = { kind: 'speaker'; peer: PlainSpeaker } | { kind: 'listener'; peer: PlainListener };

/**
 * Keeps `participants` plain-RTP participants (`speakers` of them talking) in `channels` channels
 * of an in-process voice node for `durationMs`, replacing `cyclesPerSecond` of them per second by
 * a leave and a fresh join, then makes everyone leave and reads what the node still holds.
 */
export async function runParticipantChurn(
  node: VoiceNode,
  options: {
    participants: number;
    speakers: number;
    channels: number;
    durationMs: number;
    cyclesPerSecond: number;
  },
): Promise<ChurnResult> {
  const memoryBefore = nodeMemory(node);
  const members: (Member | undefined)[] = new Array<Member | undefined>(options.participants);
  let joins = 0;
  let leaves = 0;
  let failures = 0;
  let nextSsrc = 10_000;
  let packetsDelivered = 0;
  const peak: ObjectCounts = { routers: 0, transports: 0, producers: 0, consumers: 0 };
  const notePeak = () => {
    const now = objectCounts(node);
    for (const key of Object.keys(peak) as (keyof ObjectCounts)[]) {
      peak[key] = Math.max(peak[key], now[key]);
    }
  };

  const join = async (slot: number): Promise<void> => {
    const channel = `churn-${slot % options.channels}`;
    const name = `p${slot}-${joins}`;
    try {
      members[slot] =
        slot < options.speakers
          ? { kind: 'speaker', peer: await joinPlainSpeaker(node, channel, name, nextSsrc++) }
          : { kind: 'listener', peer: await joinPlainListener(node, channel, name) };
      joins++;
    } catch {
      failures++;
    }
  };
  const leave = (slot: number): void => {
    const member = members[slot];
    members[slot] = undefined;
    if (!member) return;
    try {
      member.peer.channel.leave(member.peer.peerId);
      leaves++;
    } catch {
      failures++;
    }
    if (member.kind === 'speaker') member.peer.sender.close();
    else {
      packetsDelivered += member.peer.receiver.total;
      member.peer.receiver.close();
    }
  };

  const talking = setInterval(() => {
    for (const member of members) if (member?.kind === 'speaker') member.peer.sender.sendOne();
  }, 1000 / PACKETS_PER_SECOND);
  try {
    for (let slot = 0; slot < options.participants; slot++) await join(slot);
    notePeak();
    const endAt = performance.now() + options.durationMs;
    let cycle = 0;
    while (performance.now() < endAt) {
      const startedAt = performance.now();
      // Slots in a fixed stride, so that speakers and listeners of every channel all come and go.
      const slot = (cycle++ * 37) % options.participants;
      leave(slot);
      await join(slot);
      notePeak();
      const waitMs = 1000 / options.cyclesPerSecond - (performance.now() - startedAt);
      if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
    }
  } finally {
    clearInterval(talking);
    for (let slot = 0; slot < options.participants; slot++) leave(slot);
  }
  const zero = () => Object.values(objectCounts(node)).every((count) => count === 0);
  // Closing is synchronous in the pool's books; the wait only covers a slow observer.
  await waitFor(zero, 5000, 'every object closed').catch(() => undefined);
  const dumps = await Promise.all(node.pool.slots.map((slot) => slot.worker.dump()));
  return {
    participants: options.participants,
    speakers: options.speakers,
    durationMs: options.durationMs,
    joins,
    leaves,
    failures,
    peak,
    after: objectCounts(node),
    workerRouters: dumps.reduce(
      (sum, dump) => sum + (dump as { routerIds: string[] }).routerIds.length,
      0,
    ),
    openChannels: node.channels.list().length,
    packetsDelivered,
    memoryBefore,
    memoryAfter: nodeMemory(node),
  };
}
