import { createCipheriv, createHmac, timingSafeEqual } from 'node:crypto';

// AES_CM_128_HMAC_SHA1_80 (RFC 3711 and RFC 4568): a 16-byte master key then a 14-byte salt,
// and a 10-byte authentication tag at the end of each packet.
const MASTER_KEY_BYTES = 16;
const SALT_BYTES = 14;
const AUTH_KEY_BYTES = 20;
const AUTH_TAG_BYTES = 10;
// Key derivation labels for SRTP (RFC 3711 4.3.2).
const LABEL_ENCRYPTION = 0;
const LABEL_AUTHENTICATION = 1;
const LABEL_SALT = 2;

/** Session keys of one SRTP stream direction, derived from an SDES inline key. */
export interface SrtpSessionKeys {
  /** AES-128 key that encrypts payloads. */
  readonly encryption: Buffer;
  /** HMAC-SHA1 key of the authentication tag. */
  readonly authentication: Buffer;
  /** Salt that goes into each packet's IV. */
  readonly salt: Buffer;
}

/** Derives the SRTP session keys of an AES_CM_128_HMAC_SHA1_80 inline key, with no rekeying. */
export function srtpSessionKeys(keyBase64: string): SrtpSessionKeys {
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
  return {
    encryption: derive(LABEL_ENCRYPTION, MASTER_KEY_BYTES),
    authentication: derive(LABEL_AUTHENTICATION, AUTH_KEY_BYTES),
    salt: derive(LABEL_SALT, SALT_BYTES),
  };
}

/**
 * Checks an SRTP packet's tag and decrypts it; `rolloverCount` counts the wraps of its sequence
 * number. Returns the clear RTP packet, or undefined when the tag does not match these keys.
 */
export function srtpUnprotect(
  packet: Buffer,
  keys: SrtpSessionKeys,
  rolloverCount = 0,
): Buffer | undefined {
  const authenticated = packet.subarray(0, packet.length - AUTH_TAG_BYTES);
  const tag = packet.subarray(packet.length - AUTH_TAG_BYTES);
  const roc = Buffer.alloc(4);
  roc.writeUInt32BE(rolloverCount >>> 0);
  const expected = createHmac('sha1', keys.authentication)
    .update(authenticated)
    .update(roc)
    .digest()
    .subarray(0, AUTH_TAG_BYTES);
  if (!timingSafeEqual(tag, expected)) return undefined;
  const headerBytes = rtpHeaderBytes(authenticated);
  // IV = salt * 2^16 XOR SSRC * 2^64 XOR packet index * 2^16 (RFC 3711 4.1.1).
  const iv = Buffer.alloc(16);
  keys.salt.copy(iv);
  for (let i = 0; i < 4; i++) iv[4 + i]! ^= authenticated[8 + i]!;
  roc.forEach((byte, i) => (iv[8 + i]! ^= byte));
  iv[12]! ^= authenticated[2]!;
  iv[13]! ^= authenticated[3]!;
  const payload = authenticated.subarray(headerBytes);
  const clear = Buffer.from(authenticated);
  const stream = keystream(keys.encryption, iv, payload.length);
  for (let i = 0; i < payload.length; i++) clear[headerBytes + i] = payload[i]! ^ stream[i]!;
  return clear;
}

/** Bytes of an RTP packet's header: fixed part, CSRCs and header extension. */
export function rtpHeaderBytes(packet: Buffer): number {
  let bytes = 12 + (packet[0]! & 0x0f) * 4;
  if (packet[0]! & 0x10) bytes += 4 + packet.readUInt16BE(bytes + 2) * 4;
  return bytes;
}

// AES-128 in counter mode from `iv`: the keystream of SRTP's AES-CM.
function keystream(key: Buffer, iv: Buffer, length: number): Buffer {
  const cipher = createCipheriv('aes-128-ctr', key, iv);
  return Buffer.concat([cipher.update(Buffer.alloc(length)), cipher.final()]);
}
