import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request as the origin received it. */
export interface RecordedRequest {
  /** HTTP method. */
  readonly method: string;
  /** Request target: path and query string. */
  readonly url: string;
  /** Request headers, names in lowercase. */
  readonly headers: http.IncomingHttpHeaders;
}

/** What the origin answers for a path. */
export interface OriginObject {
  /** Body bytes. */
  readonly body: Buffer;
  /** Content-Type header. */
  readonly contentType: string;
  /** ETag header; a matching If-None-Match gets a 304. */
  readonly etag: string;
}

/**
 * A stand-in S3 origin on loopback that records every request it receives, so tests can see
 * exactly what the edge forwards and how often.
 */
export class RecordingOrigin {
  /** Requests received, oldest first. */
  readonly requests: RecordedRequest[] = [];
  /** Objects served, by request path without query string. */
  readonly objects = new Map<string, OriginObject>();
  /** Status to answer every request with instead of serving objects (an origin failure). */
  failWith: number | undefined;
  /** Milliseconds to wait before answering, to hold requests in flight. */
  delayMs = 0;
  #server: http.Server;

  private constructor(server: http.Server) {
    this.#server = server;
  }

  /** Starts the origin on a free loopback port. */
  static async start(): Promise<RecordingOrigin> {
    const server = http.createServer();
    const origin = new RecordingOrigin(server);
    server.on('request', (req, res) => origin.#handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return origin;
  }

  /** `http://127.0.0.1:<port>`. */
  get endpoint(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  /** Requests received for a path (query string ignored). */
  requestsFor(pathname: string): RecordedRequest[] {
    return this.requests.filter((req) => req.url.split('?')[0] === pathname);
  }

  #handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    setTimeout(() => {
      if (this.failWith !== undefined) {
        res.writeHead(this.failWith, { 'content-type': 'text/plain' }).end('origin failure');
        return;
      }
      const object = this.objects.get((req.url ?? '').split('?')[0] ?? '');
      if (!object) {
        res.writeHead(404, { 'content-type': 'application/xml' }).end('<Error>NoSuchKey</Error>');
        return;
      }
      if (req.headers['if-none-match'] === object.etag) {
        res.writeHead(304, { etag: object.etag }).end();
        return;
      }
      res
        .writeHead(200, {
          'content-type': object.contentType,
          'content-length': object.body.length,
          etag: object.etag,
        })
        .end(object.body);
    }, this.delayMs);
  }

  /** Stops the origin, closing idle keep-alive connections from the edge. */
  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
