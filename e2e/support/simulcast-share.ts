import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import type { TestApi } from '../../api/test/support/server';
import { SHARE_ENCODING, VP8_PAYLOAD_TYPE, producePlainScreen } from './real-share';
import { eventually } from './wait';

// One SSRC per simulcast layer, lowest first.
const LAYER_SSRCS = [7101, 7102] as const;
const LAYER_MAX_BITRATES = [500_000, 1_500_000] as const;
// RTCP packet types (RFC 3550, RFC 4585) sit where RTP has its marker bit and payload type.
const RTCP_TYPES = { min: 200, max: 206 };
const RTCP_SENDER_REPORT = 200;
// ffmpeg's RTP muxer sends its second sender report about 5 s after its first.
const SENDER_REPORT_WAIT_MS = 15_000;

/**
 * Encodes `seconds` of a moving test pattern as VP8 (the share's libvpx settings, at `bitrate`)
 * into an IVF file, once and faster than real time, so sending it later costs almost nothing.
 */
export async function encodeVp8File(
  file: string,
  options: { width: number; height: number; seconds: number; bitrate: string },
): Promise<void> {
  const encoder = spawn(
    '/usr/bin/ffmpeg',
    [
      ...['-hide_banner', '-loglevel', 'error', '-y', '-f', 'lavfi'],
      ...['-i', `testsrc2=size=${options.width}x${options.height}:rate=30`],
      ...['-t', String(options.seconds), ...SHARE_ENCODING, '-b:v', options.bitrate],
      ...['-f', 'ivf', file],
    ],
    { stdio: 'ignore' },
  );
  const code = await new Promise<number | null>((resolve, reject) => {
    encoder.once('error', reject);
    encoder.once('exit', resolve);
  });
  if (code !== 0) throw new Error(`encoding ${file} failed with ${code}`);
}

/** A running two-layer VP8 simulcast screen share. */
export interface SimulcastShare {
  /** RTP and RTCP packets of a layer (0 low, 1 top) that reached the voice node so far. */
  forwarded(layer: 0 | 1): number;
  /** The voice node's score of each layer as it receives it (0 to 10, 0 once it stopped). */
  layerScores(): Promise<number[]>;
  /** Stops a layer for good, as a sharer disabling that encoding: its sender is killed. */
  dropLayer(layer: 0 | 1): Promise<void>;
  /** Stops both senders and the relay, and closes the share's producer. */
  stop(): void;
}

/**
 * Shares a real two-layer VP8 simulcast screen for a peer, as a browser sends one: each layer is
 * a VP8 file (`layers`, lowest first) sent as it is, looped, by its own ffmpeg, with its RTCP
 * sender reports. A UDP relay passes both to the voice node from one address, since the comedia
 * transport takes media from the first address only. Its `stop` joins `cleanup`.
 *
 * Resolves once the voice node holds a sender report of each layer: mediasoup switches a
 * consumer between layers only then (SimulcastConsumer::CanSwitchToSpatialLayer), and drops a
 * report that comes before the layer's first packet, which is where ffmpeg sends its first one.
 * A browser's next report follows within a second, ffmpeg's only about 5 s later.
 */
export async function shareSimulcastVp8(
  api: TestApi,
  channel: string,
  peerId: string,
  cleanup: Array<() => unknown>,
  options: { layers: readonly [string, string]; seconds: number },
): Promise<SimulcastShare> {
  const { transport, producer } = await producePlainScreen(
    api,
    channel,
    peerId,
    LAYER_SSRCS.map((ssrc, layer) => ({ ssrc, maxBitrate: LAYER_MAX_BITRATES[layer]! })),
  );
  const target = transport.tuple.localPort;
  const counts = [0, 0];
  const sentMedia = [false, false];
  const keptSenderReports = [0, 0];
  const relay = dgram.createSocket('udp4');
  relay.on('message', (packet, from) => {
    // What the voice node sends back (receiver reports, NACKs, key frame requests) goes nowhere:
    // the senders replay files and could not act on it.
    if (from.port === target || packet.length < 12) return;
    const rtcp = packet[1]! >= RTCP_TYPES.min && packet[1]! <= RTCP_TYPES.max;
    const layer = LAYER_SSRCS.indexOf(packet.readUInt32BE(rtcp ? 4 : 8) as 7101 | 7102);
    if (layer < 0) return;
    if (!rtcp) sentMedia[layer] = true;
    else if (packet[1] === RTCP_SENDER_REPORT && sentMedia[layer]) keptSenderReports[layer]! += 1;
    counts[layer]! += 1;
    relay.send(packet, target, '127.0.0.1');
  });
  await new Promise<void>((resolve) => relay.bind(0, '127.0.0.1', resolve));
  const relayPort = relay.address().port;
  const senders: ChildProcess[] = options.layers.map((file, layer) =>
    spawn(
      '/usr/bin/ffmpeg',
      [
        ...['-hide_banner', '-loglevel', 'error', '-re', '-stream_loop', '-1', '-i', file],
        ...['-t', String(options.seconds), '-c:v', 'copy'],
        ...['-ssrc', String(LAYER_SSRCS[layer]), '-payload_type', String(VP8_PAYLOAD_TYPE)],
        // RTP and RTCP both to the relay, which tells them apart.
        ...['-f', 'rtp', `rtp://127.0.0.1:${relayPort}?rtcpport=${relayPort}`],
      ],
      { stdio: 'ignore' },
    ),
  );
  const exits = senders.map(
    (sender) => new Promise<void>((resolve) => sender.once('exit', () => resolve())),
  );
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    for (const sender of senders) sender.kill('SIGKILL');
    relay.close();
    producer.close();
  };
  cleanup.push(stop);
  await eventually(
    async () => keptSenderReports.every((reports) => reports > 0),
    SENDER_REPORT_WAIT_MS,
    'a sender report of each layer after its first packet',
  );
  return {
    forwarded: (layer) => counts[layer]!,
    async layerScores() {
      const stats = await producer.getStats();
      return LAYER_SSRCS.map((ssrc) => stats.find((stat) => stat.ssrc === ssrc)?.score ?? 0);
    },
    async dropLayer(layer) {
      senders[layer]!.kill('SIGKILL');
      await exits[layer];
    },
    stop,
  };
}
