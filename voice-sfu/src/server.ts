import http from 'node:http';
import { WebSocketServer } from 'ws';
import { MAX_WEBSOCKET_FRAME_BYTES } from '@hearth/protocol';
import { keepAlive, listenHttp, notFound, serveOpsEndpoint } from '@hearth/server-common';
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
    const ops = { registry: node.registry, health: () => ({ node: agent.nodeId }) };
    if (!serveOpsEndpoint(request, response, ops)) notFound(response);
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
  const port = await listenHttp(server, options.host, options.port);
  return {
    port,
    async close() {
      for (const client of sockets.clients) client.terminate();
      sockets.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
