import type dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import {
  IMPAIRMENT_PROFILES,
  SeededRandom,
  totalDropped,
  UdpImpairmentRelay,
  type UdpRelayOptions,
} from './support/impairment';
import { waitFor } from '../voice-sfu/test/support/plain-peers';
import { bindUdp } from '../voice-sfu/test/support/rtp';

const cleanups: (() => unknown)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A datagram carrying a sequence number and its send time (performance.now()), padded to `bytes`. */
function probe(sequence: number, bytes = 64): Buffer {
  const packet = Buffer.alloc(Math.max(12, bytes));
  packet.writeUInt32BE(sequence, 0);
  packet.writeDoubleBE(performance.now(), 4);
  return packet;
}

interface Arrival {
  sequence: number;
  delayMs: number;
  arrivedAt: number;
  bytes: number;
}

/** A UDP server on loopback that records each probe, and answers each datagram when `echo` is set. */
async function startSink(options: { echo?: boolean } = {}) {
  const socket = await bindUdp();
  const arrivals: Arrival[] = [];
  const sources = new Set<number>();
  socket.on('message', (packet, from) => {
    const arrivedAt = performance.now();
    sources.add(from.port);
    // Flood tests send datagrams too short to be probes; they are answered but not recorded.
    if (packet.length >= 12) {
      arrivals.push({
        sequence: packet.readUInt32BE(0),
        delayMs: arrivedAt - packet.readDoubleBE(4),
        arrivedAt,
        bytes: packet.length,
      });
    }
    if (options.echo) {
      // The answer starts with the source port the server saw, so clients can check it.
      const answer = Buffer.alloc(packet.length + 2);
      answer.writeUInt16BE(from.port, 0);
      packet.copy(answer, 2);
      socket.send(answer, from.port, from.address);
    }
  });
  cleanups.push(() => socket.close());
  return { port: socket.address().port, arrivals, sources };
}

async function startRelay(options: Omit<UdpRelayOptions, 'target'> & { targetPort: number }) {
  const { targetPort, ...rest } = options;
  const relay = await UdpImpairmentRelay.start({
    target: { host: '127.0.0.1', port: targetPort },
    ...rest,
  });
  cleanups.push(() => relay.close());
  return relay;
}

async function client(): Promise<dgram.Socket> {
  const socket = await bindUdp();
  cleanups.push(() => socket.close());
  return socket;
}

/**
 * Sends probes `from`..`from + count - 1` to the relay in batches, waiting after each batch
 * until the relay has read it, so no socket buffer on loopback overflows.
 */
async function sendBatches(
  socket: dgram.Socket,
  relay: UdpImpairmentRelay,
  from: number,
  count: number,
  bytes = 64,
): Promise<void> {
  const before = relay.stats().upstream.packetsIn;
  for (let sent = 0; sent < count;) {
    const batch = Math.min(100, count - sent);
    for (let i = 0; i < batch; i++) socket.send(probe(from + sent + i, bytes), relay.port);
    sent += batch;
    await waitFor(() => relay.stats().upstream.packetsIn >= before + sent, 5000, 'the relay');
  }
}

/** Sends `count` probes spaced `intervalMs` apart, each stamped when it is sent. */
async function sendSpaced(
  socket: dgram.Socket,
  port: number,
  count: number,
  intervalMs: number,
): Promise<void> {
  for (let sequence = 0; sequence < count; sequence++) {
    socket.send(probe(sequence), port);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

describe('UdpImpairmentRelay loss', () => {
  it('with 20 % upstream loss and a seed, forwards 80 % of 10,000 packets, the same ones each run', async () => {
    const run = async (seed: number) => {
      const sink = await startSink();
      const relay = await startRelay({
        targetPort: sink.port,
        seed,
        impairment: { upstream: { lossPercent: 20 } },
      });
      await sendBatches(await client(), relay, 0, 10_000);
      const stats = relay.stats().upstream;
      await waitFor(() => sink.arrivals.length === stats.packetsForwarded, 5000, 'the sink');
      return { stats, received: sink.arrivals.map((arrival) => arrival.sequence) };
    };
    const first = await run(2024);
    expect(first.stats.packetsIn).toBe(10_000);
    expect(first.stats.dropped.random / 10_000).toBeGreaterThan(0.18);
    expect(first.stats.dropped.random / 10_000).toBeLessThan(0.22);
    expect(first.stats.packetsForwarded + first.stats.dropped.random).toBe(10_000);
    expect((await run(2024)).received).toEqual(first.received);
    expect((await run(2025)).received).not.toEqual(first.received);
  });
});

describe('UdpImpairmentRelay delay and jitter', () => {
  it('with 40 ms delay delivers every packet at least 40 ms after it was sent, in order', async () => {
    const sink = await startSink();
    const relay = await startRelay({ targetPort: sink.port, impairment: { delayMs: 40 } });
    await sendSpaced(await client(), relay.port, 60, 5);
    await waitFor(() => sink.arrivals.length === 60, 5000, 'every packet');
    const delays = sink.arrivals.map((arrival) => arrival.delayMs);
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(39);
    // Generous: a loaded 2-core machine fires timers late, never early.
    expect(median(delays)).toBeLessThan(40 + 60);
    expect(sink.arrivals.map((arrival) => arrival.sequence)).toEqual([...Array(60).keys()]);
  });

  it('with ±25 ms jitter spreads delays over the range, without reordering unless allowed', async () => {
    const measure = async (jitterReorders: boolean) => {
      const sink = await startSink();
      const relay = await startRelay({
        targetPort: sink.port,
        seed: 5,
        impairment: { delayMs: 40, jitterMs: 25, jitterReorders },
      });
      await sendSpaced(await client(), relay.port, 100, 4);
      await waitFor(() => sink.arrivals.length === 100, 5000, 'every packet');
      return sink.arrivals;
    };
    const inOrder = await measure(false);
    const delays = inOrder.map((arrival) => arrival.delayMs);
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(40 - 25 - 1);
    expect(Math.max(...delays) - Math.min(...delays)).toBeGreaterThan(20);
    expect(inOrder.map((arrival) => arrival.sequence)).toEqual([...Array(100).keys()]);

    const reordering = await measure(true);
    const sequences = reordering.map((arrival) => arrival.sequence);
    expect([...sequences].sort((a, b) => a - b)).toEqual([...Array(100).keys()]);
    expect(
      sequences.filter((sequence, i) => i > 0 && sequence < sequences[i - 1]!).length,
    ).toBeGreaterThan(5);
  });
});

describe('UdpImpairmentRelay rate cap', () => {
  it('holds throughput to the rate within 10 % and drops what overflows the queue', async () => {
    const rateKbps = 400;
    const packetBytes = 500;
    const queueLimitBytes = 20 * packetBytes;
    const sink = await startSink();
    const relay = await startRelay({
      targetPort: sink.port,
      impairment: { upstream: { rateKbps, queueLimitBytes } },
    });
    const socket = await client();
    // Offer three times the rate for 2 s, catching up after any stall so the queue stays full.
    const offeredPerMs = (3 * rateKbps) / 8 / packetBytes;
    const start = performance.now();
    let sent = 0;
    let maxQueuedBytes = 0;
    while (performance.now() - start < 2000) {
      const due = Math.floor((performance.now() - start) * offeredPerMs);
      for (; sent < due; sent++) socket.send(probe(sent, packetBytes), relay.port);
      maxQueuedBytes = Math.max(maxQueuedBytes, relay.stats().upstream.queuedBytes);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await waitFor(() => relay.stats().upstream.inFlightPackets === 0, 5000, 'the queue to drain');
    const stats = relay.stats().upstream;
    expect(stats.dropped.queue).toBeGreaterThan(stats.packetsIn / 2);
    expect(stats.packetsForwarded + stats.dropped.queue).toBe(stats.packetsIn);
    expect(maxQueuedBytes).toBeLessThanOrEqual(queueLimitBytes);
    await waitFor(() => sink.arrivals.length === stats.packetsForwarded, 5000, 'the sink');
    // Bytes after the first packet, over the time from the first arrival to the last.
    const first = sink.arrivals[0]!;
    const last = sink.arrivals.at(-1)!;
    const bytes = sink.arrivals.reduce((sum, arrival) => sum + arrival.bytes, 0) - first.bytes;
    const measuredKbps = (bytes * 8) / (last.arrivedAt - first.arrivedAt);
    expect(measuredKbps).toBeGreaterThan(rateKbps * 0.9);
    expect(measuredKbps).toBeLessThan(rateKbps * 1.1);
  });
});

describe('UdpImpairmentRelay blackout and set()', () => {
  it('a blackout drops everything, including packets already delayed, and recovery passes all', async () => {
    const sink = await startSink();
    const relay = await startRelay({ targetPort: sink.port, impairment: { delayMs: 300 } });
    const socket = await client();
    await sendBatches(socket, relay, 0, 50);
    relay.set({ blackout: true });
    await sendBatches(socket, relay, 50, 100);
    expect(relay.stats().upstream.dropped.blackout).toBe(150);
    relay.set(IMPAIRMENT_PROFILES.good);
    await sendBatches(socket, relay, 150, 100);
    await waitFor(() => sink.arrivals.length === 100, 5000, 'the packets after the blackout');
    expect(sink.arrivals.map((arrival) => arrival.sequence)).toEqual(
      Array.from({ length: 100 }, (_, i) => 150 + i),
    );
    expect(relay.stats().upstream).toMatchObject({ packetsIn: 250, packetsForwarded: 100 });
  });

  it('set() mid-stream changes one direction and leaves the other as it was', async () => {
    const sink = await startSink({ echo: true });
    const relay = await startRelay({ targetPort: sink.port, seed: 17 });
    const socket = await client();
    const answers: number[] = [];
    socket.on('message', (answer) => answers.push(answer.readUInt32BE(2)));
    await sendBatches(socket, relay, 0, 500);
    await waitFor(() => answers.length === 500, 5000, 'answers before the change');
    relay.set({ downstream: { lossPercent: 50 } });
    await sendBatches(socket, relay, 500, 1000);
    await waitFor(
      () => relay.stats().downstream.packetsIn === 1500,
      5000,
      'the server to answer everything',
    );
    const { upstream, downstream } = relay.stats();
    expect(totalDropped(upstream)).toBe(0);
    expect(downstream.dropped.random).toBeGreaterThan(420);
    expect(downstream.dropped.random).toBeLessThan(580);
    expect(answers.length).toBe(1500 - downstream.dropped.random);
    expect(relay.impairment.upstream.lossPercent).toBe(0);
    expect(() => relay.set({ jitterMs: -1 })).toThrow(RangeError);
    expect(relay.impairment.downstream.lossPercent).toBe(50);
  });
});

describe('UdpImpairmentRelay sessions', () => {
  it('gives two clients distinct upstream ports and sends each only its own answers', async () => {
    const server = await startSink({ echo: true });
    const relay = await startRelay({ targetPort: server.port });
    const clients = [await client(), await client()];
    const answers = clients.map(() => [] as { serverSaw: number; sequence: number }[]);
    clients.forEach((socket, index) =>
      socket.on('message', (answer) =>
        answers[index]!.push({
          serverSaw: answer.readUInt16BE(0),
          sequence: answer.readUInt32BE(2),
        }),
      ),
    );
    for (let round = 0; round < 20; round++) {
      clients[0]!.send(probe(1000 + round), relay.port);
      clients[1]!.send(probe(2000 + round), relay.port);
    }
    await waitFor(() => answers.every((list) => list.length === 20), 5000, 'every answer');
    const sessions = relay.sessions();
    expect(sessions).toHaveLength(2);
    expect(server.sources.size).toBe(2);
    for (const [index, socket] of clients.entries()) {
      const session = sessions.find((entry) => entry.client.port === socket.address().port)!;
      expect(new Set(answers[index]!.map((answer) => answer.serverSaw))).toEqual(
        new Set([session.upstreamPort]),
      );
      expect(
        answers[index]!.every((answer) => Math.floor(answer.sequence / 1000) === index + 1),
      ).toBe(true);
    }
  });

  it('closes a session idle for its timeout, and a later packet opens a new one', async () => {
    const server = await startSink({ echo: true });
    const relay = await startRelay({ targetPort: server.port, idleTimeoutMs: 200 });
    const socket = await client();
    socket.send(probe(1), relay.port);
    await waitFor(
      () => relay.sessions().length === 1 && relay.sessions()[0]!.upstreamPort !== null,
    );
    const firstPort = relay.sessions()[0]!.upstreamPort;
    await waitFor(() => relay.stats().sessions.expired === 1, 3000, 'the session to expire');
    expect(relay.sessions()).toEqual([]);
    socket.send(probe(2), relay.port);
    await waitFor(() => server.arrivals.length === 2, 3000, 'the second packet');
    expect(relay.stats().sessions).toMatchObject({ opened: 2, expired: 1 });
    expect(server.sources).toContain(firstPort);
    expect(server.sources.size).toBe(2);
  });

  it('under a flood from 120 source ports keeps sessions and held packets within their bounds', async () => {
    const server = await startSink({ echo: true });
    const bounds = { maxSessions: 16, maxInFlightPackets: 200, maxInFlightBytes: 64 * 1024 };
    const relay = await startRelay({
      targetPort: server.port,
      idleTimeoutMs: 300,
      // Held for a second, so what the sessions send piles up against the bounds.
      impairment: { delayMs: 1000 },
      ...bounds,
    });
    const random = new SeededRandom(99);
    const sockets = await Promise.all(Array.from({ length: 120 }, () => client()));
    let sent = 0;
    let maxActive = 0;
    for (let round = 0; round < 30; round++) {
      // Forty sources at a time, so the relay's socket buffer on loopback does not overflow.
      for (let first = 0; first < sockets.length; first += 40) {
        for (const socket of sockets.slice(first, first + 40)) {
          // Random sizes from empty to a full Ethernet payload.
          socket.send(Buffer.alloc(Math.floor(random.next() * 1473), round), relay.port);
          sent++;
        }
        await waitFor(() => relay.stats().upstream.packetsIn >= sent, 5000, 'the relay to read');
        maxActive = Math.max(maxActive, relay.stats().sessions.active);
      }
    }
    const stats = relay.stats();
    expect(maxActive).toBeLessThanOrEqual(bounds.maxSessions);
    expect(stats.sessions.opened - stats.sessions.expired).toBeLessThanOrEqual(bounds.maxSessions);
    expect(stats.upstream.dropped.sessionLimit).toBeGreaterThan(sent / 2);
    expect(stats.upstream.peakInFlightPackets).toBeLessThanOrEqual(bounds.maxInFlightPackets);
    expect(stats.upstream.peakInFlightBytes).toBeLessThanOrEqual(bounds.maxInFlightBytes);
    expect(stats.upstream.dropped.overflow).toBeGreaterThan(0);
    // Once the flood stops and its sessions expire, an ordinary client gets through.
    await waitFor(
      () => relay.stats().sessions.active === 0 && relay.stats().upstream.inFlightPackets === 0,
      5000,
      'the flood sessions to expire',
    );
    const after = relay.stats().upstream;
    expect(after.packetsForwarded + totalDropped(after)).toBe(after.packetsIn);
    const late = await client();
    const answered = new Promise<Buffer>((resolve) => late.once('message', resolve));
    late.send(probe(7), relay.port);
    expect((await answered).readUInt32BE(2)).toBe(7);
  });
});
