import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

/**
 * Answers a node process's operational endpoints: `GET /health` with `health()` as JSON and
 * `GET /metrics` from the Prometheus registry. Returns false for any other request, which the
 * caller then answers.
 */
export function serveOpsEndpoint(
  request: http.IncomingMessage,
  response: http.ServerResponse,
  options: { registry: Registry; health: () => Record<string, unknown> },
): boolean {
  const { pathname } = new URL(request.url ?? '/', 'http://node');
  if (request.method === 'GET' && pathname === '/health') {
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ status: 'ok', ...options.health() }));
    return true;
  }
  if (request.method === 'GET' && pathname === '/metrics') {
    options.registry.metrics().then(
      (text) => {
        response.writeHead(200, { 'content-type': options.registry.contentType });
        response.end(text);
      },
      () => {
        response.writeHead(500);
        response.end();
      },
    );
    return true;
  }
  return false;
}

/** Answers 404 with the JSON error body every service uses. */
export function notFound(response: http.ServerResponse): void {
  response.writeHead(404, { 'content-type': 'application/json' });
  response.end(JSON.stringify({ error: { code: 'not_found', message: 'no such endpoint' } }));
}

/** Starts `server` on host and port and resolves with the port it got. */
export async function listenHttp(server: http.Server, host: string, port: number): Promise<number> {
  server.listen(port, host);
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  return (server.address() as AddressInfo).port;
}
