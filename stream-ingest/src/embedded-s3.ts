import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import S3rver from 's3rver';

// s3rver accepts only its own fixed credentials.
const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

// Players fetch playlists and segments from another origin than the web app, so the bucket
// answers cross-origin GETs.
const CORS_XML =
  '<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin>' +
  '<AllowedMethod>GET</AllowedMethod><AllowedMethod>HEAD</AllowedMethod>' +
  '<AllowedHeader>*</AllowedHeader><ExposeHeader>Content-Length</ExposeHeader>' +
  '<MaxAgeSeconds>3000</MaxAgeSeconds></CORSRule></CORSConfiguration>';

/**
 * A real S3-compatible server (s3rver) on loopback: the embedded profile's object storage and
 * the tests' S3. Objects live in a folder and survive a stop and start on the same port.
 */
export class EmbeddedS3Server {
  /** Folder holding the objects. */
  readonly directory: string;
  /** Bucket created at start. */
  readonly bucket: string;
  readonly #host: string;
  #port: number;
  #server: S3rver | undefined;

  private constructor(options: { directory: string; bucket: string; host: string; port: number }) {
    this.directory = options.directory;
    this.bucket = options.bucket;
    this.#host = options.host;
    this.#port = options.port;
  }

  /** Starts serving `bucket` from `directory`; port 0 picks a free port. */
  static async start(options: {
    directory: string;
    bucket: string;
    host?: string;
    port?: number;
  }): Promise<EmbeddedS3Server> {
    fs.mkdirSync(options.directory, { recursive: true });
    const server = new EmbeddedS3Server({ host: '127.0.0.1', port: 0, ...options });
    await server.resume();
    return server;
  }

  /** Endpoint URL for S3 clients. */
  get endpoint(): string {
    return `http://${this.#host}:${this.#port}`;
  }

  /** Port in use; kept across `stop()` and `resume()`. */
  get port(): number {
    return this.#port;
  }

  /** Credentials s3rver accepts. */
  get credentials(): { accessKeyId: string; secretAccessKey: string } {
    return S3RVER_CREDENTIALS;
  }

  /** Stops serving; the objects stay in the folder. */
  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Serves again, on the same port once one was picked. */
  async resume(): Promise<void> {
    if (this.#server) return;
    const server = new S3rver({
      address: this.#host,
      port: this.#port,
      silent: true,
      directory: this.directory,
      configureBuckets: [{ name: this.bucket, configs: [CORS_XML] }],
    });
    const address = (await server.run()) as AddressInfo;
    this.#port = address.port;
    this.#server = server;
  }
}
