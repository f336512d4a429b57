import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** A stored stream key: the secret itself is never kept, only its hash. */
export interface StreamKeyRecord {
  /** Public id, also embedded in the key so lookups need no secret. */
  readonly id: string;
  /** Channel the key publishes to. */
  readonly channel: string;
  /** SHA-256 of the secret part. */
  readonly secretHash: Buffer;
  /** When it was issued. */
  readonly createdAt: Date;
  /** When a publish last used it. */
  lastUsedAt: Date | null;
}

/** Where stream keys live; `SqlStreamKeyStore` keeps them in PGlite or PostgreSQL. */
export interface StreamKeyStore {
  /** The key of a channel, if it has one. */
  byChannel(channel: string): Promise<StreamKeyRecord | undefined>;
  /** The key with that id, if any. */
  byId(id: string): Promise<StreamKeyRecord | undefined>;
  /** Stores the channel's key, replacing any earlier one. */
  put(record: StreamKeyRecord): Promise<void>;
  /** Removes the channel's key. */
  delete(channel: string): Promise<void>;
  /** Every key. */
  list(): Promise<StreamKeyRecord[]>;
}

// Keys look like `sk_<16 hex id>_<64 hex secret>`: only characters RTMP stream names allow, an id
// to find the record, and 256 random bits of secret.
const KEY_PATTERN = /^sk_([0-9a-f]{16})_([0-9a-f]{64})$/;

/** A freshly generated key: the full text for the streamer and the parts to store. */
export interface GeneratedStreamKey {
  /** Full key text, shown to the streamer once. */
  readonly text: string;
  /** Public id. */
  readonly id: string;
  /** Hash of the secret, to store. */
  readonly secretHash: Buffer;
}

/** Generates a new random stream key. */
export function generateStreamKey(): GeneratedStreamKey {
  const id = randomBytes(8).toString('hex');
  const secret = randomBytes(32).toString('hex');
  return { text: `sk_${id}_${secret}`, id, secretHash: hashSecret(secret) };
}

/** Splits a presented key into id and secret; undefined when it is not a well-formed key. */
export function parseStreamKey(text: string): { id: string; secret: string } | undefined {
  const match = KEY_PATTERN.exec(text);
  return match ? { id: match[1]!, secret: match[2]! } : undefined;
}

// The secret has 256 random bits, so one SHA-256 is enough to make a leaked store useless; a
// slow password KDF protects low-entropy secrets and would only slow every publish down.
function hashSecret(secret: string): Buffer {
  return createHash('sha256').update(secret).digest();
}

/** Compares a presented secret with a stored hash in constant time. */
export function secretMatches(secret: string, secretHash: Buffer): boolean {
  const presented = hashSecret(secret);
  return presented.length === secretHash.length && timingSafeEqual(presented, secretHash);
}
