import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { EmbeddedS3Server } from '../../src/embedded-s3';
import { S3Storage } from '../../src/storage/s3-storage';

/** Bucket every test S3 server starts with. */
export const TEST_BUCKET = 'hearth-test';

/** A real S3-compatible server (s3rver) on loopback for one test, in a temporary folder. */
export class TestS3Server {
  readonly #server: EmbeddedS3Server;

  private constructor(server: EmbeddedS3Server) {
    this.#server = server;
  }

  /** Starts a server on a free port with `TEST_BUCKET`. */
  static async start(): Promise<TestS3Server> {
    const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-s3-'));
    return new TestS3Server(await EmbeddedS3Server.start({ directory, bucket: TEST_BUCKET }));
  }

  /** Folder holding the stored objects; it survives restarts. */
  get directory(): string {
    return this.#server.directory;
  }

  /** `http://127.0.0.1:<port>`. */
  get endpoint(): string {
    return this.#server.endpoint;
  }

  /** Port the server listens on; kept across `stop()` and `resume()`. */
  get port(): number {
    return this.#server.port;
  }

  /** An S3 client for this server, set up the way S3-compatible endpoints need. */
  client(): S3Client {
    return new S3Client({
      endpoint: this.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: this.#server.credentials,
      // With the SDK's default checksums, s3rver stores streamed bodies with their aws-chunked
      // framing (ENVIRONMENT.md), so checksums are sent only when an operation requires them.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  /** The ingest's S3 storage provider, pointed at this server's bucket. */
  storage(): S3Storage {
    return new S3Storage({
      endpoint: this.endpoint,
      region: 'us-east-1',
      bucket: TEST_BUCKET,
      ...this.#server.credentials,
      forcePathStyle: true,
    });
  }

  /** The `S3_*` settings an ingest node process needs to write to this server's bucket. */
  ingestEnv(): Record<string, string> {
    return {
      S3_ENDPOINT: this.endpoint,
      S3_BUCKET: TEST_BUCKET,
      S3_ACCESS_KEY_ID: this.#server.credentials.accessKeyId,
      S3_SECRET_ACCESS_KEY: this.#server.credentials.secretAccessKey,
    };
  }

  /** Stops serving (an outage); stored objects stay. */
  stop(): Promise<void> {
    return this.#server.stop();
  }

  /** Starts serving again on the same port. */
  resume(): Promise<void> {
    return this.#server.resume();
  }

  /** Stops the server and deletes its folder. */
  async close(): Promise<void> {
    await this.#server.stop();
    fs.rmSync(this.directory, { recursive: true, force: true });
  }
}
