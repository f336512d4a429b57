import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { keepAlive } from '@hearth/server-common';

let server: WebSocketServer | undefined;

afterEach(async () => {
  await new Promise((resolve) => server?.close(resolve));
  server = undefined;
});

async function connectedPair(): Promise<{ serverSide: WebSocket; client: WebSocket }> {
  server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((resolve) => server!.once('listening', resolve));
  const serverSide = new Promise<WebSocket>((resolve) => server!.once('connection', resolve));
  const client = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}`);
  await new Promise((resolve) => client.once('open', resolve));
  return { serverSide: await serverSide, client };
}

describe('keepAlive()', () => {
  it('keepAlive() keeps a socket whose peer answers pings', async () => {
    const { serverSide, client } = await connectedPair();
    keepAlive(serverSide, 40);
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect(serverSide.readyState).toBe(WebSocket.OPEN);
    client.close();
  });

  it('keepAlive() terminates a socket whose peer stopped answering', async () => {
    const { serverSide, client } = await connectedPair();
    // A paused socket reads nothing, so the client never sees the pings: a half-open peer.
    (client as unknown as { _socket: { pause(): void } })._socket.pause();
    const closed = new Promise((resolve) => serverSide.once('close', resolve));
    keepAlive(serverSide, 40);
    await closed;
    expect(serverSide.readyState).toBe(WebSocket.CLOSED);
    client.terminate();
  });
});
