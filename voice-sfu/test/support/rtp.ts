import dgram from 'node:dgram';
import type { types } from 'mediasoup';

/** Payload type the plain RTP senders use for Opus. */
export const OPUS_PAYLOAD_TYPE = 100;
/** Header extension id of RFC 6464 client-to-mixer audio levels in the plain senders. */
export const AUDIO_LEVEL_EXTENSION_ID = 1;
/** Opus packets per second at 20 ms frames. */
export const PACKETS_PER_SECOND = 50;
// A typical Opus voice frame at about 32 kbit/s.
const OPUS_PAYLOAD_BYTES = 80;

/** RTP parameters of a plain Opus producer with the audio level extension. */
export function opusProducerRtpParameters(ssrc: number): types.RtpParameters {
  return {
    codecs: [
      {
        mimeType: 'audio/opus',
        payloadType: OPUS_PAYLOAD_TYPE,
        clockRate: 48000,
        channels: 2,
        parameters: { useinbandfec: 1, usedtx: 1 },
      },
    ],
    headerExtensions: [
      { uri: 'urn:ietf:params:rtp-hdrext:ssrc-audio-level', id: AUDIO_LEVEL_EXTENSION_ID },
    ],
    encodings: [{ ssrc }],
  };
}

/**
 * Builds one Opus-like RTP packet carrying an RFC 6464 audio level (`levelDbov`, 0 loudest to
 * 127 silent) and, in its first 8 payload bytes, the send time in microseconds.
 */
export function buildOpusPacket(options: {
  ssrc: number;
  sequence: number;
  levelDbov: number;
  sentAtMicros: bigint;
}): Buffer {
  const packet = Buffer.alloc(12 + 8 + OPUS_PAYLOAD_BYTES);
  packet[0] = 0x90; // Version 2 with the extension bit set.
  packet[1] = OPUS_PAYLOAD_TYPE;
  packet.writeUInt16BE(options.sequence & 0xffff, 2);
  packet.writeUInt32BE((options.sequence * 960) >>> 0, 4);
  packet.writeUInt32BE(options.ssrc >>> 0, 8);
  // One-byte header extension block (RFC 8285): profile 0xBEDE, one 32-bit word of elements.
  packet.writeUInt16BE(0xbede, 12);
  packet.writeUInt16BE(1, 14);
  packet[16] = (AUDIO_LEVEL_EXTENSION_ID << 4) | 0; // Element length 1 byte (encoded as 0).
  packet[17] = 0x80 | (options.levelDbov & 0x7f); // Voice activity flag plus level.
  packet.writeBigUInt64BE(options.sentAtMicros, 20);
  return packet;
}

/** Microseconds on a monotonic clock, shared by senders and receivers of one process. */
export function nowMicros(): bigint {
  return process.hrtime.bigint() / 1000n;
}

/** Reads the send time that `buildOpusPacket` stored, from a clear (not SRTP) RTP packet. */
export function readSentAtMicros(packet: Buffer): bigint | undefined {
  if (packet.length < 12) return undefined;
  const csrcCount = packet[0]! & 0x0f;
  let offset = 12 + csrcCount * 4;
  if (packet[0]! & 0x10) {
    if (packet.length < offset + 4) return undefined;
    offset += 4 + packet.readUInt16BE(offset + 2) * 4;
  }
  if (packet.length < offset + 8) return undefined;
  return packet.readBigUInt64BE(offset);
}

/** A UDP socket bound on loopback. */
export async function bindUdp(): Promise<dgram.Socket> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => {
      socket.off('error', reject);
      resolve();
    });
  });
  return socket;
}

/** Two UDP sockets on loopback, on a free even port and the port above it: RTP and RTCP. */
export async function bindUdpPair(): Promise<[dgram.Socket, dgram.Socket]> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const rtp = await bindUdp();
    const port = rtp.address().port;
    if (port % 2 === 0 && port < 65535) {
      const rtcp = dgram.createSocket('udp4');
      const bound = await new Promise<boolean>((resolve) => {
        rtcp.once('error', () => resolve(false));
        rtcp.bind(port + 1, '127.0.0.1', () => resolve(true));
      });
      if (bound) return [rtp, rtcp];
      rtcp.close();
    }
    rtp.close();
  }
  throw new Error('found no free pair of UDP ports');
}

/** Sends Opus-like RTP from one socket to a PlainTransport that learns the address (comedia). */
export class RtpSender {
  readonly #socket: dgram.Socket;
  readonly #ssrc: number;
  readonly #port: number;
  #sequence = 0;

  constructor(socket: dgram.Socket, ssrc: number, transport: types.PlainTransport) {
    this.#socket = socket;
    this.#ssrc = ssrc;
    this.#port = transport.tuple.localPort;
  }

  /** Packets sent so far. */
  get sent(): number {
    return this.#sequence;
  }

  /** Sends one packet now. */
  sendOne(levelDbov = 20): void {
    const packet = buildOpusPacket({
      ssrc: this.#ssrc,
      sequence: this.#sequence++,
      levelDbov,
      sentAtMicros: nowMicros(),
    });
    this.#socket.send(packet, this.#port, '127.0.0.1');
  }

  /** Sends one packet now carrying `payload`, a real 20 ms Opus frame, without extensions. */
  sendPayload(payload: Buffer): void {
    const sequence = this.#sequence++;
    const packet = Buffer.alloc(12 + payload.length);
    packet[0] = 0x80;
    packet[1] = OPUS_PAYLOAD_TYPE;
    packet.writeUInt16BE(sequence & 0xffff, 2);
    packet.writeUInt32BE((sequence * 960) >>> 0, 4);
    packet.writeUInt32BE(this.#ssrc >>> 0, 8);
    payload.copy(packet, 12);
    this.#socket.send(packet, this.#port, '127.0.0.1');
  }

  /** Sends `count` packets at 20 ms intervals. */
  async sendFor(count: number, levelDbov = 20): Promise<void> {
    for (let i = 0; i < count; i++) {
      this.sendOne(levelDbov);
      await new Promise((resolve) => setTimeout(resolve, 1000 / PACKETS_PER_SECOND));
    }
  }

  /** Closes the socket. */
  close(): void {
    this.#socket.close();
  }
}

/** Counts the RTP packets arriving on one socket, per SSRC. */
export class RtpReceiver {
  /** The receiving socket. */
  readonly socket: dgram.Socket;
  /** Packets received per SSRC. */
  readonly packetsBySsrc = new Map<number, number>();
  /** One-way delays measured from clear RTP payloads, in microseconds. */
  readonly delaysMicros: number[] = [];
  readonly #measureDelay: boolean;

  constructor(socket: dgram.Socket, options: { measureDelay?: boolean } = {}) {
    this.socket = socket;
    this.#measureDelay = options.measureDelay ?? false;
    socket.on('message', (packet) => this.#onPacket(packet));
  }

  /** Total packets received. */
  get total(): number {
    let total = 0;
    for (const count of this.packetsBySsrc.values()) total += count;
    return total;
  }

  /** The local UDP port, for PlainTransport.connect(). */
  get port(): number {
    return this.socket.address().port;
  }

  /** Closes the socket. */
  close(): void {
    this.socket.close();
  }

  #onPacket(packet: Buffer): void {
    // RTCP shares the port (rtcp-mux); its packet types 200-207 sit where RTP has the payload type.
    if (packet.length < 12 || (packet[1]! >= 200 && packet[1]! <= 207)) return;
    const ssrc = packet.readUInt32BE(8);
    this.packetsBySsrc.set(ssrc, (this.packetsBySsrc.get(ssrc) ?? 0) + 1);
    if (this.#measureDelay) {
      const sentAt = readSentAtMicros(packet);
      if (sentAt !== undefined) this.delaysMicros.push(Number(nowMicros() - sentAt));
    }
  }
}

/** Payload type the plain senders use for VP8. */
export const VP8_PAYLOAD_TYPE = 101;

/**
 * RTP parameters of a VP8 simulcast screen share from a plain sender: one encoding per SSRC,
 * lowest first, each with its top bitrate.
 */
export function vp8SimulcastRtpParameters(
  layers: readonly { ssrc: number; maxBitrate: number }[],
): types.RtpParameters {
  return {
    codecs: [
      {
        mimeType: 'video/VP8',
        payloadType: VP8_PAYLOAD_TYPE,
        clockRate: 90000,
        rtcpFeedback: [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }],
      },
    ],
    encodings: layers.map(({ ssrc, maxBitrate }) => ({ ssrc, maxBitrate })),
  };
}
