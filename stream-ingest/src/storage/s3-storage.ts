import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import {
  MAX_DELETE_BATCH,
  StorageError,
  batchKeys,
  isTransientSystemError,
  type ObjectBody,
  type ObjectMeta,
  type ObjectStorage,
  type StoredObject,
} from './object-storage';

/** Where an S3Storage writes and how it talks to the service. */
export interface S3StorageConfig {
  /** Endpoint of an S3-compatible service (`http://127.0.0.1:9000`); omit for AWS S3. */
  readonly endpoint?: string | undefined;
  /** Region of the bucket; S3-compatible services usually accept any, such as `us-east-1`. */
  readonly region: string;
  /** Bucket every key is written to. */
  readonly bucket: string;
  /** Access key id; without it (and the secret) the SDK's default credential chain is used. */
  readonly accessKeyId?: string | undefined;
  /** Secret access key, set together with `accessKeyId`. */
  readonly secretAccessKey?: string | undefined;
  /** Path-style URLs (`endpoint/bucket/key`), which most S3-compatible services need. */
  readonly forcePathStyle: boolean;
  /** Longest one HTTP request may take before it fails as transient, in ms (default 5000). */
  readonly requestTimeoutMs?: number | undefined;
  /** File size from which a multipart upload is used, in bytes (default and minimum 5 MiB). */
  readonly multipartThresholdBytes?: number | undefined;
}

// Live segments are a few MB at most and must be up within one segment duration, so a request
// that has not finished in 5 s is better abandoned and retried by the upload queue.
const DEFAULT_REQUEST_TIMEOUT_MS = 5_000;
// S3's minimum multipart part size: below it a multipart upload is only more requests.
const MIN_PART_BYTES = 5 * 1024 * 1024;
// Parts of one multipart upload sent at once; the upload queue already runs several uploads.
const MULTIPART_QUEUE_SIZE = 2;

// S3 error codes that mean "not now" rather than "never" (AWS S3 error responses list).
const TRANSIENT_S3_CODES = new Set([
  'InternalError',
  'ServiceUnavailable',
  'SlowDown',
  'RequestTimeout',
  'OperationAborted',
  'Throttling',
  'ThrottlingException',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'TimeoutError',
]);

/** Turns whatever the AWS SDK threw into a classified StorageError. */
export function classifyS3Error(error: unknown, key?: string): StorageError {
  if (error instanceof StorageError) return error;
  const details = error as {
    name?: unknown;
    message?: unknown;
    $retryable?: unknown;
    $metadata?: { httpStatusCode?: number };
  } | null;
  const name = typeof details?.name === 'string' ? details.name : 'Error';
  const status = details?.$metadata?.httpStatusCode;
  let transient: boolean;
  if (TRANSIENT_S3_CODES.has(name) || Boolean(details?.$retryable)) transient = true;
  else if (status !== undefined) transient = status >= 500 || status === 408 || status === 429;
  else transient = isTransientSystemError(error);
  const message = typeof details?.message === 'string' ? details.message : String(error);
  const where = key === undefined ? '' : ` (${key})`;
  return new StorageError(`S3 ${name}${status ? ` ${status}` : ''}${where}: ${message}`, {
    transient,
    key,
    cause: error,
  });
}

/** Object storage in an S3 bucket (AWS S3 or an S3-compatible service). */
export class S3Storage implements ObjectStorage {
  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #multipartThreshold: number;

  constructor(config: S3StorageConfig) {
    const { accessKeyId, secretAccessKey } = config;
    if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
      throw new TypeError('accessKeyId and secretAccessKey go together');
    }
    this.#bucket = config.bucket;
    this.#multipartThreshold = Math.max(
      MIN_PART_BYTES,
      config.multipartThresholdBytes ?? MIN_PART_BYTES,
    );
    this.#client = new S3Client({
      endpoint: config.endpoint,
      region: config.region,
      forcePathStyle: config.forcePathStyle,
      credentials:
        accessKeyId !== undefined && secretAccessKey !== undefined
          ? { accessKeyId, secretAccessKey }
          : undefined,
      // The upload queue owns retries (bounded backoff, outage handling, metrics); SDK retries
      // underneath would multiply attempts and hide how long an upload really took.
      maxAttempts: 1,
      // With the SDK's default checksums, S3-compatible servers such as s3rver store streamed
      // bodies with their aws-chunked framing (ENVIRONMENT.md), so checksums are sent only when
      // an operation requires them (DeleteObjects).
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: {
        requestTimeout: config.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
        // Without this flag the handler only logs a warning when the timeout passes.
        throwOnRequestTimeout: true,
      },
    });
  }

  /** Uploads one object with its Content-Type and Cache-Control. */
  async put(key: string, body: ObjectBody, meta: ObjectMeta): Promise<void> {
    const params = {
      Bucket: this.#bucket,
      Key: key,
      ContentType: meta.contentType,
      CacheControl: meta.cacheControl,
    };
    try {
      if (typeof body === 'string' || Buffer.isBuffer(body)) {
        await this.#client.send(new PutObjectCommand({ ...params, Body: body }));
        return;
      }
      const { size } = await stat(body.filePath);
      if (size < this.#multipartThreshold) {
        // A buffer has a known length and can be re-sent as it is, unlike a stream.
        const bytes = await readFile(body.filePath);
        await this.#client.send(new PutObjectCommand({ ...params, Body: bytes }));
        return;
      }
      const upload = new Upload({
        client: this.#client,
        params: { ...params, Body: createReadStream(body.filePath) },
        partSize: this.#multipartThreshold,
        queueSize: MULTIPART_QUEUE_SIZE,
        leavePartsOnError: false,
      });
      await upload.done();
    } catch (error) {
      throw classifyS3Error(error, key);
    }
  }

  /** Deletes keys with DeleteObjects, one request per `MAX_DELETE_BATCH` keys. */
  async deleteMany(keys: readonly string[]): Promise<void> {
    try {
      for (const batch of batchKeys(keys, MAX_DELETE_BATCH)) {
        const result = await this.#client.send(
          new DeleteObjectsCommand({
            Bucket: this.#bucket,
            Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
          }),
        );
        // DeleteObjects answers 200 even when single keys fail; those are listed in the body.
        const errors = result.Errors ?? [];
        const first = errors[0];
        if (first) {
          throw new StorageError(
            `S3 DeleteObjects failed for ${errors.length} key(s), first ${first.Key}: ` +
              `${first.Code} ${first.Message}`,
            { transient: TRANSIENT_S3_CODES.has(first.Code ?? ''), key: first.Key },
          );
        }
      }
    } catch (error) {
      throw classifyS3Error(error);
    }
  }

  /** Reads one object with its stored headers. */
  async get(key: string): Promise<StoredObject | undefined> {
    try {
      const result = await this.#client.send(
        new GetObjectCommand({ Bucket: this.#bucket, Key: key }),
      );
      const bytes = result.Body ? await result.Body.transformToByteArray() : new Uint8Array();
      return {
        body: Buffer.from(bytes),
        contentType: result.ContentType,
        cacheControl: result.CacheControl,
      };
    } catch (error) {
      if ((error as { name?: unknown } | null)?.name === 'NoSuchKey') return undefined;
      throw classifyS3Error(error, key);
    }
  }

  /** Lists keys under a prefix, following continuation tokens. */
  async list(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    try {
      do {
        const page = await this.#client.send(
          new ListObjectsV2Command({
            Bucket: this.#bucket,
            Prefix: prefix,
            ContinuationToken: token,
          }),
        );
        for (const object of page.Contents ?? []) if (object.Key) keys.push(object.Key);
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
    } catch (error) {
      throw classifyS3Error(error);
    }
    return keys.sort();
  }

  /** Closes the client's sockets; the storage cannot be used afterwards. */
  close(): void {
    this.#client.destroy();
  }
}
