import type { ChildProcess } from 'node:child_process';
import { Writable } from 'node:stream';
import type net from 'node:net';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { DEFAULT_RTMP_LIMITS, redactStreamNames, type RtmpLimits } from '../src/rtmp-guard';
import { publishLikeObs } from '../../e2e/support/obs';
import { RtmpServer, type PublishRequest } from '../src/rtmp-server';
import {
  amfNumber,
  amfString,
  chunk,
  closed,
  command,
  connect,
  connectTcp,
  handshake,
  publishCommands,
  setChunkSize,
} from './support/rtmp-wire';

let server: RtmpServer | undefined;
const sockets: net.Socket[] = [];
const children: ChildProcess[] = [];

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  for (const child of children.splice(0)) child.kill('SIGKILL');
  await server?.stop();
  server = undefined;
});

async function startServer(
  limits: Partial<RtmpLimits> = {},
): Promise<{ server: RtmpServer; registry: Registry; logLines: string[] }> {
  const registry = new Registry();
  const logLines: string[] = [];
  const sink = new Writable({
    write(line: Buffer, _encoding, done) {
      logLines.push(line.toString());
      done();
    },
  });
  server = await RtmpServer.start({
    host: '127.0.0.1',
    port: 0,
    logger: pino({ level: 'debug' }, sink),
    limits: { ...DEFAULT_RTMP_LIMITS, ...limits },
    registry,
  });
  return { server, registry, logLines };
}

async function open(port: number): Promise<net.Socket> {
  const socket = await connectTcp(port);
  socket.on('error', () => undefined);
  sockets.push(socket);
  return socket;
}

async function closedFor(registry: Registry, reason: string): Promise<number> {
  const metric = await registry.getSingleMetric('ingest_rtmp_closed_sessions_total')!.get();
  return metric.values.find((value) => value.labels.reason === reason)?.value ?? 0;
}

async function refusedFor(registry: Registry, reason: string): Promise<number> {
  const metric = await registry.getSingleMetric('ingest_rtmp_refused_connections_total')!.get();
  return metric.values.find((value) => value.labels.reason === reason)?.value ?? 0;
}

// A legitimate publisher, accepted like the ingest accepts a valid key.
async function legitimatePublisher(
  target: RtmpServer,
  key: string,
): Promise<{ request: PublishRequest; closedEarly: () => boolean }> {
  const published = new Promise<PublishRequest>((resolve) =>
    target.events.once('publish', (request) => {
      request.accept();
      resolve(request);
    }),
  );
  children.push(
    publishLikeObs({
      url: `rtmp://127.0.0.1:${target.port}/live/${key}`,
      seconds: 30,
      width: 320,
      height: 240,
      fps: 15,
    }),
  );
  const request = await published;
  let closedEarly = false;
  request.onClosed(() => {
    closedEarly = true;
  });
  return { request, closedEarly: () => closedEarly };
}

describe('RtmpServer against hostile peers', () => {
  it('a connect without a command object closes that connection only; a live publisher is untouched', async () => {
    const { server, registry } = await startServer();
    const legit = await legitimatePublisher(server, 'legit');
    const socket = await open(server.port);
    const message = command(0, amfString('connect'), amfNumber(1));
    socket.write(Buffer.concat([handshake(), chunk(message)]));
    expect(await closed(socket)).toBeLessThan(2000);
    expect(await closedFor(registry, 'protocol_error')).toBe(1);
    expect(legit.closedEarly()).toBe(false);
    const chunks: Buffer[] = [];
    const unsubscribe = legit.request.subscribe((data) => chunks.push(data));
    await expect.poll(() => chunks.length, { timeout: 3000 }).toBeGreaterThan(10);
    unsubscribe();
  });

  it('a connect whose AMF number is cut short closes that connection only', async () => {
    const { server, registry } = await startServer();
    const socket = await open(server.port);
    const truncated = Buffer.concat([amfString('connect'), amfNumber(1).subarray(0, 4)]);
    socket.write(Buffer.concat([handshake(), chunk(command(0, truncated))]));
    expect(await closed(socket)).toBeLessThan(2000);
    expect(await closedFor(registry, 'protocol_error')).toBe(1);
  });

  it('a message declared at 16 MiB before publish is refused before anything is allocated for it', async () => {
    const { server, registry } = await startServer();
    const before = process.memoryUsage().arrayBuffers;
    const peers = await Promise.all(Array.from({ length: 12 }, () => open(server.port)));
    for (const socket of peers) {
      // A header announcing the largest length RTMP allows, then a trickle of the body.
      socket.write(
        Buffer.concat([handshake(), chunk(connect('live'), 128, 0xffffff).subarray(0, 40)]),
      );
    }
    await Promise.all(peers.map((socket) => closed(socket)));
    // Unchecked, node-media-server zero-fills 16 MiB per connection: 192 MiB here.
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(32 * 1024 * 1024);
    expect(await closedFor(registry, 'message_size')).toBe(12);
  });

  it('opening more chunk streams than allowed closes the connection', async () => {
    const { server, registry } = await startServer({ maxChunkStreams: 4 });
    const socket = await open(server.port);
    // The first 128-byte chunk of a 4000-byte message on each of six chunk streams, interleaved.
    const firstChunks = [2, 3, 4, 5, 6, 7].map((cid) =>
      chunk({ ...connect('live'), cid, payload: Buffer.alloc(4000) }).subarray(0, 1 + 11 + 128),
    );
    socket.write(Buffer.concat([handshake(), ...firstChunks]));
    await closed(socket);
    expect(await closedFor(registry, 'chunk_streams')).toBe(1);
  });

  it('a chunk size of 0 closes the connection', async () => {
    const { server, registry } = await startServer();
    const socket = await open(server.port);
    socket.write(Buffer.concat([handshake(), chunk(setChunkSize(0)), chunk(connect('live'))]));
    await closed(socket);
    expect(await closedFor(registry, 'chunk_size')).toBe(1);
  });

  it('connections over the per-address and the total limits are closed at accept', async () => {
    const { server, registry } = await startServer({
      maxConnectionsPerAddress: 3,
      maxConnections: 5,
    });
    const admitted = await Promise.all([1, 2, 3].map(() => open(server.port)));
    const fourth = await open(server.port);
    expect(await closed(fourth)).toBeLessThan(1000);
    expect(await refusedFor(registry, 'per_address')).toBe(1);
    await expect.poll(() => server.connections).toBe(3);
    for (const socket of admitted) socket.destroy();
    await expect.poll(() => server.connections).toBe(0);
  });

  it('a peer that stalls in the handshake is closed after the handshake timeout', async () => {
    const { server, registry } = await startServer({ handshakeTimeoutMs: 300 });
    const socket = await open(server.port);
    socket.write(handshake().subarray(0, 700));
    const took = await closed(socket);
    expect(took).toBeGreaterThanOrEqual(250);
    expect(took).toBeLessThan(2000);
    expect(await closedFor(registry, 'handshake_timeout')).toBe(1);
  });

  it('a peer that connects but never publishes is closed after the publish timeout', async () => {
    const { server, registry } = await startServer({ publishTimeoutMs: 400 });
    const socket = await open(server.port);
    socket.write(Buffer.concat([handshake(), chunk(connect('live'))]));
    await closed(socket);
    expect(await closedFor(registry, 'publish_timeout')).toBe(1);
  });

  it('a publisher held back for its key check sends nothing large until accepted', async () => {
    const { server, registry } = await startServer();
    const published = new Promise<PublishRequest>((resolve) =>
      server.events.once('publish', resolve),
    );
    const socket = await open(server.port);
    const keyframe = {
      cid: 6,
      type: 9,
      streamId: 1,
      timestamp: 0,
      payload: Buffer.alloc(200_000, 1),
    };
    socket.write(
      Buffer.concat([
        handshake(),
        chunk(connect('live')),
        ...publishCommands('held').map((message) => chunk(message)),
      ]),
    );
    const request = await published;
    // Sent before the key check ended: it waits in the socket, unparsed, instead of closing it.
    socket.write(chunk(keyframe));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await closedFor(registry, 'message_size')).toBe(0);
    request.accept();
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(socket.destroyed).toBe(false);
    expect(await closedFor(registry, 'message_size')).toBe(0);
  });

  it('logs name no stream key, even for a duplicate publish or a bad stream name', async () => {
    const { server, logLines } = await startServer();
    const key = `sk_${'a'.repeat(16)}_${'b'.repeat(64)}`;
    await legitimatePublisher(server, key);
    const duplicate = await open(server.port);
    duplicate.write(
      Buffer.concat([
        handshake(),
        chunk(connect('live')),
        ...publishCommands(key).map((message) => chunk(message)),
      ]),
    );
    await closed(duplicate);
    const badName = await open(server.port);
    badName.write(
      Buffer.concat([
        handshake(),
        chunk(connect('live')),
        ...publishCommands(`${key}/../x y`).map((message) => chunk(message)),
      ]),
    );
    await closed(badName);
    const text = logLines.join('');
    expect(text).toContain('second publisher refused');
    expect(text).not.toContain(key);
    expect(text).not.toContain('b'.repeat(64));
  });
});

describe('redactStreamNames()', () => {
  it.each([
    ['RTMP session x start push /live/sk_abc', 'RTMP session x start push /live/<name>'],
    [
      'streamPath=/live/secret already has a publisher',
      'streamPath=<name> already has a publisher',
    ],
    [
      'invalid stream path characters: app=live, name=k y',
      'invalid stream path characters: app=live, name=<name>',
    ],
  ])('redactStreamNames(%j) hides the stream name', (text, expected) => {
    expect(redactStreamNames(text)).toBe(expected);
  });
});
