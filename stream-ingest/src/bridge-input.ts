import dgram from 'node:dgram';
import {
  bridgeOfferSchema,
  type BridgeAnswer,
  type BridgeOffer,
  type BridgeStream,
  type ShareCapture,
} from '@hearth/protocol';
import type { SourceInfo } from './ladder';

/** A share bridge as ffmpeg reads it: the SDP written on its stdin, and where it listens. */
export interface BridgeFeed {
  /** The SDP of the bridge's streams. */
  readonly sdp: string;
  /** The ingest node's address the RTP sockets bind to. */
  readonly localAddress: string;
  /** How many audio streams it has (the share's and the microphone), mixed into one. */
  readonly audioStreams: number;
}

/** Ports a bridge may receive on: even RTP ports, each with its RTCP port right above. */
export interface BridgePortRange {
  /** Lowest RTP port, even. */
  readonly min: number;
  /** Highest RTCP port. */
  readonly max: number;
}

/** The ports bridges receive on unless configured otherwise. */
export const DEFAULT_BRIDGE_PORT_RANGE: BridgePortRange = { min: 40_000, max: 40_999 };

// Random tries at finding a free pair before giving up: the range is far larger than what one
// node ever bridges, so a few tries find one unless the range is nearly full.
const PORT_ATTEMPTS = 32;

/**
 * Finds `count` pairs of free UDP ports (RTP on an even port, RTCP on the next) on `address`, in
 * `range`. It binds each pair to check, then releases it for ffmpeg to bind: another process may
 * take a port in between, which ffmpeg then reports as a failed start.
 */
export async function reserveBridgePorts(
  address: string,
  count: number,
  range: BridgePortRange = DEFAULT_BRIDGE_PORT_RANGE,
): Promise<number[]> {
  const pairs = Math.floor((range.max - range.min + 1) / 2);
  const chosen: number[] = [];
  for (let attempt = 0; chosen.length < count && attempt < PORT_ATTEMPTS; attempt++) {
    const port = range.min + 2 * Math.floor(Math.random() * pairs);
    if (chosen.includes(port)) continue;
    if (await pairIsFree(address, port)) chosen.push(port);
  }
  if (chosen.length < count) {
    throw new Error(`no free bridge ports in ${range.min}-${range.max} on ${address}`);
  }
  return chosen;
}

async function pairIsFree(address: string, port: number): Promise<boolean> {
  const sockets = [dgram.createSocket('udp4'), dgram.createSocket('udp4')];
  try {
    await Promise.all(
      sockets.map(
        (socket, index) =>
          new Promise<void>((resolve, reject) => {
            socket.once('error', reject);
            socket.bind(port + index, address, () => resolve());
          }),
      ),
    );
    return true;
  } catch {
    return false;
  } finally {
    for (const socket of sockets) {
      try {
        socket.close();
      } catch {
        // Never bound: nothing to close.
      }
    }
  }
}

/**
 * The bridge as ffmpeg's SDP input reads it, in the clear from the bridge receiver: one media
 * line per stream, on the answer's ports, from `sourceAddress`. Keys and feedback are the
 * receiver's business: ffmpeg only reads.
 */
export function bridgeFeed(
  offer: BridgeOffer,
  answer: BridgeAnswer,
  sourceAddress: string,
): BridgeFeed {
  const { streams } = bridgeOfferSchema.parse(offer);
  if (answer.ports.length !== streams.length) {
    throw new RangeError(
      `${streams.length} streams need as many ports, got ${answer.ports.length}`,
    );
  }
  if (!/^[0-9.]+$/.test(sourceAddress) || !/^[0-9.]+$/.test(answer.ip)) {
    throw new TypeError('bridge addresses must be IPv4 addresses');
  }
  const lines = [
    'v=0',
    `o=- 0 0 IN IP4 ${answer.ip}`,
    's=Hearth share bridge',
    `c=IN IP4 ${sourceAddress}`,
    't=0 0',
    ...streams.flatMap((stream, index) => mediaSection(stream, answer.ports[index]!)),
  ];
  return {
    sdp: `${lines.join('\r\n')}\r\n`,
    localAddress: answer.ip,
    audioStreams: streams.filter((stream) => stream.role !== 'video').length,
  };
}

function mediaSection(stream: BridgeStream, port: number): string[] {
  const kind = stream.role === 'video' ? 'video' : 'audio';
  const [, codec] = stream.mimeType.split('/');
  const channels = stream.channels === undefined ? '' : `/${stream.channels}`;
  const pt = stream.payloadType;
  return [
    `m=${kind} ${port} RTP/AVP ${pt}`,
    `a=rtpmap:${pt} ${codec}/${stream.clockRate}${channels}`,
  ];
}

/**
 * What a bridge's ladder is planned for: the share's capture as its sharer reported it, within
 * the size and rate `cap` allows (the channel's preset), or `cap` when the sharer said nothing.
 */
export function bridgeLadderSource(cap: SourceInfo, capture: ShareCapture | undefined): SourceInfo {
  if (!capture) return cap;
  const fits = capture.width <= cap.width && capture.height <= cap.height;
  const { width, height } = fits ? capture : cap;
  return { width, height, fps: Math.min(capture.fps, cap.fps) };
}
