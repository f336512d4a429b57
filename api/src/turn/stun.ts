// The small part of STUN (RFC 8489) and TURN (RFC 8656) that a TURN Allocate needs: requests
// with the long-term credential mechanism, and answers read without trusting a byte of them.
import { createHash, createHmac, randomBytes } from 'node:crypto';

/** The fixed value in every STUN header (RFC 8489 §5). */
export const STUN_MAGIC_COOKIE = 0x2112a442;

/** Bytes of a STUN header. */
export const STUN_HEADER_BYTES = 20;

// A STUN message is at most what one UDP datagram carries; coturn's answers are a few hundred
// bytes. Anything claiming more is not read.
const MAX_MESSAGE_BYTES = 4096;
const MESSAGE_INTEGRITY_BYTES = 20;

/** STUN and TURN methods this client speaks. */
export const StunMethod = {
  /** RFC 8489 Binding. */
  binding: 0x001,
  /** RFC 8656 Allocate. */
  allocate: 0x003,
  /** RFC 8656 Refresh. */
  refresh: 0x004,
} as const;

/** Attribute types this client writes or reads. */
export const StunAttribute = {
  username: 0x0006,
  messageIntegrity: 0x0008,
  errorCode: 0x0009,
  lifetime: 0x000d,
  realm: 0x0014,
  nonce: 0x0015,
  xorRelayedAddress: 0x0016,
  requestedTransport: 0x0019,
  xorMappedAddress: 0x0020,
} as const;

/** The class of a STUN message. */
export type StunClass = 'request' | 'indication' | 'success' | 'error';

const CLASS_BITS: Record<StunClass, number> = {
  request: 0x000,
  indication: 0x010,
  success: 0x100,
  error: 0x110,
};

/** One attribute: its type and raw value, without padding. */
export interface StunAttributeValue {
  /** Attribute type. */
  readonly type: number;
  /** Its value. */
  readonly value: Buffer;
}

/** A decoded STUN message. */
export interface StunMessage {
  /** The method, e.g. `StunMethod.allocate`. */
  readonly method: number;
  /** Request, indication, success or error response. */
  readonly class: StunClass;
  /** 12 bytes that pair an answer with its request. */
  readonly transactionId: Buffer;
  /** Attributes in the order they came. */
  readonly attributes: readonly StunAttributeValue[];
}

/** A fresh 12-byte transaction id. */
export function newTransactionId(): Buffer {
  return randomBytes(12);
}

/** The long-term credential key: MD5(username ":" realm ":" password), RFC 8489 §9.2.2. */
export function longTermKey(username: string, realm: string, password: string): Buffer {
  return createHash('md5').update(`${username}:${realm}:${password}`).digest();
}

function messageType(method: number, kind: StunClass): number {
  // The method's 12 bits are split around the two class bits (RFC 8489 §5).
  return (method & 0x00f) | ((method & 0x070) << 1) | ((method & 0xf80) << 2) | CLASS_BITS[kind];
}

function padded(length: number): number {
  return (length + 3) & ~3;
}

function encodeAttribute(attribute: StunAttributeValue): Buffer {
  const buffer = Buffer.alloc(4 + padded(attribute.value.length));
  buffer.writeUInt16BE(attribute.type, 0);
  buffer.writeUInt16BE(attribute.value.length, 2);
  attribute.value.copy(buffer, 4);
  return buffer;
}

/**
 * Encodes a request. With `integrityKey`, a MESSAGE-INTEGRITY attribute (HMAC-SHA1 over the
 * message, its length counting the attribute itself) ends it.
 */
export function encodeStunRequest(
  method: number,
  transactionId: Buffer,
  attributes: readonly StunAttributeValue[],
  integrityKey?: Buffer,
): Buffer {
  if (transactionId.length !== 12) throw new TypeError('a STUN transaction id has 12 bytes');
  const body = Buffer.concat(attributes.map(encodeAttribute));
  const integrityLength = integrityKey ? 4 + MESSAGE_INTEGRITY_BYTES : 0;
  const header = Buffer.alloc(STUN_HEADER_BYTES);
  header.writeUInt16BE(messageType(method, 'request'), 0);
  header.writeUInt16BE(body.length + integrityLength, 2);
  header.writeUInt32BE(STUN_MAGIC_COOKIE, 4);
  transactionId.copy(header, 8);
  const message = Buffer.concat([header, body]);
  if (!integrityKey) return message;
  const hmac = createHmac('sha1', integrityKey).update(message).digest();
  return Buffer.concat([
    message,
    encodeAttribute({ type: StunAttribute.messageIntegrity, value: hmac }),
  ]);
}

/**
 * The total length of the STUN message whose header starts `data`, for reading one off a TCP
 * stream; null while the header is incomplete, and -1 for something that is no STUN message.
 */
export function stunMessageLength(data: Buffer): number | null {
  if (data.length < STUN_HEADER_BYTES) return null;
  const length = data.readUInt16BE(2);
  if ((data[0]! & 0xc0) !== 0 || data.readUInt32BE(4) !== STUN_MAGIC_COOKIE) return -1;
  if (length % 4 !== 0 || STUN_HEADER_BYTES + length > MAX_MESSAGE_BYTES) return -1;
  return STUN_HEADER_BYTES + length;
}

/** Decodes one whole STUN message; null for anything malformed, never an exception. */
export function decodeStunMessage(data: Buffer): StunMessage | null {
  const length = stunMessageLength(data);
  if (length === null || length !== data.length) return null;
  const type = data.readUInt16BE(0);
  const method = (type & 0x000f) | ((type & 0x00e0) >> 1) | ((type & 0x3e00) >> 2);
  const kind = (Object.keys(CLASS_BITS) as StunClass[]).find(
    (name) => CLASS_BITS[name] === (type & 0x110),
  )!;
  const attributes: StunAttributeValue[] = [];
  let offset = STUN_HEADER_BYTES;
  while (offset < length) {
    if (offset + 4 > length) return null;
    const attributeType = data.readUInt16BE(offset);
    const valueLength = data.readUInt16BE(offset + 2);
    const end = offset + 4 + valueLength;
    if (end > length) return null;
    attributes.push({ type: attributeType, value: data.subarray(offset + 4, end) });
    offset += 4 + padded(valueLength);
  }
  return {
    method,
    class: kind,
    transactionId: Buffer.from(data.subarray(8, 20)),
    attributes,
  };
}

/** The value of the first attribute of a type, if the message has one. */
export function attributeOf(message: StunMessage, type: number): Buffer | undefined {
  return message.attributes.find((attribute) => attribute.type === type)?.value;
}

/** An ERROR-CODE value as its number and reason phrase; null when malformed. */
export function decodeErrorCode(value: Buffer): { code: number; reason: string } | null {
  if (value.length < 4) return null;
  const code = (value[2]! & 0x07) * 100 + value[3]!;
  if (code < 300 || code > 699) return null;
  return { code, reason: value.subarray(4).toString('utf8') };
}

/** An XOR-MAPPED-ADDRESS or XOR-RELAYED-ADDRESS value (IPv4 or IPv6); null when malformed. */
export function decodeXorAddress(
  value: Buffer,
  transactionId: Buffer,
): { address: string; port: number } | null {
  if (value.length < 4) return null;
  const family = value[1];
  const port = value.readUInt16BE(2) ^ (STUN_MAGIC_COOKIE >>> 16);
  const mask = Buffer.alloc(16);
  mask.writeUInt32BE(STUN_MAGIC_COOKIE, 0);
  transactionId.copy(mask, 4);
  const size = family === 0x01 ? 4 : family === 0x02 ? 16 : 0;
  if (size === 0 || value.length !== 4 + size) return null;
  const bytes = Buffer.from(value.subarray(4));
  for (let index = 0; index < size; index++) bytes[index] = bytes[index]! ^ mask[index]!;
  if (size === 4) return { address: [...bytes].join('.'), port };
  const groups: string[] = [];
  for (let index = 0; index < size; index += 2) groups.push(bytes.readUInt16BE(index).toString(16));
  return { address: groups.join(':'), port };
}
