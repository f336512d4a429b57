import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { MAX_WEBSOCKET_FRAME_BYTES } from '@hearth/protocol';
import { keepAlive } from '@hearth/server-common';
import type { NodeAgent } from './node-agent';
import type { VoiceNode } from './voice-node';

/** The HTTP side of a standalone voice-sfu process. */
export interface VoiceServer {
  /** The port it listens on. */
  port: number;
  /** Stops accepting and closes open connections. */
  close(): Promise<void>;
}

/**
 * Serves a node's signaling WebSocket at `/ws?token=<join token>`, its Prometheus metrics at
 * `/metrics` and a liveness check at `/health`. Nothing else is exposed.
 */
export async function startVoiceServer(options: {
  node: VoiceNode;
  agent: NodeAgent;
  host: string;
  port: number;
}): Promise<VoiceServer> {
  const { node, agent } = options;
  const sockets = new WebSocketServer({ noServer: true, maxPayload: MAX_WEBSOCKET_FRAME_BYTES });
  const server = http.createServer((request, response) => {
    const { pathname } = new URL(request.url ?? '/', 'http://node');
    if (request.method === 'GET' && pathname === '/health') {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ status: 'ok', node: agent.nodeId }));
      return;
    }
    if (request.method === 'GET' && pathname === '/metrics') {
      node.registry.metrics().then(
        (text) => {
          response.writeHead(200, { 'content-type': node.registry.contentType });
          response.end(text);
        },
        () => {
          response.writeHead(500);
          response.end();
        },
      );
      return;
    }
    response.writeHead(404, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ error: { code: 'not_found', message: 'no such endpoint' } }));
  });
  server.on('upgrade', (request, socket, head) => {
    const url = new URL(request.url ?? '/', 'http://node');
    if (url.pathname !== '/ws') {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
      return;
    }
    sockets.handleUpgrade(request, socket, head, (websocket) => {
      keepAlive(websocket);
      agent.acceptWithToken(websocket, url.searchParams.get('token') ?? undefined);
    });
  });
  server.listen(options.port, options.host);
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  return {
    port: (server.address() as AddressInfo).port,
    async close() {
      for (const client of sockets.clients) client.terminate();
      sockets.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
