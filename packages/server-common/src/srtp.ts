import { createCipheriv, createHmac, timingSafeEqual } from 'node:crypto';

// AES_CM_128_HMAC_SHA1_80 (RFC 3711, keyed through SDES as RFC 4568 says): a 16-byte master key
// then a 14-byte master salt, and a 10-byte authentication tag at the end of each packet.
const MASTER_KEY_BYTES = 16;
const SALT_BYTES = 14;
const AUTH_KEY_BYTES = 20;
const AUTH_TAG_BYTES = 10;
// Key derivation labels (RFC 3711 4.3.2).
const LABEL_RTP_ENCRYPTION = 0;
const LABEL_RTP_AUTHENTICATION = 1;
const LABEL_RTP_SALT = 2;
const LABEL_RTCP_ENCRYPTION = 3;
const LABEL_RTCP_AUTHENTICATION = 4;
const LABEL_RTCP_SALT = 5;
const RTP_FIXED_HEADER_BYTES = 12;
// The first 8 bytes of an SRTCP packet (header and sender SSRC) stay clear; the E flag and the
// 31-bit SRTCP index follow the encrypted part (RFC 3711 3.4).
const RTCP_CLEAR_BYTES = 8;
const SRTCP_INDEX_BYTES = 4;
const SRTCP_ENCRYPTED_FLAG = 0x8000_0000;
const MAX_SRTCP_INDEX = 0x7fff_ffff;
// SSRCs whose rollover counters one context keeps: a bridge stream has one sender.
const MAX_TRACKED_SSRCS = 8;
const HALF_SEQUENCE_SPACE = 0x8000;

/** Session keys of one direction of SRTP or SRTCP, derived from a master key. */
interface SessionKeys {
  readonly encryption: Buffer;
  readonly authentication: Buffer;
  readonly salt: Buffer;
}

/** Where a sender's sequence numbers are: the highest seen and how often they wrapped. */
interface RolloverState {
  highest: number;
  rollovers: number;
}

/**
 * One SRTP crypto context of the AES_CM_128_HMAC_SHA1_80 suite, with a key derivation rate of 0:
 * it unprotects the RTP a sender protected with the same inline key, tracking each SSRC's
 * rollover counter, and protects the RTCP sent back to it, numbering the SRTCP packets.
 */
export class SrtpContext {
  readonly #rtp: SessionKeys;
  readonly #rtcp: SessionKeys;
  readonly #rollovers = new Map<number, RolloverState>();
  #srtcpIndex = 0;

  /** A context keyed by an SDES inline key: the base64 of the 30-byte master key and salt. */
  constructor(keyBase64: string) {
    const material = Buffer.from(keyBase64, 'base64');
    if (material.length !== MASTER_KEY_BYTES + SALT_BYTES) {
      throw new RangeError(`an inline key has 30 bytes, this one ${material.length}`);
    }
    const masterKey = material.subarray(0, MASTER_KEY_BYTES);
    const masterSalt = material.subarray(MASTER_KEY_BYTES);
    // With a key derivation rate of 0, the IV is the master salt with the label XORed into its
    // eighth byte, shifted left 16 bits (RFC 3711 4.3.1).
    const derive = (label: number, length: number) => {
      const iv = Buffer.alloc(16);
      masterSalt.copy(iv);
      iv[7]! ^= label;
      return keystream(masterKey, iv, length);
    };
    this.#rtp = {
      encryption: derive(LABEL_RTP_ENCRYPTION, MASTER_KEY_BYTES),
      authentication: derive(LABEL_RTP_AUTHENTICATION, AUTH_KEY_BYTES),
      salt: derive(LABEL_RTP_SALT, SALT_BYTES),
    };
    this.#rtcp = {
      encryption: derive(LABEL_RTCP_ENCRYPTION, MASTER_KEY_BYTES),
      authentication: derive(LABEL_RTCP_AUTHENTICATION, AUTH_KEY_BYTES),
      salt: derive(LABEL_RTCP_SALT, SALT_BYTES),
    };
  }

  /**
   * Checks an SRTP packet's tag and decrypts it. Returns the clear RTP packet, or undefined when
   * the packet is malformed or its tag does not match: nothing else is learnt from such a packet.
   */
  unprotectRtp(packet: Buffer): Buffer | undefined {
    const headerBytes = rtpHeaderBytes(packet);
    if (headerBytes === undefined || packet.length < headerBytes + AUTH_TAG_BYTES) return undefined;
    const authenticated = packet.subarray(0, packet.length - AUTH_TAG_BYTES);
    const ssrc = packet.readUInt32BE(8);
    const sequence = packet.readUInt16BE(2);
    const state = this.#rollovers.get(ssrc);
    const rollovers = state ? estimateRollovers(state, sequence) : 0;
    if (rollovers < 0) return undefined;
    const roc = Buffer.alloc(4);
    roc.writeUInt32BE(rollovers >>> 0);
    const expected = createHmac('sha1', this.#rtp.authentication)
      .update(authenticated)
      .update(roc)
      .digest()
      .subarray(0, AUTH_TAG_BYTES);
    if (!timingSafeEqual(packet.subarray(packet.length - AUTH_TAG_BYTES), expected)) {
      return undefined;
    }
    this.#remember(ssrc, sequence, rollovers);
    // IV = salt * 2^16 XOR SSRC * 2^64 XOR packet index * 2^16 (RFC 3711 4.1.1), where the
    // 48-bit index is the rollover counter and the sequence number.
    const iv = Buffer.alloc(16);
    this.#rtp.salt.copy(iv);
    for (let i = 0; i < 4; i++) iv[4 + i]! ^= packet[8 + i]!;
    for (let i = 0; i < 4; i++) iv[8 + i]! ^= roc[i]!;
    iv[12]! ^= packet[2]!;
    iv[13]! ^= packet[3]!;
    const clear = Buffer.from(authenticated);
    xorInPlace(clear, headerBytes, keystream(this.#rtp.encryption, iv, clear.length - headerBytes));
    return clear;
  }

  /** Encrypts and authenticates one compound RTCP packet as SRTCP. */
  protectRtcp(packet: Buffer): Buffer {
    if (packet.length < RTCP_CLEAR_BYTES)
      throw new RangeError('an RTCP packet has 8 bytes at least');
    // Wrapping the 31-bit index would need a new master key; a bridge never sends that many.
    this.#srtcpIndex = this.#srtcpIndex >= MAX_SRTCP_INDEX ? 1 : this.#srtcpIndex + 1;
    const index = this.#srtcpIndex;
    const iv = Buffer.alloc(16);
    this.#rtcp.salt.copy(iv);
    for (let i = 0; i < 4; i++) iv[4 + i]! ^= packet[4 + i]!;
    const indexBytes = Buffer.alloc(4);
    indexBytes.writeUInt32BE(index);
    for (let i = 0; i < 4; i++) iv[10 + i]! ^= indexBytes[i]!;
    const protectedPacket = Buffer.alloc(packet.length + SRTCP_INDEX_BYTES + AUTH_TAG_BYTES);
    packet.copy(protectedPacket);
    const encryptedBytes = packet.length - RTCP_CLEAR_BYTES;
    xorInPlace(
      protectedPacket.subarray(0, packet.length),
      RTCP_CLEAR_BYTES,
      keystream(this.#rtcp.encryption, iv, encryptedBytes),
    );
    protectedPacket.writeUInt32BE((SRTCP_ENCRYPTED_FLAG | index) >>> 0, packet.length);
    const authenticatedEnd = packet.length + SRTCP_INDEX_BYTES;
    createHmac('sha1', this.#rtcp.authentication)
      .update(protectedPacket.subarray(0, authenticatedEnd))
      .digest()
      .copy(protectedPacket, authenticatedEnd, 0, AUTH_TAG_BYTES);
    return protectedPacket;
  }

  #remember(ssrc: number, sequence: number, rollovers: number): void {
    const state = this.#rollovers.get(ssrc);
    if (!state) {
      if (this.#rollovers.size >= MAX_TRACKED_SSRCS) {
        this.#rollovers.delete(this.#rollovers.keys().next().value!);
      }
      this.#rollovers.set(ssrc, { highest: sequence, rollovers });
      return;
    }
    if (
      rollovers > state.rollovers ||
      (rollovers === state.rollovers && sequence > state.highest)
    ) {
      state.highest = sequence;
      state.rollovers = rollovers;
    }
  }
}

/** Bytes of an RTP packet's header (fixed part, CSRCs, extension), or undefined if it is not RTP. */
export function rtpHeaderBytes(packet: Buffer): number | undefined {
  if (packet.length < RTP_FIXED_HEADER_BYTES || packet[0]! >> 6 !== 2) return undefined;
  let bytes = RTP_FIXED_HEADER_BYTES + (packet[0]! & 0x0f) * 4;
  if (packet[0]! & 0x10) {
    if (packet.length < bytes + 4) return undefined;
    bytes += 4 + packet.readUInt16BE(bytes + 2) * 4;
  }
  return bytes <= packet.length ? bytes : undefined;
}

// The rollover counter a packet was most likely sent with, from the highest sequence number
// seen so far (RFC 3711 3.3.1); -1 before the first wrap means a packet from before the start.
function estimateRollovers(state: RolloverState, sequence: number): number {
  if (state.highest < HALF_SEQUENCE_SPACE) {
    return sequence - state.highest > HALF_SEQUENCE_SPACE ? state.rollovers - 1 : state.rollovers;
  }
  return state.highest - HALF_SEQUENCE_SPACE > sequence ? state.rollovers + 1 : state.rollovers;
}

function xorInPlace(target: Buffer, offset: number, stream: Buffer): void {
  for (let i = 0; i < stream.length; i++) target[offset + i]! ^= stream[i]!;
}

// AES-128 in counter mode from `iv`: the keystream of SRTP's AES-CM.
function keystream(key: Buffer, iv: Buffer, length: number): Buffer {
  const cipher = createCipheriv('aes-128-ctr', key, iv);
  return Buffer.concat([cipher.update(Buffer.alloc(length)), cipher.final()]);
}
