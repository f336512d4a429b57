import type dgram from 'node:dgram';
import type { types } from 'mediasoup';
import { VP8_PAYLOAD_TYPE, nowMicros } from './rtp';

const RTP_HEADER_BYTES = 12;
// Chromium packetizes video into RTP packets of at most 1200 bytes; this much of that goes to
// the header extensions it adds (transport-cc, abs-send-time, mid, rid), which mediasoup
// rewrites on the way out in any case, so the payloads here are what a browser's payloads are.
const MAX_PACKET_BYTES = 1200;
const EXTENSION_RESERVE_BYTES = 24;
// X|S|PID, I|L|T|K, the two-byte picture id, TL0PICIDX, TID|Y|KEYIDX (RFC 7741).
const DESCRIPTOR_BYTES = 6;
const MAX_PAYLOAD_BYTES = MAX_PACKET_BYTES - RTP_HEADER_BYTES - EXTENSION_RESERVE_BYTES;
// Each packet ends with its send time in microseconds, so a clear receiver can measure delay.
const SENT_AT_BYTES = 8;
// The smallest VP8 payload a packet carries besides the descriptor and the send time.
const MIN_FRAME_BYTES = 16;
// Seconds between the NTP epoch (1900) and the Unix epoch (1970).
const NTP_UNIX_OFFSET_SECONDS = 2_208_988_800;
// Chromium's pacer sends a frame's packets in short bursts rather than all at once.
const PACKETS_PER_BURST = 4;
const BURST_INTERVAL_MS = 2;
// A key frame is several times the size of a delta frame of the same stream.
const KEY_FRAME_SCALE = 4;

/** One simulcast layer a `Vp8ShareSender` sends. */
export interface Vp8Layer {
  /** Its SSRC. */
  readonly ssrc: number;
  /** Its average bitrate in bit/s, RTP payloads counted. */
  readonly bitrate: number;
}

/** What a `Vp8ShareSender` sent on one layer. */
export interface Vp8LayerCounters {
  /** RTP packets. */
  packets: number;
  /** RTP payload bytes. */
  payloadBytes: number;
  /** Frames, key frames included. */
  frames: number;
  /** Key frames: the first one and one per key frame request. */
  keyFrames: number;
}

interface LayerState {
  readonly layer: Vp8Layer;
  // Browsers start each stream at a random sequence number and RTP timestamp. The sequence
  // number is never 0 at first: mediasoup 3.12 takes a first packet numbered 0 for a wrap of
  // the 16-bit counter (RtpStream::ReceiveStreamPacket sets the highest number seen to seq - 1,
  // which is 65535), so it expects 65536 packets more than arrive, and the first score, computed
  // at the first sender report, is 0: consumers drop the stream.
  sequence: number;
  readonly timestampBase: number;
  // A key frame request came: the next frame is one (requests before it make one key frame).
  keyFrameWanted: boolean;
  readonly counters: Vp8LayerCounters;
}

/**
 * A synthetic VP8 simulcast screen share sent to a PlainTransport (comedia), as a browser sends
 * one: per layer, frames at the frame rate whose sizes vary around the layer's bitrate (a key
 * frame first and whenever the SFU asks with a PLI or FIR), cut into packets of equal size up to
 * a browser's 1200-byte budget with RFC 7741 payload descriptors, paced in short bursts, each
 * stream from a random sequence number and RTP timestamp, and an RTCP sender report per layer
 * every second, which the SFU needs before it switches a viewer between layers. Each packet
 * carries its send time in its last 8 bytes. It is not decodable video: it is what an SFU sees
 * of one.
 */
export class Vp8ShareSender {
  readonly #socket: dgram.Socket;
  readonly #port: number;
  readonly #fps: number;
  readonly #layers: LayerState[];
  readonly #random: () => number;
  // Packets waiting for the pacer, in sending order.
  readonly #queue: Buffer[] = [];
  #pacer: NodeJS.Timeout | undefined;
  #frame = 0;
  #running = false;
  #timer: NodeJS.Timeout | undefined;
  // Ends the running send loop: its next tick, called early.
  #finish: (() => void) | undefined;
  #stopped: Promise<void> = Promise.resolve();
  // RTP timestamps follow this clock (performance.now() at the first frame), in 90 kHz units.
  #clockOrigin: number | undefined;
  #lastReportAt = Number.NEGATIVE_INFINITY;

  constructor(
    socket: dgram.Socket,
    transport: types.PlainTransport,
    layers: readonly Vp8Layer[],
    options: { fps?: number; seed?: number } = {},
  ) {
    this.#socket = socket;
    this.#port = transport.tuple.localPort;
    this.#fps = options.fps ?? 30;
    this.#random = seededRandom(options.seed ?? 1);
    this.#layers = layers.map((layer) => ({
      layer,
      sequence: 1 + Math.floor(this.#random() * 0x7ffe),
      timestampBase: Math.floor(this.#random() * 0xffffffff),
      keyFrameWanted: true,
      counters: { packets: 0, payloadBytes: 0, frames: 0, keyFrames: 0 },
    }));
    socket.on('message', (packet) => this.#onRtcp(packet));
  }

  /** What was sent so far on each layer, lowest first. */
  get sent(): Vp8LayerCounters[] {
    return this.#layers.map((state) => ({ ...state.counters }));
  }

  /**
   * Sends frames at the frame rate until `stop()`, or `frames` frames when given; resolves once
   * the last one is out.
   */
  start(frames = Number.POSITIVE_INFINITY): Promise<void> {
    if (this.#running) throw new Error('the sender is already running');
    this.#running = true;
    const startedAt = performance.now();
    this.#clockOrigin ??= startedAt;
    let sent = 0;
    this.#stopped = new Promise((resolve) => {
      const tick = () => {
        this.#timer = undefined;
        if (!this.#running || sent >= frames) {
          this.#running = false;
          this.#finish = undefined;
          void this.#drained().then(resolve);
          return;
        }
        this.#sendFrame();
        sent++;
        const due = startedAt + (sent * 1000) / this.#fps;
        this.#timer = setTimeout(tick, Math.max(0, due - performance.now()));
      };
      this.#finish = tick;
      tick();
    });
    return this.#stopped;
  }

  /** Stops after the frame being sent, and resolves once its last packet is out. */
  async stop(): Promise<void> {
    this.#running = false;
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#finish?.();
    }
    await this.#stopped;
  }

  /** Stops sending and closes the socket. */
  close(): void {
    this.#running = false;
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#pacer) clearTimeout(this.#pacer);
    this.#queue.length = 0;
    this.#socket.close();
  }

  async #drained(): Promise<void> {
    while (this.#queue.length > 0) await new Promise((resolve) => setTimeout(resolve, 2));
  }

  #rtpTimestamp(state: LayerState, atMs: number): number {
    return (state.timestampBase + Math.round((atMs - (this.#clockOrigin ?? atMs)) * 90)) >>> 0;
  }

  #sendFrame(): void {
    const now = performance.now();
    for (const state of this.#layers) {
      const keyFrame = state.keyFrameWanted;
      if (keyFrame) {
        state.keyFrameWanted = false;
        state.counters.keyFrames++;
      }
      // Delta frames vary by half their average size either way, as moving content does.
      const average = state.layer.bitrate / 8 / this.#fps;
      const frameBytes = Math.max(
        MIN_FRAME_BYTES,
        Math.round(average * (keyFrame ? KEY_FRAME_SCALE : 0.5 + this.#random())),
      );
      this.#queue.push(
        ...this.#packetize(state, frameBytes, keyFrame, this.#rtpTimestamp(state, now)),
      );
      state.counters.frames++;
    }
    // Sender reports right after the first frame, then about once a second, as browsers send.
    if (now - this.#lastReportAt >= 1000) {
      this.#lastReportAt = now;
      for (const state of this.#layers) this.#queue.push(this.#senderReport(state, now));
    }
    this.#frame++;
    if (!this.#pacer) this.#pace();
  }

  // Sends the queue in bursts a couple of milliseconds apart, large enough that any frame is
  // out within about 16 ms, as libwebrtc's pacer spreads a frame at a multiple of its bitrate.
  #pace(): void {
    this.#pacer = undefined;
    const burst = Math.max(PACKETS_PER_BURST, Math.ceil(this.#queue.length / 8));
    for (const packet of this.#queue.splice(0, burst)) {
      // The send time goes in at the moment of sending (sender reports carry none).
      if (packet[1] !== 200) packet.writeBigUInt64BE(nowMicros(), packet.length - SENT_AT_BYTES);
      this.#socket.send(packet, this.#port, '127.0.0.1');
    }
    if (this.#queue.length > 0) this.#pacer = setTimeout(() => this.#pace(), BURST_INTERVAL_MS);
  }

  // Cuts one frame into packets of equal size, as libwebrtc's VP8 packetizer does.
  #packetize(
    state: LayerState,
    frameBytes: number,
    keyFrame: boolean,
    timestamp: number,
  ): Buffer[] {
    const perPacket = MAX_PAYLOAD_BYTES - DESCRIPTOR_BYTES - SENT_AT_BYTES;
    const count = Math.ceil(frameBytes / perPacket);
    const pictureId = this.#frame & 0x7fff;
    const packets: Buffer[] = [];
    let remaining = frameBytes;
    for (let index = 0; index < count; index++) {
      const bytes = Math.ceil(remaining / (count - index));
      remaining -= bytes;
      const packet = Buffer.alloc(RTP_HEADER_BYTES + DESCRIPTOR_BYTES + bytes + SENT_AT_BYTES);
      const last = index === count - 1;
      packet[0] = 0x80;
      packet[1] = (last ? 0x80 : 0) | VP8_PAYLOAD_TYPE;
      packet.writeUInt16BE(state.sequence, 2);
      state.sequence = (state.sequence + 1) & 0xffff;
      packet.writeUInt32BE(timestamp, 4);
      packet.writeUInt32BE(state.layer.ssrc >>> 0, 8);
      const at = RTP_HEADER_BYTES;
      packet[at] = index === 0 ? 0x90 : 0x80; // X, and S on the frame's first packet.
      packet[at + 1] = 0xe0; // I, L and T present.
      packet[at + 2] = 0x80 | (pictureId >> 8); // Two-byte picture id.
      packet[at + 3] = pictureId & 0xff;
      packet[at + 4] = this.#frame & 0xff; // TL0PICIDX: every frame is in temporal layer 0.
      packet[at + 5] = 0x20; // TID 0, Y set.
      // The VP8 payload header starts the first packet: its lowest bit is 0 on key frames
      // (RFC 6386 9.1), which is what mediasoup's key frame detection reads.
      packet[at + DESCRIPTOR_BYTES] = index === 0 && keyFrame ? 0x10 : 0x11;
      state.counters.packets++;
      state.counters.payloadBytes += packet.length - RTP_HEADER_BYTES;
      packets.push(packet);
    }
    return packets;
  }

  // An RTCP sender report without report blocks (RFC 3550 6.4.1) tying the layer's RTP clock
  // to wall-clock time.
  #senderReport(state: LayerState, atMs: number): Buffer {
    const report = Buffer.alloc(28);
    report[0] = 0x80;
    report[1] = 200;
    report.writeUInt16BE(6, 2);
    report.writeUInt32BE(state.layer.ssrc >>> 0, 4);
    const wallMs = performance.timeOrigin + atMs;
    report.writeUInt32BE((Math.floor(wallMs / 1000) + NTP_UNIX_OFFSET_SECONDS) >>> 0, 8);
    report.writeUInt32BE(Math.floor(((wallMs % 1000) / 1000) * 2 ** 32) >>> 0, 12);
    report.writeUInt32BE(this.#rtpTimestamp(state, atMs), 16);
    report.writeUInt32BE(state.counters.packets >>> 0, 20);
    report.writeUInt32BE(state.counters.payloadBytes >>> 0, 24);
    return report;
  }

  // The SFU asks for a key frame with a PLI (RFC 4585) or a FIR (RFC 5104), in compound RTCP.
  #onRtcp(compound: Buffer): void {
    let offset = 0;
    while (offset + 12 <= compound.length) {
      const type = compound[offset + 1]!;
      const format = compound[offset]! & 0x1f;
      const length = (compound.readUInt16BE(offset + 2) + 1) * 4;
      if (type === 206 && (format === 1 || format === 4)) {
        // A PLI names the media source; a FIR names it in its first FCI entry.
        const ssrc = compound.readUInt32BE(offset + (format === 1 ? 8 : 12));
        const state = this.#layers.find((candidate) => candidate.layer.ssrc === ssrc);
        if (state) state.keyFrameWanted = true;
      }
      offset += length;
    }
  }
}

/** The send time a `Vp8ShareSender` wrote in an RTP packet's last 8 bytes (clear RTP only). */
export function readVp8SentAtMicros(packet: Buffer): bigint | undefined {
  if (packet.length < RTP_HEADER_BYTES + DESCRIPTOR_BYTES + SENT_AT_BYTES) return undefined;
  return packet.readBigUInt64BE(packet.length - SENT_AT_BYTES);
}

// A small deterministic generator (mulberry32), so runs send the same frame sizes.
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
