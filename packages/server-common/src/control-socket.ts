import { WebSocket } from 'ws';
import {
  MAX_WEBSOCKET_FRAME_BYTES,
  apiToNodeMessageSchema,
  describeZodError,
  type ApiToNodeMessage,
  type NodeToApiMessage,
} from '@hearth/protocol';
import type { Logger } from './logger';

/** What runs over a node's control connection: a voice node's or an ingest node's agent. */
export interface ControlPeer {
  /** A connection opened: register, then talk through `send` until `detach`. */
  attach(send: (message: NodeToApiMessage) => void): void;
  /** The connection is gone: stop sending. */
  detach(): void;
  /** Handles one validated message from the api. */
  receive(message: ApiToNodeMessage): void;
}

/** The node's end of its control connection to the api. */
export interface ControlSocket {
  /** Closes the connection for good. */
  close(): void;
}

/** The longest a control socket waits between two attempts to reconnect, in milliseconds. */
export const MAX_RECONNECT_DELAY_MS = 5000;

const RETRY_DELAYS_MS = [250, 500, 1000, 2000, MAX_RECONNECT_DELAY_MS];

/**
 * Keeps a WebSocket to the api's `/ws/nodes`, authenticated with the cluster secret, and hands
 * it to the agent. When it drops, the agent stops heartbeats and the socket reconnects with
 * backoff; the api meanwhile marks the node down if it stays away too long.
 */
export function connectControlSocket(options: {
  agent: ControlPeer;
  apiUrl: string;
  clusterSecret: string;
  logger: Logger;
}): ControlSocket {
  const { agent, logger } = options;
  const url = new URL('/ws/nodes', options.apiUrl);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  let socket: WebSocket | undefined;
  let attempt = 0;
  let retry: NodeJS.Timeout | undefined;
  let closed = false;

  const open = () => {
    const current = new WebSocket(url, {
      headers: { authorization: `Cluster ${options.clusterSecret}` },
      maxPayload: MAX_WEBSOCKET_FRAME_BYTES,
    });
    socket = current;
    current.on('open', () => {
      attempt = 0;
      logger.info({ url: url.href }, 'connected to the api');
      agent.attach((message) => {
        if (current.readyState === WebSocket.OPEN) current.send(JSON.stringify(message));
      });
    });
    current.on('message', (raw, isBinary) => {
      if (isBinary) return;
      let json: unknown;
      try {
        json = JSON.parse(raw.toString());
      } catch {
        logger.warn('dropped a control message that is not JSON');
        return;
      }
      const parsed = apiToNodeMessageSchema.safeParse(json);
      if (!parsed.success) {
        logger.warn(
          { problem: describeZodError(parsed.error) },
          'dropped an invalid control message',
        );
        return;
      }
      agent.receive(parsed.data);
    });
    current.on('error', (error) => logger.warn({ err: error }, 'control connection error'));
    current.on('close', (code, reason) => {
      if (socket !== current) return;
      agent.detach();
      if (closed) return;
      const delay = RETRY_DELAYS_MS[Math.min(attempt++, RETRY_DELAYS_MS.length - 1)]!;
      logger.warn({ code, reason: reason.toString(), retryInMs: delay }, 'control connection lost');
      retry = setTimeout(open, delay);
    });
  };
  open();
  return {
    close() {
      closed = true;
      clearTimeout(retry);
      agent.detach();
      socket?.close(1000, 'node stopping');
    },
  };
}
