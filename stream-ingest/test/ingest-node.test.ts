import { randomBytes, randomUUID } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import type { BridgeOffer } from '@hearth/protocol';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { startNginxEdge, type NginxProcess } from '@hearth/cdn-config';
import { exited, publishLikeObs } from '../../e2e/support/obs';
import { eventually } from '../../e2e/support/wait';
import { ingestConfig } from '../src/config';
import { IngestNode } from '../src/ingest-node';
import { LocalStorage } from '../src/storage/local-storage';
import { FakeControlPlane } from './support/fake-control-plane';
import { meanVolumeDb, withInit } from './support/ffmpeg-fixtures';
import { SENT_OFFER, sendRtp } from './support/rtp-sender';
import { RtmpFuzzer, fuzzSeed, recordPublisherSession, runRtmpFuzz } from './support/rtmp-fuzz';
import { TEST_BUCKET, TestS3Server } from './support/s3rver';

let node: IngestNode | undefined;
let s3: TestS3Server | undefined;
let edge: NginxProcess | undefined;
const publishers: ChildProcess[] = [];
const tempDirs: string[] = [];

afterEach(async () => {
  for (const publisher of publishers.splice(0)) publisher.kill('SIGKILL');
  await node?.stop();
  await edge?.stop();
  await s3?.close();
  node = undefined;
  edge = undefined;
  s3 = undefined;
  for (const dir of tempDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

function capturedLogger(): { logger: pino.Logger; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(line: Buffer, _encoding, done) {
      lines.push(line.toString());
      done();
    },
  });
  return { logger: pino({ level: 'trace' }, sink), lines };
}

function streamKey(): string {
  return `sk_${randomBytes(8).toString('hex')}_${randomBytes(32).toString('hex')}`;
}

// Every process's command line, except the ones named.
function commandLines(
  except: (number | undefined)[],
): { pid: number; argv: string; cwd: string }[] {
  const found: { pid: number; argv: string; cwd: string }[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || except.includes(Number(entry))) continue;
    try {
      const argv = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ');
      found.push({ pid: Number(entry), argv, cwd: fs.readlinkSync(`/proc/${entry}/cwd`) });
    } catch {
      // The process ended while the list was read.
    }
  }
  return found;
}

function filesUnder(root: string): string[] {
  return fs.readdirSync(root, { recursive: true, encoding: 'utf8' });
}

describe('IngestNode', () => {
  it('the stream key reaches no log line, metric, child argv, object name or playback URL', async () => {
    const { logger, lines } = capturedLogger();
    const registry = new Registry();
    const controlPlane = new FakeControlPlane();
    const key = streamKey();
    const secret = key.split('_')[2]!;
    controlPlane.addKey(key, 'keyed');
    const storageDir = tempDir('hearth-hls-');
    const workDir = tempDir('hearth-work-');
    node = await IngestNode.start({
      config: ingestConfig({ rtmpPort: '0', workDir }),
      controlPlane,
      storage: new LocalStorage(storageDir),
      logger,
      registry,
    });
    const publisher = publishLikeObs({
      url: `rtmp://127.0.0.1:${node.rtmp.port}/live/${key}`,
      seconds: 6,
      width: 640,
      height: 360,
    });
    publishers.push(publisher);
    await eventually(
      async () => fs.existsSync(path.join(storageDir, 'live/keyed/master.m3u8')),
      15_000,
      'the master playlist',
    );
    // While the stream is transcoded: the ingest's ffmpeg runs (found by its working directory,
    // in the work folder), and no process but the publisher itself holds the key in its argv.
    const others = commandLines([publisher.pid, process.pid]);
    expect(others.some(({ argv, cwd }) => argv.includes('ffmpeg') && cwd.startsWith(workDir))).toBe(
      true,
    );
    expect(others.filter(({ argv }) => argv.includes(secret))).toEqual([]);
    expect(await exited(publisher)).toBe(0);
    await eventually(
      async () => controlPlane.reports.some((report) => report.kind === 'ended'),
      15_000,
      'the end of the stream',
    );
    const metrics = await registry.metrics();
    expect(metrics).toContain('ingest_rtmp_connections');
    expect(metrics).toMatch(/^ingest_transcode_speed_min_ratio \d/m);
    expect(metrics).not.toContain(secret);
    // Nor the channel: whoever reads /metrics learns no channel names.
    expect(metrics).not.toContain('keyed');
    expect(lines.length).toBeGreaterThan(20);
    expect(lines.join('')).not.toContain(secret);
    const names = filesUnder(storageDir);
    expect(names.some((name) => name.endsWith('.m4s'))).toBe(true);
    expect(names.filter((name) => name.includes(secret))).toEqual([]);
    const master = fs.readFileSync(path.join(storageDir, 'live/keyed/master.m3u8'), 'utf8');
    expect(master).not.toContain(secret);
  }, 45_000);

  it('S3 down when the publisher leaves: the stream ends at once, a republish is a new stream at once, and the backlog drains later without touching the new playlists', async () => {
    const { logger } = capturedLogger();
    const controlPlane = new FakeControlPlane();
    const key = streamKey();
    controlPlane.addKey(key, 'outage');
    s3 = await TestS3Server.start();
    node = await IngestNode.start({
      config: ingestConfig({ rtmpPort: '0', workDir: tempDir('hearth-work-') }),
      controlPlane,
      storage: s3.storage(),
      logger,
      registry: new Registry(),
    });
    const url = `rtmp://127.0.0.1:${node.rtmp.port}/live/${key}`;
    const first = publishLikeObs({ url, seconds: 8, width: 640, height: 360 });
    publishers.push(first);
    const playlistUrl = `${s3.endpoint}/${TEST_BUCKET}/live/outage/360p30/index.m3u8`;
    await eventually(async () => (await fetch(playlistUrl)).ok, 15_000, 'the first stream');
    const firstId = node.liveStreamIds[0]!;
    const listed = async (streamId: string) =>
      (
        await s3!
          .client()
          .send(new ListObjectsV2Command({ Bucket: TEST_BUCKET, Prefix: 'live/outage/360p30/' }))
      ).Contents?.filter((object) => object.Key!.includes(streamId)).length ?? 0;
    const uploadedBeforeOutage = await listed(firstId);
    await s3.stop();
    expect(await exited(first)).toBe(0);
    const leftAt = Date.now();
    await eventually(
      async () => controlPlane.reports.some((r) => r.kind === 'ended' && r.streamId === firstId),
      5000,
      'the end reported while S3 is down',
    );
    const endedAfterMs = Date.now() - leftAt;
    const second = publishLikeObs({ url, seconds: 12, width: 640, height: 360 });
    publishers.push(second);
    await eventually(
      async () => node!.liveStreamIds.length === 1 && node!.liveStreamIds[0] !== firstId,
      10_000,
      'the republish accepted while S3 is down',
    );
    const secondId = node.liveStreamIds[0]!;
    await s3.resume();
    // The first stream's outage segments reach S3 in the background...
    await eventually(async () => (await listed(firstId)) > uploadedBeforeOutage, 20_000, 'drain');
    // ...while the channel's live playlist belongs to the new stream and never ends.
    await eventually(
      async () => (await (await fetch(playlistUrl)).text()).includes(secondId),
      20_000,
      'the new stream in the playlist',
    );
    for (let check = 0; check < 5; check++) {
      const text = await (await fetch(playlistUrl)).text();
      expect(text).not.toContain(firstId);
      expect(text).not.toContain('#EXT-X-ENDLIST');
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    expect(endedAfterMs).toBeLessThan(3000);
  }, 90_000);

  it('10,000 malformed RTMP messages over many connections: the live stream keeps advancing on the edge, memory stays bounded, every hostile connection is closed', async () => {
    const { logger } = capturedLogger();
    const controlPlane = new FakeControlPlane();
    const key = streamKey();
    controlPlane.addKey(key, 'fuzzed');
    controlPlane.addKey('recorded_session', 'recorded');
    s3 = await TestS3Server.start();
    edge = await startNginxEdge({ originUrl: s3.endpoint, bucket: TEST_BUCKET });
    node = await IngestNode.start({
      config: ingestConfig({
        rtmpPort: '0',
        workDir: tempDir('hearth-work-'),
        rtmpHandshakeTimeoutMs: '1000',
        rtmpPublishTimeoutMs: '1500',
        // A fuzzed connection can replay the recorded publish intact, under its valid key, and
        // then go quiet: like any silent publisher it is closed when it idles out.
        rtmpIdleTimeoutMs: '3000',
      }),
      controlPlane,
      storage: s3.storage(),
      logger,
      registry: new Registry(),
    });
    const port = node.rtmp.port;
    const session = await recordPublisherSession(port, 'recorded_session');
    expect(session.length).toBeGreaterThan(20);
    await eventually(
      async () => node!.liveStreamIds.length === 0,
      10_000,
      'the recorded stream to end',
    );

    const publisher = publishLikeObs({
      url: `rtmp://127.0.0.1:${port}/live/${key}`,
      seconds: 90,
      width: 640,
      height: 360,
    });
    publishers.push(publisher);
    const playlistUrl = `${edge.url}/live/fuzzed/360p30/index.m3u8`;
    const lastSegment = async () => {
      const response = await fetch(playlistUrl);
      if (!response.ok) return undefined;
      return (await response.text())
        .split('\n')
        .filter((line) => line.endsWith('.m4s'))
        .at(-1);
    };
    await eventually(async () => (await lastSegment()) !== undefined, 20_000, 'the live stream');

    // Watch the edge and the memory while the fuzzer runs.
    const segmentTimes: number[] = [];
    let seen: string | undefined;
    let peakRss = 0;
    const baselineRss = process.memoryUsage().rss;
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const segment = await lastSegment();
        if (segment !== undefined && segment !== seen) {
          seen = segment;
          segmentTimes.push(Date.now());
        }
        peakRss = Math.max(peakRss, process.memoryUsage().rss);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    })();
    const seed = fuzzSeed();
    const report = await runRtmpFuzz({
      port,
      fuzzer: new RtmpFuzzer(seed, session),
      connections: 400,
      messagesPerConnection: 36,
      concurrency: 12,
      // Beyond the longest of the node's timeouts (idle, 3 s), with room for a loaded machine.
      closeWaitMs: 6000,
    });
    // Two more segments after the fuzzing show the stream outlived it.
    const segmentsAtEnd = segmentTimes.length;
    await eventually(
      async () => segmentTimes.length >= segmentsAtEnd + 2,
      10_000,
      'a segment after the fuzz',
    );
    watching = false;
    await watcher;

    const context = `seed ${seed}: ${JSON.stringify(report)}`;
    expect(report.malformed, context).toBeGreaterThanOrEqual(10_000);
    expect(report.leftOpen, context).toBe(0);
    await expect.poll(() => node!.rtmp.connections, { timeout: 5000 }).toBe(1);
    // A replayed publish that idled out ends its stream once its ffmpeg has finished.
    await expect.poll(() => node!.liveStreamIds.length, { timeout: 10_000 }).toBe(1);
    // Segments are 2 s; the edge caches a live playlist for 1 s and it is polled every 0.25 s.
    const gaps = segmentTimes.slice(1).map((time, index) => time - segmentTimes[index]!);
    expect(Math.max(...gaps), context).toBeLessThan(2 * 2000 + 1250);
    expect(segmentTimes.length).toBeGreaterThanOrEqual(3);
    // Stated bound: the fuzz adds less than 150 MiB to the resident set of this process.
    expect(peakRss - baselineRss, context).toBeLessThan(150 * 1024 * 1024);
  }, 120_000);
});

const MUTED_MICROPHONE_SSRC = 3333;

describe('IngestNode share bridges', () => {
  it('startBridge() receives RTP on the answered ports into the ladder (no rung above the share), mixing a muted microphone in, and stopBridge() ends the playlists', async () => {
    const controlPlane = new FakeControlPlane();
    const storageDir = tempDir('hearth-hls-');
    node = await IngestNode.start({
      config: ingestConfig({
        rtmpPort: '0',
        workDir: tempDir('hearth-work-'),
        segmentSeconds: '1',
      }),
      controlPlane,
      storage: new LocalStorage(storageDir),
      logger: capturedLogger().logger,
      registry: new Registry(),
    });
    const grant = {
      streamId: randomUUID(),
      channel: 'shared',
      keyId: 'bridge',
      storagePrefix: 'live/shared',
    };
    // The sharer's microphone is muted: it never sends a packet, and the share's audio is mixed
    // with the silence the receiver makes for it.
    // The sharer captures 854x480 in a channel that allows 1080p.
    const offer: BridgeOffer = {
      capture: { width: 854, height: 480, fps: 30 },
      streams: [
        ...SENT_OFFER.streams,
        { ...SENT_OFFER.streams[1]!, role: 'microphone', ssrc: MUTED_MICROPHONE_SSRC },
      ],
    };
    const answer = await node.startBridge({
      grant,
      offer,
      sourceAddress: '127.0.0.1',
      source: { width: 1920, height: 1080, fps: 30 },
    });
    expect(answer.ip).toBe('127.0.0.1');
    expect(answer.ports).toHaveLength(3);
    await expect(
      node.startBridge({
        grant,
        offer: SENT_OFFER,
        sourceAddress: '127.0.0.1',
        source: { width: 854, height: 480, fps: 30 },
      }),
    ).rejects.toMatchObject({ code: 'conflict' });
    const cleanup: Array<() => unknown> = [];
    const sent = sendRtp(
      answer.ports,
      ['-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=30'],
      6,
      cleanup,
    );
    await eventually(
      async () => controlPlane.reports.some((report) => report.kind === 'live'),
      20_000,
      'the bridged stream live',
    );
    expect(node.liveStreamIds).toEqual([grant.streamId]);
    const master = fs.readFileSync(path.join(storageDir, 'live/shared/master.m3u8'), 'utf8');
    // A 1280x720 picture from a share that reported an 854x480 capture gets no 720p rung.
    expect(master).toContain('RESOLUTION=854x480');
    expect(master).not.toContain('RESOLUTION=1280x720');
    await sent;
    await node.stopBridge(grant.streamId, 'share ended');
    for (const step of cleanup) step();
    expect(controlPlane.reports.map((report) => report.kind)).toEqual(['started', 'live', 'ended']);
    expect(controlPlane.reports.at(-1)).toMatchObject({ reason: 'share ended' });
    const media = fs.readFileSync(path.join(storageDir, 'live/shared/480p30/index.m3u8'), 'utf8');
    expect(media.trimEnd().endsWith('#EXT-X-ENDLIST')).toBe(true);
    expect(node.liveStreamIds).toEqual([]);
    // The share's 440 Hz tone is in the mix (silence measures -91 dB). The loudest segment is
    // measured: a sender that a loaded machine slows down leaves gaps the receiver fills with
    // silence, and a segment may fall in one.
    const folder = path.join(storageDir, 'live/shared/480p30');
    // Each segment with the init segment of its ffmpeg run: the EXT-X-MAP above it.
    const probes: string[] = [];
    let init = '';
    for (const line of media.split('\n')) {
      init = /^#EXT-X-MAP:URI="([^"]+)"/.exec(line)?.[1] ?? init;
      if (line.endsWith('.m4s'))
        probes.push(withInit(path.join(folder, init), path.join(folder, line)));
    }
    const volumes = await Promise.all(probes.map((probe) => meanVolumeDb(probe)));
    expect(Math.max(...volumes), `mean volumes ${volumes.join(', ')} dB`).toBeGreaterThan(-40);
  }, 60_000);

  it('stop() right after a bridge was told to stop waits for that bridge’s ffmpeg to exit', async () => {
    const controlPlane = new FakeControlPlane();
    const workDir = tempDir('hearth-work-');
    node = await IngestNode.start({
      config: ingestConfig({ rtmpPort: '0', workDir, segmentSeconds: '1' }),
      controlPlane,
      storage: new LocalStorage(tempDir('hearth-hls-')),
      logger: capturedLogger().logger,
      registry: new Registry(),
    });
    const grant = {
      streamId: randomUUID(),
      channel: 'shared',
      keyId: 'bridge',
      storagePrefix: 'live/shared',
    };
    const answer = await node.startBridge({
      grant,
      offer: SENT_OFFER,
      sourceAddress: '127.0.0.1',
      source: { width: 854, height: 480, fps: 30 },
    });
    const cleanup: Array<() => unknown> = [];
    void sendRtp(answer.ports, ['-f', 'lavfi', '-i', 'testsrc2=size=854x480:rate=30'], 20, cleanup);
    await eventually(
      async () => controlPlane.reports.some((report) => report.kind === 'live'),
      20_000,
      'the bridged stream live',
    );
    const ffmpegs = () => processesIn(path.join(workDir, grant.streamId));
    expect(ffmpegs().length).toBe(1);
    void node.stopBridge(grant.streamId, 'share ended');
    await node.stop();
    node = undefined;
    for (const step of cleanup) step();
    expect(ffmpegs()).toEqual([]);
  }, 60_000);
});

// Pids of the processes whose command line names `text`.
// Processes working in a folder under `folder`: a stream's ffmpeg works in its run folder.
function processesIn(folder: string): number[] {
  return fs.readdirSync('/proc').flatMap((entry) => {
    if (!/^\d+$/.test(entry)) return [];
    try {
      return fs.readlinkSync(`/proc/${entry}/cwd`).startsWith(folder) ? [Number(entry)] : [];
    } catch {
      return [];
    }
  });
}
