/** What can be stored: bytes, text (written as UTF-8), or a local file read from disk. */
export type ObjectBody = Buffer | string | { readonly filePath: string };

/** HTTP metadata stored with every object and served to players as it is. */
export interface ObjectMeta {
  /** Content-Type header, e.g. `video/mp2t`. */
  readonly contentType: string;
  /** Cache-Control header, e.g. `public, max-age=31536000, immutable`. */
  readonly cacheControl: string;
}

/** An object read back, with the metadata the storage kept for it. */
export interface StoredObject {
  /** The object's bytes. */
  readonly body: Buffer;
  /** Stored Content-Type, or undefined when the storage keeps no metadata. */
  readonly contentType: string | undefined;
  /** Stored Cache-Control, or undefined when the storage keeps no metadata. */
  readonly cacheControl: string | undefined;
}

/**
 * Where published HLS objects go: an S3 bucket or a local folder. Every method throws a
 * `StorageError` whose `transient` flag tells the upload queue whether retrying can help.
 */
export interface ObjectStorage {
  /** Creates or replaces one object; once it resolves, readers see the whole new object. */
  put(key: string, body: ObjectBody, meta: ObjectMeta): Promise<void>;
  /** Deletes objects, at most `MAX_DELETE_BATCH` per request; missing keys are ignored. */
  deleteMany(keys: readonly string[]): Promise<void>;
  /** Reads one object, or undefined when it does not exist. */
  get(key: string): Promise<StoredObject | undefined>;
  /** Every key that starts with `prefix`, sorted. */
  list(prefix: string): Promise<string[]>;
}

/** The most keys one delete request may carry: S3's DeleteObjects limit. */
export const MAX_DELETE_BATCH = 1000;

/** Splits keys into lists of at most `size`, in order. */
export function batchKeys(keys: readonly string[], size = MAX_DELETE_BATCH): string[][] {
  if (!Number.isInteger(size) || size < 1) throw new TypeError(`batch size must be >= 1: ${size}`);
  const batches: string[][] = [];
  for (let start = 0; start < keys.length; start += size) {
    batches.push(keys.slice(start, start + size));
  }
  return batches;
}

/** A storage failure, classified so the upload queue knows whether retrying can help. */
export class StorageError extends Error {
  /** True for failures that may pass by themselves: network, timeouts, 5xx, throttling. */
  readonly transient: boolean;
  /** Key of the object concerned, when the failure is about one object. */
  readonly key: string | undefined;

  constructor(
    message: string,
    options: { transient: boolean; key?: string | undefined; cause?: unknown },
  ) {
    super(message, { cause: options.cause });
    this.name = 'StorageError';
    this.transient = options.transient;
    this.key = options.key;
  }
}

// Socket and file system error codes that describe the moment (a dropped connection, a full
// descriptor table) rather than the request itself, so the same request can succeed later.
const TRANSIENT_SYSTEM_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'ESOCKETTIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'ENOTFOUND',
  'EADDRNOTAVAIL',
  'EMFILE',
  'ENFILE',
  'EBUSY',
  'EAGAIN',
  'ENOSPC',
]);

/** True when an error carries a Node system error code that a later retry can get past. */
export function isTransientSystemError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && TRANSIENT_SYSTEM_CODES.has(code);
}
