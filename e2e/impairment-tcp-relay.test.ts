import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import { TcpImpairmentRelay, type TcpRelayOptions } from './support/impairment';
import { waitFor } from '../voice-sfu/test/support/plain-peers';

const cleanups: (() => unknown)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A TCP server on loopback that echoes, or only records what arrives and when. */
async function startServer(mode: 'echo' | 'record') {
  const arrivals: { bytes: number; at: number }[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    if (mode === 'echo') socket.pipe(socket);
    else
      socket.on('data', (chunk) => arrivals.push({ bytes: chunk.length, at: performance.now() }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  return { port: (server.address() as net.AddressInfo).port, arrivals };
}

async function startRelay(targetPort: number, options: Omit<TcpRelayOptions, 'target'> = {}) {
  const relay = await TcpImpairmentRelay.start({
    target: { host: '127.0.0.1', port: targetPort },
    ...options,
  });
  cleanups.push(() => relay.close());
  return relay;
}

/** A connected client, and everything it has received so far. */
async function connect(port: number) {
  const socket = net.connect({ host: '127.0.0.1', port });
  const received: Buffer[] = [];
  socket.on('data', (chunk) => received.push(chunk));
  socket.on('error', () => undefined);
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  cleanups.push(() => socket.destroy());
  return { socket, received, bytes: () => received.reduce((sum, chunk) => sum + chunk.length, 0) };
}

describe('TcpImpairmentRelay', () => {
  it('with delay, jitter and loss delivers the bytes intact and in order, a round trip late', async () => {
    const server = await startServer('echo');
    const relay = await startRelay(server.port, {
      seed: 3,
      impairment: { delayMs: 60, jitterMs: 20, lossPercent: 3 },
    });
    const client = await connect(relay.port);

    // One byte there and back crosses both directions' delay, and jitter stays within ±20 ms.
    const pingAt = performance.now();
    client.socket.write(Buffer.from([7]));
    await waitFor(() => client.bytes() === 1, 5000, 'the echo of one byte');
    expect(performance.now() - pingAt).toBeGreaterThanOrEqual(2 * (60 - 20) - 1);

    const payload = randomBytes(512 * 1024);
    for (let offset = 0; offset < payload.length; offset += 10_000) {
      client.socket.write(payload.subarray(offset, offset + 10_000));
    }
    await waitFor(() => client.bytes() === 1 + payload.length, 20_000, 'the whole echo');
    expect(Buffer.concat(client.received).subarray(1).equals(payload)).toBe(true);
    const { upstream, downstream } = relay.stats();
    expect(upstream.bytesForwarded).toBe(1 + payload.length);
    expect(downstream.bytesForwarded).toBe(1 + payload.length);
    // Lost segments are late, not missing.
    expect(upstream.retransmitted).toBeGreaterThan(0);
    expect(upstream.dropped.closed + downstream.dropped.closed).toBe(0);
  });

  it('with a rate cap delivers at the rate within 10 %, pausing the sender instead of dropping', async () => {
    const rateKbps = 1600;
    const server = await startServer('record');
    const relay = await startRelay(server.port, {
      impairment: { upstream: { rateKbps } },
      maxBufferedBytes: 32 * 1024,
    });
    const client = await connect(relay.port);
    const payload = randomBytes(300 * 1024);
    client.socket.write(payload);
    await waitFor(
      () => server.arrivals.reduce((sum, arrival) => sum + arrival.bytes, 0) === payload.length,
      15_000,
      'every byte at the server',
    );
    const first = server.arrivals[0]!;
    const last = server.arrivals.at(-1)!;
    const measuredKbps = ((payload.length - first.bytes) * 8) / (last.at - first.at);
    expect(measuredKbps).toBeGreaterThan(rateKbps * 0.9);
    expect(measuredKbps).toBeLessThan(rateKbps * 1.1);
    const stats = relay.stats().upstream;
    // The relay read no further ahead than its buffer (plus one read) allowed.
    expect(stats.peakInFlightBytes).toBeLessThanOrEqual(32 * 1024 + 64 * 1024);
    expect(stats.dropped.closed).toBe(0);
  });

  it('a blackout stalls the stream, and ending it delivers what waited, in order', async () => {
    const server = await startServer('echo');
    const relay = await startRelay(server.port, { impairment: { blackout: true } });
    const client = await connect(relay.port);
    client.socket.write('during the blackout; ');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(client.bytes()).toBe(0);
    expect(relay.stats().upstream.inFlightBytes).toBeGreaterThan(0);
    relay.set({ blackout: false });
    client.socket.write('after it.');
    await waitFor(() => client.bytes() === 30, 5000, 'the echo');
    expect(Buffer.concat(client.received).toString()).toBe('during the blackout; after it.');
  });

  it('refuses connections beyond maxConnections and counts them', async () => {
    const server = await startServer('echo');
    const relay = await startRelay(server.port, { maxConnections: 2 });
    await connect(relay.port);
    await connect(relay.port);
    const third = await connect(relay.port);
    const closed = new Promise<void>((resolve) => third.socket.once('close', () => resolve()));
    await closed;
    await waitFor(() => relay.stats().connections.refused === 1, 2000, 'the refusal');
    expect(relay.stats().connections).toMatchObject({ active: 2, opened: 2 });
  });

  it('closes the client connection when the server refuses, and counts the failure', async () => {
    // A port that was just free: nothing listens there.
    const closedPort = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as net.AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    const refusing = await startRelay(closedPort);
    const client = await connect(refusing.port);
    await new Promise<void>((resolve) => client.socket.once('close', () => resolve()));
    expect(refusing.stats().connections).toMatchObject({ active: 0, opened: 1, failed: 1 });
  });

  it('close() destroys every connection and is idempotent', async () => {
    const server = await startServer('echo');
    const relay = await startRelay(server.port, { impairment: { delayMs: 1000 } });
    const client = await connect(relay.port);
    client.socket.write('held');
    await waitFor(() => relay.stats().upstream.inFlightPackets === 1, 2000, 'the relay to hold it');
    const closed = new Promise<void>((resolve) => client.socket.once('close', () => resolve()));
    await relay.close();
    await relay.close();
    await closed;
    expect(relay.stats().connections.active).toBe(0);
    expect(relay.stats().upstream.dropped.closed).toBe(1);
  });
});
