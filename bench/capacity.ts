import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { types } from 'mediasoup';
import { VoiceNode, voiceConfig } from '@hearth/voice-sfu';
import {
  RecordingSink,
  joinPlainSpeaker,
  quietLogger,
  testIdentity,
  type PlainSpeaker,
} from '../voice-sfu/test/support/plain-peers';
import { bindUdp, RtpReceiver, PACKETS_PER_SECOND } from '../voice-sfu/test/support/rtp';
import { percentile, round } from './stats';

/** One capacity scenario: a channel where `speakers` of `participants` talk and all listen. */
export interface CapacityScenario {
  /** Label printed with the results. */
  name: string;
  /** mediasoup workers on the node. */
  workers: number;
  /** Participants in the channel, speakers included. */
  participants: number;
  /** Participants that send audio. */
  speakers: number;
  /** Edge capacity; defaults to an even split of the consumers over the workers. */
  maxConsumersPerEdge?: number;
  /** Seconds of sending that are measured. */
  seconds: number;
}

/** What one capacity scenario measured. */
export interface CapacityResult {
  scenario: CapacityScenario;
  /** Listener consumers (pipe consumers not counted). */
  consumers: number;
  /** CPU of each worker during the measured window, in percent of one core. */
  workerCpuPercent: number[];
  /** Consumers per worker, pipe consumers included. */
  workerConsumers: number[];
  /** RTP packets the SFU sent to listeners per second. */
  forwardedPacketsPerSecond: number;
  /** Packets the SFU should have sent but did not, in percent (mediasoup's own counters). */
  sfuLossPercent: number;
  /** Packets that did not reach the receivers, in percent (counted by the receivers). */
  deliveryLossPercent: number;
  /** Sender-to-receiver delay through the SFU on loopback, in milliseconds. */
  latencyMs: { p50: number; p95: number; p99: number; max: number };
  /** SRTP suite used towards listeners. */
  srtpSuite: types.SrtpCryptoSuite;
}

// The suite Chromium negotiates with mediasoup; ENVIRONMENT.md shows it is also the cheapest
// one with Debian's libsrtp2.
const LISTENER_SRTP: types.SrtpCryptoSuite = 'AEAD_AES_256_GCM';
// A few listeners receive clear RTP so the send time inside each payload can be read back.
const PROBE_LISTENERS = 5;
const SINK_SOCKETS = 4;

/** A discard receiver process (udp-sink.ts) and its ports. */
export interface Sink {
  process: ChildProcess;
  ports: number[];
}

/** Starts the discard receiver process with `sockets` receiving sockets. */
export async function startSink(sockets = SINK_SOCKETS): Promise<Sink> {
  const child = fork(fileURLToPath(new URL('./udp-sink.ts', import.meta.url)), [String(sockets)], {
    execArgv: ['--import', 'tsx'],
  });
  const ports = await new Promise<number[]>((resolve) =>
    child.once('message', (message) => resolve((message as { ports: number[] }).ports)),
  );
  return { process: child, ports };
}

/** Packets the discard receiver has counted so far. */
export function sinkCount(sink: Sink): Promise<number> {
  return new Promise((resolve) => {
    sink.process.once('message', (message) => resolve((message as { packets: number }).packets));
    sink.process.send({ command: 'count' });
  });
}

/** CPU seconds each worker of a node has used so far. */
export async function cpuSeconds(node: VoiceNode): Promise<number[]> {
  return Promise.all(
    node.pool.slots.map(async (slot) => {
      const usage = await slot.worker.getResourceUsage();
      return (usage.ru_utime + usage.ru_stime) / 1000;
    }),
  );
}

/** Runs one scenario on a fresh node and returns its figures. */
export async function runCapacityScenario(scenario: CapacityScenario): Promise<CapacityResult> {
  const consumersExpected = scenario.participants * scenario.speakers - scenario.speakers; // Nobody hears themselves.
  const maxConsumersPerEdge =
    scenario.maxConsumersPerEdge ??
    Math.ceil(consumersExpected / scenario.workers) + scenario.speakers;
  const node = await VoiceNode.start(
    voiceConfig({ numWorkers: scenario.workers, rtcBasePort: 0, maxConsumersPerEdge }),
    quietLogger,
  );
  const sink = await startSink();
  const probes: RtpReceiver[] = [];
  const speakers: PlainSpeaker[] = [];
  const consumers: types.Consumer[] = [];
  try {
    const channelName = `bench-${scenario.participants}`;
    for (let index = 0; index < scenario.speakers; index++) {
      speakers.push(await joinPlainSpeaker(node, channelName, `speaker-${index}`, 10_000 + index));
    }
    const channel = speakers[0]!.channel;
    const openReceiver = async (peerId: string, index: number) => {
      const probe = index < PROBE_LISTENERS;
      const transport = await channel.createPlainTransport(
        peerId,
        'recv',
        probe ? undefined : LISTENER_SRTP,
      );
      transport.observer.on('newconsumer', (consumer) => consumers.push(consumer));
      let port: number;
      if (probe) {
        const receiver = new RtpReceiver(await bindUdp(), { measureDelay: true });
        probes.push(receiver);
        port = receiver.port;
      } else {
        port = sink.ports[index % sink.ports.length]!;
      }
      await transport.connect({
        ip: '127.0.0.1',
        port,
        srtpParameters: probe
          ? undefined
          : { cryptoSuite: LISTENER_SRTP, keyBase64: transport.srtpParameters!.keyBase64 },
      });
    };
    for (const [index, speaker] of speakers.entries()) {
      await openReceiver(speaker.peerId, scenario.participants - 1 - index);
    }
    for (let index = 0; index < scenario.participants - scenario.speakers; index++) {
      const { peer } = await node.channels.join(
        channelName,
        testIdentity(`listener-${index}`),
        node.routerRtpCapabilities,
        new RecordingSink(),
        { autoResume: true },
      );
      await openReceiver(peer.id, index);
    }
    const deadline = Date.now() + 30_000;
    while (consumers.length < consumersExpected) {
      if (Date.now() > deadline)
        throw new Error(`only ${consumers.length} of ${consumersExpected} consumers`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }

    // Warm up for a second so every pipe and consumer is flowing, then measure a clean window.
    await Promise.all(speakers.map((speaker) => speaker.sender.sendFor(PACKETS_PER_SECOND)));
    await new Promise((resolve) => setTimeout(resolve, 300));
    const consumerPacketsBefore = await consumerPackets(consumers);
    const producerPacketsBefore = await Promise.all(
      speakers.map((s) => producerPackets(s.producer)),
    );
    const sinkBefore = await sinkCount(sink);
    for (const probe of probes) probe.delaysMicros.length = 0;
    const probeBefore = probes.map((probe) => probe.total);
    const cpuBefore = await cpuSeconds(node);
    const started = performance.now();

    const packetsPerSpeaker = scenario.seconds * PACKETS_PER_SECOND;
    await Promise.all(speakers.map((speaker) => speaker.sender.sendFor(packetsPerSpeaker)));
    const elapsedSeconds = (performance.now() - started) / 1000;
    const cpuAfter = await cpuSeconds(node);
    // Let the last packets drain before counting.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const consumerPacketsAfter = await consumerPackets(consumers);
    const producerPacketsAfter = await Promise.all(
      speakers.map((s) => producerPackets(s.producer)),
    );
    const sinkAfter = await sinkCount(sink);

    const producedBySpeaker = new Map(
      speakers.map((speaker, index) => [
        speaker.producer.id,
        producerPacketsAfter[index]! - producerPacketsBefore[index]!,
      ]),
    );
    let expectedForwarded = 0;
    let forwarded = 0;
    for (const [index, consumer] of consumers.entries()) {
      expectedForwarded += producedBySpeaker.get(consumer.producerId) ?? 0;
      forwarded += consumerPacketsAfter[index]! - consumerPacketsBefore[index]!;
    }
    const sentBySpeakers = packetsPerSpeaker;
    const probeConsumers = PROBE_LISTENERS * scenario.speakers;
    const expectedAtSink = (consumersExpected - probeConsumers) * sentBySpeakers;
    const expectedAtProbes = probeConsumers * sentBySpeakers;
    const receivedAtProbes = probes.reduce(
      (sum, probe, index) => sum + probe.total - probeBefore[index]!,
      0,
    );
    const delaysMs = probes.flatMap((probe) => probe.delaysMicros.map((micros) => micros / 1000));
    const loads = node.pool.loads();

    return {
      scenario: { ...scenario, maxConsumersPerEdge },
      consumers: consumers.length,
      workerCpuPercent: cpuAfter.map((after, index) =>
        round(((after - cpuBefore[index]!) / elapsedSeconds) * 100),
      ),
      workerConsumers: loads.map((load) => load.consumers),
      forwardedPacketsPerSecond: Math.round(forwarded / elapsedSeconds),
      sfuLossPercent: round(Math.max(0, 1 - forwarded / expectedForwarded) * 100, 3),
      deliveryLossPercent: round(
        Math.max(
          0,
          1 - (sinkAfter - sinkBefore + receivedAtProbes) / (expectedAtSink + expectedAtProbes),
        ) * 100,
        3,
      ),
      latencyMs: {
        p50: round(percentile(delaysMs, 50), 2),
        p95: round(percentile(delaysMs, 95), 2),
        p99: round(percentile(delaysMs, 99), 2),
        max: round(Math.max(...delaysMs), 2),
      },
      srtpSuite: LISTENER_SRTP,
    };
  } finally {
    for (const speaker of speakers) speaker.sender.close();
    for (const probe of probes) probe.close();
    sink.process.send({ command: 'stop' });
    node.close();
  }
}

async function consumerPackets(consumers: types.Consumer[]): Promise<number[]> {
  const counts: number[] = [];
  // In batches, so thousands of stats requests do not queue on the worker channel at once.
  for (let start = 0; start < consumers.length; start += 200) {
    const batch = consumers.slice(start, start + 200);
    const stats = await Promise.all(batch.map((consumer) => consumer.getStats()));
    for (const entries of stats) {
      counts.push(entries.find((entry) => entry.type === 'outbound-rtp')?.packetCount ?? 0);
    }
  }
  return counts;
}

async function producerPackets(producer: types.Producer): Promise<number> {
  const stats = await producer.getStats();
  return stats.reduce((sum, entry) => sum + entry.packetCount, 0);
}
