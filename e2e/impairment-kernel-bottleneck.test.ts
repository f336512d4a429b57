import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createKernelBottleneck,
  kernelBottleneckUnavailableReason,
  UdpImpairmentRelay,
} from './support/impairment';

const unavailable = kernelBottleneckUnavailableReason();

// A UDP echo server for inside the namespace, as plain JavaScript for `node -e`. It prints its
// port once bound.
const ECHO_SERVER = `
const dgram = require('node:dgram');
const socket = dgram.createSocket('udp4');
socket.on('message', (packet, from) => socket.send(packet, from.port, from.address));
socket.bind(0, process.argv[1], () => console.log(socket.address().port));
`;

const cleanups: (() => unknown)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Starts the echo server inside the namespace and resolves its port. */
async function startEchoInNamespace(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  const child: ChildProcess = spawn(command!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  cleanups.push(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  return new Promise((resolve, reject) => {
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const port = Number.parseInt(output, 10);
      if (output.includes('\n') && port > 0) resolve(port);
    });
    child.once('exit', (code) => reject(new Error(`echo server exited with ${code}: ${output}`)));
  });
}

describe('createKernelBottleneck', () => {
  it.skipIf(unavailable !== null)(
    `tbf on a veth pair holds a relay's echo traffic to the rate${unavailable ? ` (skipped: ${unavailable})` : ''}`,
    async () => {
      const rateKbps = 2000;
      const bottleneck = await createKernelBottleneck({ rateKbps, queueLimitBytes: 16_000 });
      cleanups.push(() => bottleneck.close());
      const echoPort = await startEchoInNamespace(
        bottleneck.commandInNamespace([
          process.execPath,
          '-e',
          ECHO_SERVER,
          bottleneck.namespaceAddress,
        ]),
      );
      // Loss comes from the userspace relay in front; the rate and its queue from the kernel.
      const relay = await UdpImpairmentRelay.start({
        target: { host: bottleneck.namespaceAddress, port: echoPort },
        upstreamHost: bottleneck.hostAddress,
        seed: 1,
        impairment: { upstream: { lossPercent: 10 } },
      });
      cleanups.push(() => relay.close());
      const socket = dgram.createSocket('udp4');
      cleanups.push(() => socket.close());
      await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
      const echoes: { bytes: number; at: number }[] = [];
      socket.on('message', (packet) =>
        echoes.push({ bytes: packet.length, at: performance.now() }),
      );

      // Offer twice the rate for 1.5 s in 1000-byte datagrams, catching up after any stall.
      const packetBytes = 1000;
      const offeredPerMs = (2 * rateKbps) / 8 / packetBytes;
      const start = performance.now();
      let sent = 0;
      while (performance.now() - start < 1500) {
        const due = Math.floor((performance.now() - start) * offeredPerMs);
        for (; sent < due; sent++) socket.send(Buffer.alloc(packetBytes), relay.port);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      await new Promise((resolve) => setTimeout(resolve, 500));

      const stats = relay.stats().upstream;
      expect(stats.dropped.random).toBeGreaterThan(0);
      // The kernel queue dropped what the rate could not carry.
      expect(echoes.length).toBeLessThan(stats.packetsForwarded * 0.8);
      const first = echoes[0]!;
      const last = echoes.at(-1)!;
      const bytes = echoes.reduce((sum, echo) => sum + echo.bytes, 0) - first.bytes;
      // UDP payload only: tbf also counts the 42 bytes of Ethernet, IP and UDP headers per packet.
      const measuredKbps = (bytes * 8 * ((packetBytes + 42) / packetBytes)) / (last.at - first.at);
      expect(measuredKbps).toBeGreaterThan(rateKbps * 0.85);
      expect(measuredKbps).toBeLessThan(rateKbps * 1.1);
    },
  );
});
