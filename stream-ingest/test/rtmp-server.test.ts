import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '@hearth/server-common';
import { DEFAULT_RTMP_LIMITS } from '../src/rtmp-guard';
import { RtmpServer, type PublishRequest } from '../src/rtmp-server';

const run = promisify(execFile);
const logger = createLogger('rtmp-test', { level: 'silent' });

let server: RtmpServer | undefined;
let tempDir: string | undefined;

afterEach(async () => {
  await server?.stop();
  server = undefined;
  if (tempDir) fs.rmSync(tempDir, { recursive: true, force: true });
  tempDir = undefined;
});

// Publishes a few seconds of synthetic video the way OBS would.
function publish(url: string, seconds = 3) {
  return spawn(
    'ffmpeg',
    [
      '-hide_banner',
      '-loglevel',
      'error',
      '-re',
      '-f',
      'lavfi',
      '-i',
      'testsrc2=size=640x360:rate=30',
      '-t',
      String(seconds),
      '-c:v',
      'libx264',
      '-preset',
      'ultrafast',
      '-g',
      '60',
      '-f',
      'flv',
      url,
    ],
    { stdio: 'ignore' },
  );
}

function exitCode(child: ReturnType<typeof spawn>): Promise<number | null> {
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

// A certificate for 127.0.0.1 in a temporary folder, removed after the test.
async function selfSignedCertificate(): Promise<{ certPath: string; keyPath: string }> {
  tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-rtmps-'));
  const certPath = path.join(tempDir, 'cert.pem');
  const keyPath = path.join(tempDir, 'key.pem');
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=127.0.0.1',
    '-keyout',
    keyPath,
    '-out',
    certPath,
  ]);
  return { certPath, keyPath };
}

// Accepts the publish the way the ingest does once the key checks out, unless told not to.
function nextPublish(target: RtmpServer, { accept = true } = {}): Promise<PublishRequest> {
  return new Promise((resolve) =>
    target.events.once('publish', (request) => {
      if (accept) request.accept();
      resolve(request);
    }),
  );
}

async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as net.AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

describe('RtmpServer', () => {
  it('emits publish with the stream key, the announced video, and a prompt close signal', async () => {
    server = await RtmpServer.start({ host: '127.0.0.1', port: 0, logger });
    const published = nextPublish(server);
    const publisher = publish(`rtmp://127.0.0.1:${server.port}/live/key_1`);
    const request = await published;
    expect(request).toMatchObject({ app: 'live', streamKey: 'key_1' });
    await expect.poll(() => request.videoInfo().width, { timeout: 3000 }).toBe(640);
    expect(request.videoInfo()).toMatchObject({ height: 360, fps: 30 });
    const closed = new Promise<number>((resolve) => request.onClosed(() => resolve(Date.now())));
    expect(await exitCode(publisher)).toBe(0);
    const publisherExitedAt = Date.now();
    // The close arrives with the publisher's disconnect, not after node-media-server's 30 s grace.
    expect((await closed) - publisherExitedAt).toBeLessThan(1000);
  });

  it('publishes over RTMPS when a certificate is configured', async () => {
    const { certPath, keyPath } = await selfSignedCertificate();
    const rtmpsPort = await freePort();
    server = await RtmpServer.start({
      host: '127.0.0.1',
      port: 0,
      rtmps: { port: rtmpsPort, certPath, keyPath },
      logger,
    });
    expect(server.rtmpsPort).toBe(rtmpsPort);
    const published = nextPublish(server);
    const publisher = publish(`rtmps://127.0.0.1:${rtmpsPort}/live/secure_key`, 2);
    expect((await published).streamKey).toBe('secure_key');
    expect(await exitCode(publisher)).toBe(0);
  });

  it('refuses a second publisher on a live stream path and leaves the first publishing', async () => {
    server = await RtmpServer.start({ host: '127.0.0.1', port: 0, logger });
    const duplicates: unknown[] = [];
    server.events.on('duplicatePublish', (info) => duplicates.push(info));
    const published = nextPublish(server);
    const first = publish(`rtmp://127.0.0.1:${server.port}/live/one`, 6);
    const request = await published;
    let firstClosed = false;
    request.onClosed(() => {
      firstClosed = true;
    });
    const second = publish(`rtmp://127.0.0.1:${server.port}/live/one`, 2);
    expect(await exitCode(second)).not.toBe(0);
    expect(duplicates).toHaveLength(1);
    expect(firstClosed).toBe(false);
    expect(await exitCode(first)).toBe(0);
  });

  it('refuses every RTMP player; subscribe() feeds the accepted stream as FLV that ffprobe reads', async () => {
    server = await RtmpServer.start({ host: '127.0.0.1', port: 0, logger });
    const published = nextPublish(server);
    const publisher = publish(`rtmp://127.0.0.1:${server.port}/live/watched`, 6);
    const request = await published;
    const player = spawn(
      'ffmpeg',
      ['-loglevel', 'error', '-i', `rtmp://127.0.0.1:${server.port}/live/watched`, '-t', '1'],
      { stdio: 'ignore' },
    );
    expect(await exitCode(player)).not.toBe(0);
    const chunks: Buffer[] = [];
    const unsubscribe = request.subscribe((chunk) => chunks.push(chunk));
    await expect
      .poll(() => Buffer.concat(chunks).length, { timeout: 5000 })
      .toBeGreaterThan(50_000);
    unsubscribe();
    tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-flv-'));
    const file = path.join(tempDir, 'feed.flv');
    fs.writeFileSync(file, Buffer.concat(chunks));
    const { stdout } = await run('ffprobe', [
      '-v',
      'error',
      '-select_streams',
      'v:0',
      '-show_entries',
      'stream=codec_name,width,height',
      '-of',
      'csv=p=0',
      file,
    ]);
    expect(stdout.trim()).toBe('h264,640,360');
    publisher.kill('SIGINT');
    await exitCode(publisher);
  });

  it('closes a publisher that is never accepted once the publish timeout passes', async () => {
    server = await RtmpServer.start({
      host: '127.0.0.1',
      port: 0,
      logger,
      limits: { ...DEFAULT_RTMP_LIMITS, publishTimeoutMs: 500 },
    });
    const published = nextPublish(server, { accept: false });
    const publisher = publish(`rtmp://127.0.0.1:${server.port}/live/slow`, 6);
    const request = await published;
    const closed = new Promise<void>((resolve) => request.onClosed(resolve));
    await closed;
    expect(request.videoInfo().width).toBe(0);
    expect(await exitCode(publisher)).not.toBe(0);
  });

  it('an RTMPS peer that never finishes its TLS handshake is closed after the handshake timeout', async () => {
    const { certPath, keyPath } = await selfSignedCertificate();
    const rtmpsPort = await freePort();
    server = await RtmpServer.start({
      host: '127.0.0.1',
      port: 0,
      rtmps: { port: rtmpsPort, certPath, keyPath },
      logger,
      limits: { ...DEFAULT_RTMP_LIMITS, handshakeTimeoutMs: 300 },
    });
    const silent = net.connect(rtmpsPort, '127.0.0.1');
    silent.on('error', () => undefined);
    silent.resume();
    const started = Date.now();
    await new Promise((resolve) => silent.once('close', resolve));
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('start() on a taken port fails with a clear error instead of exiting the process', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address() as net.AddressInfo;
    try {
      await expect(RtmpServer.start({ host: '127.0.0.1', port, logger })).rejects.toThrow(
        `RTMP port 127.0.0.1:${port} is already in use`,
      );
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });
});
