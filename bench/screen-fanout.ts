// Fan-out capacity of one simulcast screen share on one mediasoup worker: a synthetic VP8 sharer
// (voice-sfu/test/support/vp8.ts) sends both layers, N receive-only viewers consume one layer
// each through PlainTransports with SRTP, as browsers negotiate it, into a discard process. A few
// viewers receive clear RTP so the send time inside each packet can be read back.
import type dgram from 'node:dgram';
import type { types } from 'mediasoup';
import { VoiceNode, voiceConfig } from '@hearth/voice-sfu';
import { RecordingSink, quietLogger, testIdentity } from '../voice-sfu/test/support/plain-peers';
import { bindUdp, nowMicros, vp8SimulcastRtpParameters } from '../voice-sfu/test/support/rtp';
import {
  Vp8ShareSender,
  readVp8SentAtMicros,
  type Vp8Layer,
  type Vp8LayerCounters,
} from '../voice-sfu/test/support/vp8';
import { cpuSeconds, sinkCount, startSink, type Sink } from './capacity';
import { foreignCpuMeter, loadAverage, processCpuSeconds, udpSocketDrops } from './screen-proc';
import { percentile, round } from './stats';

/** The share every fan-out run sends: the web client's default 1080p30 preset. */
export const SHARE_LAYERS: readonly (Vp8Layer & { label: string })[] = [
  // The low layer: 960x540, at most 600 kbit/s.
  { ssrc: 50_001, bitrate: 600_000, label: 'low (960x540, 600 kbit/s)' },
  // The top layer: the 1080p30 preset's 4.5 Mbit/s.
  { ssrc: 50_002, bitrate: 4_500_000, label: 'top (1920x1080, 4.5 Mbit/s)' },
];
/** Frames per second of the synthetic share. */
export const SHARE_FPS = 30;
/** The suite Chromium negotiates with mediasoup (ENVIRONMENT.md). */
export const VIEWER_SRTP: types.SrtpCryptoSuite = 'AEAD_AES_256_GCM';
// Viewers that receive clear RTP, so the delay through the SFU can be read from each packet.
const PROBES = 3;
const SINK_SOCKETS = 8;
// mediasoup resets a producer stream's score after 1.5 s without packets; pauses between the
// measured windows stay well below that.
const DRAIN_MS = 150;

/** One fan-out run: how many viewers, and which layer they all watch. */
export interface FanoutScenario {
  /** Receive-only viewers. */
  viewers: number;
  /** The simulcast layer they ask for: 0 low, 1 top. */
  spatialLayer: number;
  /** Seconds of sending that are measured. */
  seconds: number;
  /** The viewers' SRTP suite; clear RTP when null (a reference for what SRTP costs). */
  srtp?: types.SrtpCryptoSuite | null;
}

/** What one fan-out run measured. */
export interface FanoutResult {
  scenario: FanoutScenario;
  /** The machine's 1-minute load average just before the measured window. */
  loadAverageBefore: number;
  /** CPU the rest of the machine (not this benchmark's processes) used meanwhile, in cores. */
  foreignCpuCores: number;
  /** Consumers that forwarded the asked layer when the window began, and when it ended. */
  viewersOnLayer: { before: number; after: number };
  /** How long the sharer paused before the window while counters were read, in ms. */
  pauseMs: number;
  /** CPU of the worker during the window, in percent of one core. */
  workerCpuPercent: number;
  /** CPU of the benchmark's own processes: sharer and probes, discard receiver. */
  benchCpuPercent: { sharerAndProbes: number; sink: number };
  /** RTP bit rate the worker sent to viewers (RTP headers and payloads, before SRTP). */
  forwardedMbps: number;
  /** RTP packets the worker sent to viewers per second. */
  forwardedPacketsPerSecond: number;
  /** What the sharer sent in the window, per layer. */
  sent: Vp8LayerCounters[];
  /** Packets sent by the sharer that the producer did not receive, in percent. */
  inputLossPercent: number;
  /** Packets the producer received on the layer that consumers did not forward, in percent. */
  sfuLossPercent: number;
  /** Packets sent on the layer that did not reach the viewers' sockets, in percent. */
  endToEndLossPercent: number;
  /** Datagrams the viewers' sockets dropped because the discard process fell behind. */
  receiverSocketDrops: number;
  /** Sharer-to-viewer delay through the SFU on loopback, in milliseconds. */
  latencyMs: { p50: number; p95: number; p99: number; max: number };
}

// A viewer reading clear RTP on its own socket.
interface Probe {
  socket: dgram.Socket;
  delaysMs: number[];
  packets: number;
}

/**
 * Viewers' RTP capabilities: the router's, without the transport-cc and abs-send-time header
 * extensions. With either, mediasoup manages a viewer's layers by bandwidth estimation, which
 * feedback from a browser drives; a PlainTransport receiver sends none, so the estimate would
 * stay at its 600 kbit/s start and the viewer would never get the top layer (and would lose the
 * low one once its measured bitrate passed 600 kbit/s). Without them a viewer gets the layer it
 * asks for, as a browser with ample bandwidth does.
 */
export function viewerRtpCapabilities(router: types.RtpCapabilities): types.RtpCapabilities {
  return {
    ...router,
    headerExtensions: (router.headerExtensions ?? []).filter(
      (extension) => !/transport-wide-cc|abs-send-time/.test(extension.uri),
    ),
  };
}

/** Runs one scenario on a fresh single-worker node and returns its figures. */
export async function runFanout(scenario: FanoutScenario): Promise<FanoutResult> {
  const { viewers, spatialLayer } = scenario;
  const srtp = scenario.srtp === undefined ? VIEWER_SRTP : (scenario.srtp ?? undefined);
  const node = await VoiceNode.start(
    voiceConfig({ numWorkers: 1, rtcBasePort: 0, maxConsumersPerEdge: viewers + 10 }),
    quietLogger,
  );
  const sink = await startSink(SINK_SOCKETS);
  const probes: Probe[] = [];
  const consumers: { peerId: string; consumer: types.Consumer }[] = [];
  let sender: Vp8ShareSender | undefined;
  try {
    const channelName = `screen-bench-${viewers}`;
    const joined = await node.channels.join(
      channelName,
      testIdentity('sharer', ['join', 'speak', 'screen-share']),
      node.routerRtpCapabilities,
      new RecordingSink(),
      { autoResume: true },
    );
    const { channel } = joined;
    const sendTransport = await channel.createPlainTransport(joined.peer.id, 'send');
    const producer = await channel.produce(joined.peer.id, {
      transportId: sendTransport.id,
      kind: 'video',
      source: 'screen',
      rtpParameters: vp8SimulcastRtpParameters(
        SHARE_LAYERS.map(({ ssrc, bitrate }) => ({ ssrc, maxBitrate: bitrate })),
      ),
    });
    sender = new Vp8ShareSender(await bindUdp(), sendTransport, SHARE_LAYERS, {
      fps: SHARE_FPS,
    });
    void sender.start();
    // Viewers join once the SFU holds both layers and a sender report of each. A viewer that
    // asks for a layer before the reports arrive can stay on the one it has: mediasoup 3.12
    // reconsiders a viewer's layers on the first report only if the viewer already forwards a
    // layer, and otherwise not until a score changes.
    await until(
      () => producer.score.filter(({ score }) => score > 0).length === SHARE_LAYERS.length,
      10_000,
      'both layers at the producer',
    );
    await new Promise((resolve) => setTimeout(resolve, 1200));

    const capabilities = viewerRtpCapabilities(node.routerRtpCapabilities);
    for (let index = 0; index < viewers; index++) {
      const { peer } = await node.channels.join(
        channelName,
        testIdentity(`viewer-${index}`, ['join']),
        capabilities,
        new RecordingSink(),
        { autoResume: true },
      );
      const probe = index < PROBES;
      const transport = await channel.createPlainTransport(
        peer.id,
        'recv',
        probe ? undefined : srtp,
      );
      transport.observer.on('newconsumer', (consumer) =>
        consumers.push({ peerId: peer.id, consumer }),
      );
      let port: number;
      if (probe) {
        const entry = await openProbe();
        probes.push(entry);
        port = entry.socket.address().port;
      } else {
        port = sink.ports[index % sink.ports.length]!;
      }
      await transport.connect({
        ip: '127.0.0.1',
        port,
        srtpParameters:
          probe || !srtp
            ? undefined
            : { cryptoSuite: srtp, keyBase64: transport.srtpParameters!.keyBase64 },
      });
    }
    await until(() => consumers.length >= viewers, 30_000, `${viewers} consumers`);
    if (spatialLayer !== SHARE_LAYERS.length - 1) {
      // Viewers ask for the top layer unless told otherwise, as mediasoup's default is the top.
      for (const { peerId, consumer } of consumers) {
        await channel.setConsumerPreferredLayers(peerId, consumer.id, { spatialLayer });
      }
    }
    const onLayer = () =>
      consumers.filter(({ consumer }) => consumer.currentLayers?.spatialLayer === spatialLayer)
        .length;
    await until(
      () => onLayer() === viewers,
      20_000,
      () =>
        `every viewer on layer ${spatialLayer} (now ${JSON.stringify(
          consumers.map(({ consumer }) => consumer.currentLayers?.spatialLayer ?? null),
        )})`,
    );
    // A second of steady forwarding before the window.
    await new Promise((resolve) => setTimeout(resolve, 1000));

    // The window is bounded by pauses of the sharer, so that every counter, read while nothing
    // flows, covers exactly the same packets.
    await sender.stop();
    const pausedAt = performance.now();
    await new Promise((resolve) => setTimeout(resolve, DRAIN_MS));
    const onLayerBefore = onLayer();
    const before = await snapshot(producer, consumers, sink, probes, sender);
    for (const probe of probes) probe.delaysMs.length = 0;
    const loadAverageBefore = round(loadAverage(), 2);
    const [workerBefore] = await cpuSeconds(node);
    const benchBefore = process.cpuUsage();
    const sinkBefore = processCpuSeconds(sink.process.pid!);
    const foreignCpu = foreignCpuMeter();
    const started = performance.now();
    const pauseMs = Math.round(started - pausedAt);
    await sender.start(Math.round(scenario.seconds * SHARE_FPS));
    const elapsedSeconds = (performance.now() - started) / 1000;
    const foreignCpuCores = foreignCpu();
    const [workerAfter] = await cpuSeconds(node);
    const benchUsage = process.cpuUsage(benchBefore);
    const sinkCpu = processCpuSeconds(sink.process.pid!) - sinkBefore;
    await new Promise((resolve) => setTimeout(resolve, DRAIN_MS));
    const after = await snapshot(producer, consumers, sink, probes, sender);

    const sent = after.sent.map((counters, layer) => ({
      packets: counters.packets - before.sent[layer]!.packets,
      payloadBytes: counters.payloadBytes - before.sent[layer]!.payloadBytes,
      frames: counters.frames - before.sent[layer]!.frames,
      keyFrames: counters.keyFrames - before.sent[layer]!.keyFrames,
    }));
    const sentAll = sent.reduce((sum, layer) => sum + layer.packets, 0);
    const receivedAll = after.producerPackets.reduce(
      (sum, packets, layer) => sum + packets - before.producerPackets[layer]!,
      0,
    );
    const receivedOnLayer =
      after.producerPackets[spatialLayer]! - before.producerPackets[spatialLayer]!;
    const forwarded = after.consumerPackets - before.consumerPackets;
    const delivered =
      after.sinkPackets - before.sinkPackets + (after.probePackets - before.probePackets);
    const delaysMs = probes.flatMap((probe) => probe.delaysMs);
    return {
      scenario,
      loadAverageBefore,
      foreignCpuCores: round(foreignCpuCores, 2),
      viewersOnLayer: { before: onLayerBefore, after: onLayer() },
      pauseMs,
      workerCpuPercent: round(((workerAfter! - workerBefore!) / elapsedSeconds) * 100),
      benchCpuPercent: {
        sharerAndProbes: round(
          ((benchUsage.user + benchUsage.system) / 1e6 / elapsedSeconds) * 100,
        ),
        sink: round((sinkCpu / elapsedSeconds) * 100),
      },
      forwardedMbps: round(
        ((after.consumerBytes - before.consumerBytes) * 8) / elapsedSeconds / 1e6,
      ),
      forwardedPacketsPerSecond: Math.round(forwarded / elapsedSeconds),
      sent,
      inputLossPercent: lossPercent(receivedAll, sentAll),
      sfuLossPercent: lossPercent(forwarded, receivedOnLayer * viewers),
      endToEndLossPercent: lossPercent(delivered, sent[spatialLayer]!.packets * viewers),
      receiverSocketDrops: after.sinkDrops - before.sinkDrops,
      latencyMs: {
        p50: round(percentile(delaysMs, 50), 2),
        p95: round(percentile(delaysMs, 95), 2),
        p99: round(percentile(delaysMs, 99), 2),
        max: round(Math.max(...delaysMs), 2),
      },
    };
  } finally {
    sender?.close();
    for (const probe of probes) probe.socket.close();
    sink.process.send({ command: 'stop' });
    node.close();
  }
}

function lossPercent(got: number, expected: number): number {
  return round(Math.max(0, 1 - got / expected) * 100, 3);
}

async function openProbe(): Promise<Probe> {
  const socket = await bindUdp();
  const probe: Probe = { socket, delaysMs: [], packets: 0 };
  socket.on('message', (packet) => {
    // RTCP shares the port (rtcp-mux); its packet types 200-207 sit where RTP has the payload type.
    if (packet.length < 12 || (packet[1]! >= 200 && packet[1]! <= 207)) return;
    probe.packets++;
    const sentAt = readVp8SentAtMicros(packet);
    if (sentAt !== undefined) probe.delaysMs.push(Number(nowMicros() - sentAt) / 1000);
  });
  return probe;
}

async function until(
  condition: () => boolean,
  timeoutMs: number,
  what: string | (() => string),
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${typeof what === 'string' ? what : what()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// Every counter of a run at one moment.
interface Snapshot {
  sent: Vp8LayerCounters[];
  producerPackets: number[];
  consumerPackets: number;
  consumerBytes: number;
  sinkPackets: number;
  sinkDrops: number;
  probePackets: number;
}

async function snapshot(
  producer: types.Producer,
  consumers: readonly { consumer: types.Consumer }[],
  sink: Sink,
  probes: readonly Probe[],
  sender: Vp8ShareSender,
): Promise<Snapshot> {
  const producerStats = await producer.getStats();
  const producerPackets = SHARE_LAYERS.map(
    ({ ssrc }) => producerStats.find((entry) => entry.ssrc === ssrc)?.packetCount ?? 0,
  );
  let consumerPackets = 0;
  let consumerBytes = 0;
  // In batches, so hundreds of stats requests do not queue on the worker channel at once.
  for (let start = 0; start < consumers.length; start += 250) {
    const stats = await Promise.all(
      consumers.slice(start, start + 250).map(({ consumer }) => consumer.getStats()),
    );
    for (const entries of stats) {
      const outbound = entries.find((entry) => entry.type === 'outbound-rtp');
      consumerPackets += outbound?.packetCount ?? 0;
      consumerBytes += outbound?.byteCount ?? 0;
    }
  }
  return {
    sent: sender.sent,
    producerPackets,
    consumerPackets,
    consumerBytes,
    sinkPackets: await sinkCount(sink),
    sinkDrops: udpSocketDrops(sink.ports),
    probePackets: probes.reduce((sum, probe) => sum + probe.packets, 0),
  };
}
