import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request that reached the proxy. */
export interface ProxiedRequest {
  /** HTTP method. */
  readonly method: string;
  /** Path and query string. */
  readonly url: string;
  /** Request body as text. */
  readonly body: string;
}

/**
 * An HTTP proxy on loopback in front of a test S3 server. It records every request and can answer
 * with injected S3 errors or not answer at all, to test how the S3 client classifies failures.
 */
export class S3Proxy {
  /** Every request received, in order. */
  readonly requests: ProxiedRequest[] = [];
  /** When true, requests are read and never answered. */
  hang = false;
  /** PUTs whose path (without query) matches are forwarded after a delay, like a slow uplink. */
  slowPuts: { readonly path: RegExp; readonly delayMs: number } | undefined;
  readonly #server: http.Server;
  readonly #target: URL;
  readonly #injected: { status: number; code: string }[] = [];

  private constructor(target: string) {
    this.#target = new URL(target);
    this.#server = http.createServer((request, response) => this.#handle(request, response));
  }

  /** Starts a proxy to `target` (`http://127.0.0.1:<port>`) on a free loopback port. */
  static async start(target: string): Promise<S3Proxy> {
    const proxy = new S3Proxy(target);
    await new Promise<void>((resolve) => proxy.#server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  /** `http://127.0.0.1:<port>` of the proxy. */
  get endpoint(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  /** Answers the next `count` requests with an S3 error of this status and code. */
  failNext(count: number, status: number, code: string): void {
    for (let index = 0; index < count; index++) this.#injected.push({ status, code });
  }

  /** Stops the proxy and drops open connections, hanging ones included. */
  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #handle(request: http.IncomingMessage, response: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = Buffer.concat(chunks);
      this.requests.push({
        method: request.method ?? '',
        url: request.url ?? '',
        body: body.toString(),
      });
      if (this.hang) return;
      const injected = this.#injected.shift();
      if (injected) {
        response.writeHead(injected.status, { 'content-type': 'application/xml' });
        response.end(
          `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${injected.code}</Code><Message>injected by the test proxy</Message></Error>`,
        );
        return;
      }
      const { pathname } = new URL(request.url ?? '/', 'http://proxy');
      const delayMs =
        this.slowPuts && request.method === 'PUT' && this.slowPuts.path.test(pathname)
          ? this.slowPuts.delayMs
          : 0;
      setTimeout(() => this.#forward(request, response, body), delayMs);
    });
  }

  #forward(request: http.IncomingMessage, response: http.ServerResponse, body: Buffer): void {
    // The Host header is forwarded as it is: it is part of the request's signature.
    const upstream = http.request(
      {
        host: this.#target.hostname,
        port: this.#target.port,
        method: request.method,
        path: request.url,
        headers: request.headers,
      },
      (answer) => {
        response.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(response);
      },
    );
    upstream.on('error', () => response.destroy());
    upstream.end(body);
  }
}
