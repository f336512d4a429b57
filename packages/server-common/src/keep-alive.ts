import type { WebSocket } from 'ws';

/** How often each socket is pinged; one that missed the previous pong is dropped. */
export const HEARTBEAT_INTERVAL_MS = 30_000;

/**
 * Pings a socket regularly and terminates it when a ping goes unanswered, so half-open
 * connections (a laptop closed mid-session) do not linger as participants or viewers.
 */
export function keepAlive(socket: WebSocket, intervalMs = HEARTBEAT_INTERVAL_MS): void {
  let answered = true;
  socket.on('pong', () => {
    answered = true;
  });
  const timer = setInterval(() => {
    if (!answered) {
      socket.terminate();
      return;
    }
    answered = false;
    socket.ping();
  }, intervalMs);
  timer.unref();
  socket.once('close', () => clearInterval(timer));
}
