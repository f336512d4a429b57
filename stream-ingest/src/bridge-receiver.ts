import dgram from 'node:dgram';
import { randomInt } from 'node:crypto';
import { bridgeOfferSchema, type BridgeOffer, type BridgeStream } from '@hearth/protocol';
import { SrtpContext, rtpHeaderBytes, type Logger } from '@hearth/server-common';
import {
  DEFAULT_BRIDGE_PORT_RANGE,
  bridgeFeed,
  reserveBridgePorts,
  type BridgeFeed,
  type BridgePortRange,
} from './bridge-input';
import { genericNack, pictureLossIndication, receiverReport } from './rtcp-feedback';

// ffmpeg reads a bridge on loopback, in the clear: the receiver in front of it does what
// Debian's ffmpeg 5.1 does not, since its RTP input sends no RTCP at all (no reports, NACKs or
// key frame requests): it decrypts SRTP, asks for lost packets and key frames, and keeps audio
// continuous with silence while the sender sends none.
const LOOPBACK = '127.0.0.1';
// The receiver's clock: NACKs, key frame requests, silence and reports are decided this often.
const TICK_MS = 20;
// A lost packet is asked for again this often, this many times at most, and given up once it is
// this old: ffmpeg waits 200 ms for a missing packet before it moves on (-max_delay).
const NACK_RETRY_MS = 40;
const MAX_NACKS_PER_PACKET = 4;
const NACK_GIVE_UP_MS = 180;
// Missing packets asked for at most: a longer gap is a cut, which only a key frame repairs.
const MAX_MISSING = 512;
// Sequence numbers remembered as received, to drop duplicates (retransmissions that crossed
// their original).
const RECEIVED_WINDOW = 1024;
// Key frame requests at most this often, and again this often until a key frame arrives.
const MIN_KEY_FRAME_INTERVAL_MS = 500;
// Receiver reports this often per stream.
const REPORT_INTERVAL_MS = 1000;
// Audio silent for this long is filled with Opus silence, 20 ms per packet, so that ffmpeg's
// audio never stalls the mux (a muted microphone sends nothing).
const SILENCE_AFTER_MS = 60;
const OPUS_FRAME_MS = 20;
// An Opus packet of one 20 ms CELT frame that decodes to silence (TOC 0xf8, RFC 6716 3.1).
const OPUS_SILENCE = Buffer.from([0xf8, 0xff, 0xfe]);
// Datagrams larger than a jumbo frame are not RTP anyone packetized: browsers send 1200 bytes
// at most, ffmpeg 1472, and mediasoup adds its SRTP tag and header extensions on top.
const MAX_DATAGRAM_BYTES = 9000;
const SEQUENCE_SPACE = 0x1_0000;
const HALF_SEQUENCE_SPACE = 0x8000;

/** What one stream of a bridge received and asked for. */
export interface BridgeStreamCounters {
  /** Which part of the share the stream carries. */
  readonly role: BridgeStream['role'];
  /** RTP packets passed on to ffmpeg, retransmissions included. */
  packets: number;
  /** Datagrams dropped: from elsewhere, another SSRC, failed authentication, or malformed. */
  rejected: number;
  /** Duplicates dropped. */
  duplicates: number;
  /** Packets asked for again with a NACK. */
  nacked: number;
  /** Packets asked for that arrived. */
  recovered: number;
  /** Packets given up on. */
  lost: number;
  /** Key frame requests sent. */
  keyFrameRequests: number;
  /** Silent Opus packets made up while the sender sent no audio. */
  silencePackets: number;
}

interface MissingPacket {
  readonly since: number;
  lastNackAt: number;
  nacks: number;
}

/** One stream: its sockets towards the voice node, and its state as a receiver. */
class StreamLeg {
  readonly counters: BridgeStreamCounters;
  readonly missing = new Map<number, MissingPacket>();
  // Extended sequence numbers received, plus one, each at its slot modulo the window.
  readonly received = new Float64Array(RECEIVED_WINDOW);
  started = false;
  highest = 0;
  firstSequence = 0;
  // Reception statistics for receiver reports (RFC 3550 A.3, A.8).
  receivedCount = 0;
  expectedAtLastReport = 0;
  receivedAtLastReport = 0;
  jitter = 0;
  lastTransit: number | undefined;
  lastReportAt = 0;
  // Video: whether a key frame arrived since the last request, and when the last went out.
  keyFrameSeen = false;
  lastKeyFrameRequestAt = -Infinity;
  // Audio: what went to ffmpeg last, to continue it with silence and after it.
  lastArrivalAt: number;
  lastOutSequence: number;
  lastOutTimestamp: number;
  lastOutAt = 0;
  sequenceOffset = 0;
  timestampOffset = 0;
  filling = false;
  // After silence, packets at or below this extended sequence number are too late to fit.
  floor = -1;

  constructor(
    readonly stream: BridgeStream,
    readonly rtp: dgram.Socket,
    readonly rtcp: dgram.Socket,
    readonly forwardPort: number,
    readonly srtp: SrtpContext | undefined,
    openedAt: number,
  ) {
    this.counters = {
      role: stream.role,
      packets: 0,
      rejected: 0,
      duplicates: 0,
      nacked: 0,
      recovered: 0,
      lost: 0,
      keyFrameRequests: 0,
      silencePackets: 0,
    };
    this.lastArrivalAt = openedAt;
    this.lastOutSequence = randomInt(SEQUENCE_SPACE);
    this.lastOutTimestamp = randomInt(0xffff_ffff);
  }
}

/**
 * Receives a share bridge for ffmpeg: binds one RTP and RTCP port pair per stream on the ingest
 * node's bridge address (what the answer names), takes packets only from the voice node, and
 * passes them on in the clear to ffmpeg's ports on loopback. Towards the voice node it acts the
 * receiver ffmpeg is not: NACKs for lost packets, key frame requests at the start, on loss it
 * could not repair and when asked (ffmpeg failed to decode), and receiver reports. Audio gaps
 * are filled with silence. Bytes from the network never throw out of it.
 */
export class BridgeReceiver {
  /** What ffmpeg reads: the SDP of the clear streams on loopback. */
  readonly feed: BridgeFeed;
  /** Where the voice node sends, stream i to `ports[i]` and its RTCP to the next port. */
  readonly answer: { ip: string; ports: number[] };
  readonly #legs: StreamLeg[];
  readonly #forward: dgram.Socket;
  readonly #sourceAddress: string;
  readonly #ssrc = randomInt(1, 0xffff_ffff);
  readonly #logger: Logger;
  readonly #timer: NodeJS.Timeout;
  #closed = false;

  private constructor(options: {
    legs: StreamLeg[];
    forward: dgram.Socket;
    feed: BridgeFeed;
    answer: { ip: string; ports: number[] };
    sourceAddress: string;
    logger: Logger;
  }) {
    this.#legs = options.legs;
    this.#forward = options.forward;
    this.feed = options.feed;
    this.answer = options.answer;
    this.#sourceAddress = options.sourceAddress;
    this.#logger = options.logger;
    for (const leg of this.#legs) {
      leg.rtp.on('message', (packet, from) => this.#onRtp(leg, packet, from));
      // The voice node's sender reports are not read: nothing here needs the round-trip time.
      leg.rtcp.on('message', () => undefined);
      for (const socket of [leg.rtp, leg.rtcp]) {
        socket.on('error', (error) => this.#logger.warn({ err: error }, 'bridge socket error'));
      }
    }
    this.#forward.on('error', (error) => this.#logger.warn({ err: error }, 'bridge socket error'));
    this.#timer = setInterval(() => this.#tick(performance.now()), TICK_MS);
  }

  /**
   * Opens the receiver of `offer`, sent from `sourceAddress`: its public ports on `host` in
   * `range`, and ffmpeg's on loopback.
   */
  static async open(options: {
    offer: BridgeOffer;
    host: string;
    sourceAddress: string;
    range?: BridgePortRange;
    logger: Logger;
  }): Promise<BridgeReceiver> {
    const { streams } = bridgeOfferSchema.parse(options.offer);
    const range = options.range ?? DEFAULT_BRIDGE_PORT_RANGE;
    const pairs: [dgram.Socket, dgram.Socket][] = [];
    const forward = dgram.createSocket('udp4');
    try {
      for (let i = 0; i < streams.length; i++) pairs.push(await bindPair(options.host, range));
      await new Promise<void>((resolve, reject) => {
        forward.once('error', reject);
        forward.bind(0, LOOPBACK, () => resolve());
      });
      const loopbackPorts = await reserveBridgePorts(LOOPBACK, streams.length, range);
      const openedAt = performance.now();
      const legs = streams.map((stream, index) => {
        const [rtp, rtcp] = pairs[index]!;
        const srtp =
          stream.srtpKeyBase64 === undefined ? undefined : new SrtpContext(stream.srtpKeyBase64);
        return new StreamLeg(stream, rtp, rtcp, loopbackPorts[index]!, srtp, openedAt);
      });
      const clearOffer: BridgeOffer = {
        streams: streams.map(({ srtpKeyBase64: _key, ...clear }) => clear),
      };
      const feed = bridgeFeed(clearOffer, { ip: LOOPBACK, ports: loopbackPorts }, LOOPBACK);
      const answer = { ip: options.host, ports: pairs.map(([rtp]) => rtp.address().port) };
      return new BridgeReceiver({
        legs,
        forward,
        feed,
        answer,
        sourceAddress: options.sourceAddress,
        logger: options.logger,
      });
    } catch (error) {
      for (const socket of [...pairs.flat(), forward]) closeQuietly(socket);
      throw error;
    }
  }

  /** What each stream received and asked for so far, in the offer's order. */
  get counters(): readonly BridgeStreamCounters[] {
    return this.#legs.map((leg) => ({ ...leg.counters }));
  }

  /**
   * Asks the sharer for a key frame now (ffmpeg could not decode, or started again), unless one
   * was asked for less than half a second ago.
   */
  requestKeyFrame(reason: string): void {
    const video = this.#legs.find((leg) => leg.stream.role === 'video');
    if (!video || this.#closed) return;
    if (this.#sendKeyFrameRequest(video, performance.now())) {
      this.#logger.debug({ reason }, 'bridge asked for a key frame');
    }
  }

  /** Closes every socket; closing again does nothing. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    for (const leg of this.#legs) {
      closeQuietly(leg.rtp);
      closeQuietly(leg.rtcp);
    }
    closeQuietly(this.#forward);
    this.#logger.info({ streams: this.counters }, 'bridge receiver closed');
  }

  #onRtp(leg: StreamLeg, datagram: Buffer, from: dgram.RemoteInfo): void {
    if (this.#closed) return;
    const now = performance.now();
    const packet = this.#accept(leg, datagram, from);
    if (!packet) {
      leg.counters.rejected += 1;
      return;
    }
    const sequence = packet.readUInt16BE(2);
    if (!leg.started) {
      leg.started = true;
      leg.highest = sequence;
      leg.firstSequence = sequence;
    }
    const extended = extend(leg.highest, sequence);
    const slot = ((extended % RECEIVED_WINDOW) + RECEIVED_WINDOW) % RECEIVED_WINDOW;
    if (leg.received[slot] === extended + 1 || extended <= leg.highest - RECEIVED_WINDOW) {
      leg.counters.duplicates += 1;
      return;
    }
    if (extended > leg.highest) this.#advance(leg, extended, now);
    else if (leg.missing.delete(extended)) leg.counters.recovered += 1;
    leg.received[slot] = extended + 1;
    leg.receivedCount += 1;
    this.#updateJitter(leg, packet, now);
    if (leg.stream.role === 'video') {
      if (isVp8KeyFrameStart(packet)) leg.keyFrameSeen = true;
      this.#send(this.#forward, packet, leg.forwardPort, LOOPBACK);
      leg.counters.packets += 1;
      return;
    }
    this.#forwardAudio(leg, packet, extended, now);
  }

  // The clear packet, or undefined when it is not this stream's RTP from the voice node.
  #accept(leg: StreamLeg, datagram: Buffer, from: dgram.RemoteInfo): Buffer | undefined {
    if (from.address !== this.#sourceAddress || datagram.length > MAX_DATAGRAM_BYTES) {
      return undefined;
    }
    if (rtpHeaderBytes(datagram) === undefined) return undefined;
    if ((datagram[1]! & 0x7f) !== leg.stream.payloadType) return undefined;
    if (datagram.readUInt32BE(8) !== leg.stream.ssrc) return undefined;
    return leg.srtp ? leg.srtp.unprotectRtp(datagram) : datagram;
  }

  // A packet newer than any: the ones skipped are missing, to be asked for; a long cut is not
  // asked for packet by packet, the decoder needs a key frame after it anyway.
  #advance(leg: StreamLeg, extended: number, now: number): void {
    const skipped = extended - leg.highest - 1;
    if (skipped > 0 && skipped + leg.missing.size <= MAX_MISSING) {
      for (let sequence = leg.highest + 1; sequence < extended; sequence++) {
        leg.missing.set(sequence, { since: now, lastNackAt: -Infinity, nacks: 0 });
      }
    } else if (skipped > 0) {
      leg.counters.lost += skipped;
      this.#lossNotRepaired(leg, now);
    }
    leg.highest = extended;
  }

  #forwardAudio(leg: StreamLeg, packet: Buffer, extended: number, now: number): void {
    if (extended <= leg.floor) return;
    if (leg.filling) {
      // Real audio again after silence: it continues where the silence stopped.
      leg.sequenceOffset = (leg.lastOutSequence + 1 - packet.readUInt16BE(2)) & 0xffff;
      leg.timestampOffset =
        (leg.lastOutTimestamp + samplesPerFrame(leg) - packet.readUInt32BE(4)) >>> 0;
      leg.floor = extended - 1;
      leg.filling = false;
    }
    leg.lastArrivalAt = now;
    const out = Buffer.from(packet);
    const outSequence = (packet.readUInt16BE(2) + leg.sequenceOffset) & 0xffff;
    const outTimestamp = (packet.readUInt32BE(4) + leg.timestampOffset) >>> 0;
    out.writeUInt16BE(outSequence, 2);
    out.writeUInt32BE(outTimestamp, 4);
    if (extended >= leg.highest) {
      leg.lastOutSequence = outSequence;
      leg.lastOutTimestamp = outTimestamp;
      leg.lastOutAt = now;
    }
    this.#send(this.#forward, out, leg.forwardPort, LOOPBACK);
    leg.counters.packets += 1;
  }

  #tick(now: number): void {
    if (this.#closed) return;
    for (const leg of this.#legs) {
      this.#sendNacks(leg, now);
      if (leg.stream.role === 'video' && !leg.keyFrameSeen) this.#sendKeyFrameRequest(leg, now);
      if (leg.stream.role !== 'video') this.#fillSilence(leg, now);
      if (leg.started && now - leg.lastReportAt >= REPORT_INTERVAL_MS) this.#sendReport(leg, now);
    }
  }

  #sendNacks(leg: StreamLeg, now: number): void {
    const due: number[] = [];
    let gaveUp = false;
    for (const [sequence, missing] of leg.missing) {
      if (now - missing.since > NACK_GIVE_UP_MS || missing.nacks >= MAX_NACKS_PER_PACKET) {
        if (now - missing.since <= NACK_GIVE_UP_MS) continue;
        leg.missing.delete(sequence);
        leg.counters.lost += 1;
        gaveUp = true;
      } else if (now - missing.lastNackAt >= NACK_RETRY_MS) {
        missing.lastNackAt = now;
        missing.nacks += 1;
        due.push(sequence);
      }
    }
    if (due.length > 0) {
      leg.counters.nacked += due.length;
      this.#sendRtcp(leg, genericNack(this.#ssrc, leg.stream.ssrc, due));
    }
    if (gaveUp) this.#lossNotRepaired(leg, now);
  }

  // Audio passes over what it lost; video needs a key frame to decode again.
  #lossNotRepaired(leg: StreamLeg, now: number): void {
    if (leg.stream.role !== 'video') return;
    leg.keyFrameSeen = false;
    this.#sendKeyFrameRequest(leg, now);
  }

  #sendKeyFrameRequest(leg: StreamLeg, now: number): boolean {
    if (now - leg.lastKeyFrameRequestAt < MIN_KEY_FRAME_INTERVAL_MS) return false;
    leg.lastKeyFrameRequestAt = now;
    leg.counters.keyFrameRequests += 1;
    this.#sendRtcp(leg, pictureLossIndication(this.#ssrc, leg.stream.ssrc));
    return true;
  }

  #fillSilence(leg: StreamLeg, now: number): void {
    if (now - leg.lastArrivalAt < SILENCE_AFTER_MS) return;
    if (!leg.filling) {
      leg.filling = true;
      leg.lastOutAt = Math.max(leg.lastOutAt, now - OPUS_FRAME_MS);
    }
    while (now - leg.lastOutAt >= OPUS_FRAME_MS) {
      leg.lastOutAt += OPUS_FRAME_MS;
      leg.lastOutSequence = (leg.lastOutSequence + 1) & 0xffff;
      leg.lastOutTimestamp = (leg.lastOutTimestamp + samplesPerFrame(leg)) >>> 0;
      const packet = Buffer.alloc(12 + OPUS_SILENCE.length);
      packet[0] = 0x80;
      packet[1] = leg.stream.payloadType;
      packet.writeUInt16BE(leg.lastOutSequence, 2);
      packet.writeUInt32BE(leg.lastOutTimestamp, 4);
      packet.writeUInt32BE(leg.stream.ssrc, 8);
      OPUS_SILENCE.copy(packet, 12);
      this.#send(this.#forward, packet, leg.forwardPort, LOOPBACK);
      leg.counters.silencePackets += 1;
    }
  }

  #sendReport(leg: StreamLeg, now: number): void {
    leg.lastReportAt = now;
    const expected = leg.highest - leg.firstSequence + 1;
    const expectedInterval = expected - leg.expectedAtLastReport;
    const receivedInterval = leg.receivedCount - leg.receivedAtLastReport;
    leg.expectedAtLastReport = expected;
    leg.receivedAtLastReport = leg.receivedCount;
    const lostInterval = expectedInterval - receivedInterval;
    this.#sendRtcp(
      leg,
      receiverReport(this.#ssrc, [
        {
          ssrc: leg.stream.ssrc,
          fractionLost:
            expectedInterval > 0 && lostInterval > 0 ? lostInterval / expectedInterval : 0,
          cumulativeLost: expected - leg.receivedCount,
          extendedHighestSequence: leg.highest,
          jitter: leg.jitter,
        },
      ]),
    );
  }

  // Interarrival jitter in RTP units (RFC 3550 A.8).
  #updateJitter(leg: StreamLeg, packet: Buffer, now: number): void {
    const arrival = (now * leg.stream.clockRate) / 1000;
    const transit = arrival - packet.readUInt32BE(4);
    if (leg.lastTransit !== undefined) {
      const difference = Math.abs(transit - leg.lastTransit);
      // A jump of more than a second is a new timeline (a resumed stream), not jitter.
      if (difference < leg.stream.clockRate) leg.jitter += (difference - leg.jitter) / 16;
    }
    leg.lastTransit = transit;
  }

  #sendRtcp(leg: StreamLeg, packet: Buffer): void {
    const protectedPacket = leg.srtp ? leg.srtp.protectRtcp(packet) : packet;
    this.#send(leg.rtcp, protectedPacket, leg.stream.rtcpPort, this.#sourceAddress);
  }

  #send(socket: dgram.Socket, packet: Buffer, port: number, address: string): void {
    if (this.#closed) return;
    socket.send(packet, port, address, (error) => {
      if (error && !this.#closed)
        this.#logger.debug({ err: error }, 'a bridge packet was not sent');
    });
  }
}

// The extended sequence number of `sequence` closest to the highest one so far.
function extend(highest: number, sequence: number): number {
  const delta = (sequence - (highest & 0xffff) + SEQUENCE_SPACE) % SEQUENCE_SPACE;
  return delta < HALF_SEQUENCE_SPACE ? highest + delta : highest + delta - SEQUENCE_SPACE;
}

function samplesPerFrame(leg: StreamLeg): number {
  return (leg.stream.clockRate * OPUS_FRAME_MS) / 1000;
}

/**
 * Whether an RTP packet of VP8 starts a key frame: the start of partition 0 (S set, PID 0) whose
 * payload header has the P bit clear (RFC 7741 4.2 and 4.3).
 */
export function isVp8KeyFrameStart(packet: Buffer): boolean {
  const header = rtpHeaderBytes(packet);
  if (header === undefined) return false;
  let offset = header;
  const first = packet[offset];
  if (first === undefined || (first & 0x10) === 0 || (first & 0x07) !== 0) return false;
  offset += 1;
  if (first & 0x80) {
    const extensions = packet[offset];
    if (extensions === undefined) return false;
    offset += 1;
    if (extensions & 0x80) offset += (packet[offset] ?? 0) & 0x80 ? 2 : 1;
    if (extensions & 0x40) offset += 1;
    if (extensions & 0x30) offset += 1;
  }
  const payloadHeader = packet[offset];
  return payloadHeader !== undefined && (payloadHeader & 0x01) === 0;
}

// Binds an even RTP port and the RTCP port above it on `host`, in `range`, and keeps them.
async function bindPair(
  host: string,
  range: BridgePortRange,
): Promise<[dgram.Socket, dgram.Socket]> {
  const pairs = Math.floor((range.max - range.min + 1) / 2);
  for (let attempt = 0; attempt < 32; attempt++) {
    const port = range.min + 2 * randomInt(pairs);
    const rtp = dgram.createSocket('udp4');
    const rtcp = dgram.createSocket('udp4');
    if ((await bind(rtp, port, host)) && (await bind(rtcp, port + 1, host))) return [rtp, rtcp];
    closeQuietly(rtp);
    closeQuietly(rtcp);
  }
  throw new Error(`no free bridge ports in ${range.min}-${range.max} on ${host}`);
}

function bind(socket: dgram.Socket, port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    socket.once('error', () => resolve(false));
    socket.bind(port, host, () => resolve(true));
  });
}

function closeQuietly(socket: dgram.Socket): void {
  try {
    socket.close();
  } catch {
    // Never bound, or closed already.
  }
}
