// Fault scenarios of the live-stream path: the RTMP fuzz against an ingest node process, ffmpeg
// killed mid-stream, and an ingest node process killed behind the balancer.
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startNginxEdge, type NginxProcess } from '@hearth/cdn-config';
import { startTestApi, type TestApi } from '../../api/test/support/server';
import { IngestNodeProcess } from '../../e2e/support/ingest-node';
import { ingestNodes, liveStreams, startIngestCluster } from '../../e2e/support/ingest-cluster';
import { exited, publishLikeObs } from '../../e2e/support/obs';
import {
  RtmpFuzzer,
  fuzzSeed,
  recordPublisherSession,
  runRtmpFuzz,
} from '../../stream-ingest/test/support/rtmp-fuzz';
import { TEST_BUCKET, TestS3Server } from '../../stream-ingest/test/support/s3rver';
import { residentKiB } from '../../voice-sfu/test/support/churn';
import { seconds, sleep, timeUntil, type FaultRow, type FaultScenario } from './row';

const CLUSTER_SECRET = 'faults-ingest-secret-0123456789abcdef0123456789';
// The rendition a 640x360 source gets; segments are 2 s.
const RENDITION = '360p30';
const SEGMENT_MS = 2000;
// Stated bound on what the fuzz may add to the ingest process's resident set.
const FUZZ_RSS_BOUND_MIB = 150;

/** Watches a live playlist on the edge and notes when each new last segment first appears. */
class EdgeWatcher {
  /** Each new last segment and when it was first seen. */
  readonly arrivals: { uri: string; at: number }[] = [];
  /** The playlist marked a discontinuity at some point. */
  discontinuity = false;
  readonly #url: string;
  #running = true;
  readonly #loop: Promise<void>;

  constructor(url: string) {
    this.#url = url;
    this.#loop = this.#watch();
  }

  /** The segment URIs of the playlist as now served, or [] when it is missing. */
  async segments(): Promise<string[]> {
    const response = await fetch(this.#url).catch(() => undefined);
    if (!response?.ok) return [];
    const text = await response.text();
    if (text.includes('#EXT-X-DISCONTINUITY')) this.discontinuity = true;
    return text.split('\n').filter((line) => line.endsWith('.m4s'));
  }

  /** Largest time between two arrivals after `since` (performance.now() time). */
  maxGapSince(since: number): number {
    const times = this.arrivals.filter(({ at }) => at >= since).map(({ at }) => at);
    return Math.max(0, ...times.slice(1).map((time, index) => time - times[index]!));
  }

  /** Stops watching. */
  async stop(): Promise<void> {
    this.#running = false;
    await this.#loop;
  }

  async #watch(): Promise<void> {
    while (this.#running) {
      const last = (await this.segments()).at(-1);
      if (last !== undefined && last !== this.arrivals.at(-1)?.uri) {
        this.arrivals.push({ uri: last, at: performance.now() });
      }
      await sleep(100);
    }
  }
}

// The ingest node's ffmpeg children, found by their parent process id.
function ffmpegChildren(parentPid: number): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const [, comm, rest] = /^\d+ \((.*)\) (.*)$/.exec(stat.trim()) ?? [];
      const ppid = Number(rest?.split(' ')[1]);
      if (comm === 'ffmpeg' && ppid === parentPid) pids.push(Number(entry));
    } catch {
      // The process ended while the list was read.
    }
  }
  return pids;
}

// Open RTMP connections as the node's own metric counts them.
async function rtmpConnections(node: IngestNodeProcess): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${node.httpPort}/metrics`)).text();
  const match = /^ingest_rtmp_connections(?:\{[^}]*\})? (\d+)/m.exec(text);
  return Number(match?.[1] ?? Number.NaN);
}

/** An api, S3, an nginx edge, and one ingest node process registered with the api. */
interface StreamingStack {
  api: TestApi;
  s3: TestS3Server;
  edge: NginxProcess;
  node: IngestNodeProcess;
  /** The node's work folder, where segments wait for upload (its spool). */
  workDir: string;
  close(): Promise<void>;
}

async function startStreamingStack(env: Record<string, string> = {}): Promise<StreamingStack> {
  const s3 = await TestS3Server.start();
  const edge = await startNginxEdge({ originUrl: s3.endpoint, bucket: TEST_BUCKET });
  const api = await startTestApi({
    api: { embeddedVoice: 'false', clusterSecret: CLUSTER_SECRET },
    streamUrls: { rtmpUrl: 'rtmp://127.0.0.1:1935/live', playbackBaseUrl: edge.url },
  });
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-faults-'));
  const node = await IngestNodeProcess.start({
    nodeId: 'ingest-fuzzed',
    apiUrl: api.baseUrl,
    clusterSecret: CLUSTER_SECRET,
    workDir,
    env: {
      ...s3.ingestEnv(),
      // As in the fuzz test: hostile connections that stall are closed sooner than by default.
      INGEST_RTMP_HANDSHAKE_TIMEOUT_MS: '1000',
      INGEST_RTMP_PUBLISH_TIMEOUT_MS: '1500',
      ...env,
    },
  });
  await timeUntil(
    async () => (await ingestNodes(api)).some((n) => n.id === node.nodeId && n.status === 'up'),
    15_000,
    'the ingest node registered',
  );
  return {
    api,
    s3,
    edge,
    node,
    workDir,
    async close() {
      node.kill('SIGKILL');
      await node.exited();
      await api.close();
      await edge.stop();
      await s3.close();
      fs.rmSync(workDir, { recursive: true, force: true });
    },
  };
}

const rtmpAndFfmpeg: FaultScenario = {
  id: 'rtmp',
  async run() {
    const stack = await startStreamingStack();
    const { api, node, edge } = stack;
    const publishers: ChildProcess[] = [];
    let watcher: EdgeWatcher | undefined;
    try {
      console.log('   recording a publisher session');
      const recorded = await api.streams.createKey('recorded');
      const session = await recordPublisherSession(node.rtmpPort, recorded.streamKey);
      await timeUntil(
        async () => (await liveStreams(api)).length === 0,
        15_000,
        'the recorded stream ended',
      );
      console.log('   recorded; starting the legitimate stream');
      const fuzzed = await api.streams.createKey('fuzzed');
      const publisher = publishLikeObs({
        url: `rtmp://127.0.0.1:${node.rtmpPort}/live/${fuzzed.streamKey}`,
        seconds: 180,
        width: 640,
        height: 360,
      });
      publishers.push(publisher);
      watcher = new EdgeWatcher(`${edge.url}/live/fuzzed/${RENDITION}/index.m3u8`);
      await timeUntil(async () => watcher!.arrivals.length >= 2, 30_000, 'the live stream');

      // 1. The fuzz, with the ingest's memory sampled throughout.
      const baselineKiB = residentKiB(node.pid);
      let peakKiB = baselineKiB;
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          peakKiB = Math.max(peakKiB, residentKiB(node.pid));
          await sleep(100);
        }
      })();
      const seed = fuzzSeed();
      console.log(`   fuzzing (seed ${seed})`);
      const fuzzStart = performance.now();
      const report = await runRtmpFuzz({
        port: node.rtmpPort,
        fuzzer: new RtmpFuzzer(seed, session),
        connections: 400,
        messagesPerConnection: 36,
        concurrency: 12,
        closeWaitMs: 3000,
      });
      const arrivalsAtEnd = watcher.arrivals.length;
      await timeUntil(
        async () => watcher!.arrivals.length >= arrivalsAtEnd + 2,
        15_000,
        'segments after the fuzz',
      );
      sampling = false;
      await sampler;
      const fuzzGap = watcher.maxGapSince(fuzzStart);
      const openAfter = await timeUntil(
        async () => (await rtmpConnections(node)) === 1,
        10_000,
        'only the publisher connected',
      )
        .then(() => 1)
        .catch(() => rtmpConnections(node));
      const alive = (await fetch(`http://127.0.0.1:${node.httpPort}/health`)).ok;
      const growthMiB = (peakKiB - baselineKiB) / 1024;
      const fuzzFigures = {
        seed,
        ...report,
        durationMs: Math.round(performance.now() - fuzzStart),
        maxSegmentGapMs: Math.round(fuzzGap),
        rssBaselineMiB: Math.round(baselineKiB / 102.4) / 10,
        rssPeakMiB: Math.round(peakKiB / 102.4) / 10,
        rtmpConnectionsAfter: openAfter,
        nodeAlive: alive,
      };
      const rows: FaultRow[] = [
        {
          scenario: 'RTMP fuzz against an ingest node process',
          done: `${report.malformed} malformed or truncated RTMP messages over ${report.connections} connections (12 at a time, seed ${seed}, mutated from a recorded ffmpeg session), while a 640x360 stream plays through the nginx edge`,
          held: `node alive and registered; max gap between new segments on the edge ${seconds(fuzzGap)} (segments are 2 s); ingest RSS ${fuzzFigures.rssBaselineMiB} → peak ${fuzzFigures.rssPeakMiB} MiB (bound: +${FUZZ_RSS_BOUND_MIB} MiB); hostile connections left open ${report.leftOpen} (${report.closedByServer} closed by the node, ${report.closedByClient} cut by the fuzzer); RTMP connections afterwards ${openAfter} (the publisher)`,
          recovery: 'none needed',
          dataLost: 'none',
          passed:
            alive &&
            report.malformed >= 10_000 &&
            report.leftOpen === 0 &&
            openAfter === 1 &&
            fuzzGap < 2 * SEGMENT_MS + 1250 &&
            growthMiB < FUZZ_RSS_BOUND_MIB,
          figures: fuzzFigures,
        },
      ];

      // 2. The same stream's ffmpeg killed.
      const [ffmpeg] = ffmpegChildren(node.pid);
      if (ffmpeg === undefined) throw new Error('no ffmpeg under the ingest node');
      const lastBefore = watcher.arrivals.at(-1)!;
      const killedAt = performance.now();
      process.kill(ffmpeg, 'SIGKILL');
      await timeUntil(
        async () => watcher!.arrivals.length >= watcher!.arrivals.indexOf(lastBefore) + 3,
        30_000,
        'segments after the kill',
      );
      const firstAfter = watcher.arrivals[watcher.arrivals.indexOf(lastBefore) + 1]!;
      const segmentsNow = await watcher.segments();
      const restarted = ffmpegChildren(node.pid);
      const gapMs = firstAfter.at - lastBefore.at;
      const ffmpegFigures = {
        killedPid: ffmpeg,
        restartedPids: restarted,
        lastSegmentBeforeKillMsBefore: Math.round(killedAt - lastBefore.at),
        firstSegmentAfterKillMs: Math.round(firstAfter.at - killedAt),
        edgeGapMs: Math.round(gapMs),
        discontinuity: watcher.discontinuity,
        beforeStillListed: segmentsNow.includes(lastBefore.uri),
      };
      rows.push({
        scenario: 'ffmpeg killed mid-stream',
        done: "SIGKILL of the stream's ffmpeg (the ingest node restarts it; the publisher stays connected)",
        held: `a new ffmpeg runs (${restarted.length}); the playlist on the edge marks #EXT-X-DISCONTINUITY: ${watcher.discontinuity ? 'yes' : 'NO'}; the segment before the kill is ${ffmpegFigures.beforeStillListed ? 'still listed' : 'NOT listed'}`,
        recovery: `gap between segments on the edge around the kill ${seconds(gapMs)} (first new segment ${seconds(firstAfter.at - killedAt)} after the kill)`,
        dataLost: `no segment already written; the source from the kill until the new ffmpeg reads it (under ${seconds(firstAfter.at - killedAt)}) is not transcoded`,
        passed:
          restarted.length === 1 &&
          !restarted.includes(ffmpeg) &&
          watcher.discontinuity &&
          ffmpegFigures.beforeStillListed,
        figures: ffmpegFigures,
      });
      return rows;
    } finally {
      await watcher?.stop();
      for (const publisher of publishers) publisher.kill('SIGKILL');
      await stack.close();
    }
  },
};

const ingestNodeKilled: FaultScenario = {
  id: 'ingest-node',
  async run() {
    const cleanups: (() => Promise<unknown>)[] = [];
    const publishers: ChildProcess[] = [];
    let watcher: EdgeWatcher | undefined;
    try {
      const { apis, nodes, balancer, s3 } = await startIngestCluster(cleanups);
      const edge = await startNginxEdge({ originUrl: s3.endpoint, bucket: TEST_BUCKET });
      cleanups.push(() => edge.stop());
      const [first, second] = apis;
      const key = await first.streams.createKey('crash');
      const publish = () => {
        const publisher = publishLikeObs({
          url: `rtmp://127.0.0.1:${balancer.layout.port}/live/${key.streamKey}`,
          seconds: 120,
          width: 640,
          height: 360,
        });
        publishers.push(publisher);
        return publisher;
      };
      const before = publish();
      await timeUntil(
        async () => (await liveStreams(second)).some((s) => s.state === 'live'),
        30_000,
        'the stream live',
      );
      const { stream: running, playbackUrl } = await second.streams.channelStream('crash');
      // Viewers play the playback URL's path through the edge.
      const variantUrl = `${edge.url}${new URL(playbackUrl).pathname.replace('master.m3u8', `${RENDITION}/index.m3u8`)}`;
      watcher = new EdgeWatcher(variantUrl);
      await timeUntil(async () => watcher!.arrivals.length >= 2, 30_000, 'segments on the edge');

      const holder = (await ingestNodes(first)).find((node) => node.load.streams === 1)!;
      const killedAt = performance.now();
      nodes.find((node) => node.nodeId === holder.id)!.kill('SIGKILL');
      await exited(before);
      const publisherDroppedMs = performance.now() - killedAt;
      // The publisher comes back at once through the same URL, as OBS's reconnect does.
      publish();
      let newId = '';
      await timeUntil(
        async () => {
          const { stream } = await first.streams.channelStream('crash');
          newId = stream?.state === 'live' && stream.id !== running!.id ? stream.id : '';
          return newId !== '';
        },
        30_000,
        'live again',
      );
      const liveAgainMs = performance.now() - killedAt;
      await timeUntil(
        async () => watcher!.arrivals.some(({ uri }) => uri.includes(newId)),
        30_000,
        'a segment of the new stream on the edge',
      );
      const playableAgainMs = performance.now() - killedAt;
      const again = await second.streams.channelStream('crash');
      const samePlaybackUrl =
        again.playbackUrl === playbackUrl && again.stream?.playbackUrl === playbackUrl;
      const survivor = (await ingestNodes(second)).find((node) => node.id !== holder.id)!;
      const figures = {
        killedNode: holder.id,
        survivor: survivor.id,
        survivorStreams: survivor.load.streams,
        publisherDroppedMs: Math.round(publisherDroppedMs),
        liveAgainMs: Math.round(liveAgainMs),
        playableAgainMs: Math.round(playableAgainMs),
        samePlaybackUrl,
        discontinuity: watcher.discontinuity,
      };
      return [
        {
          scenario: 'ingest node process killed while streaming',
          done: 'SIGKILL of the ingest node holding the stream (two nodes behind the nginx stream balancer, two api instances on Redis and PostgreSQL); the OBS-like publisher reconnects at once through the balancer',
          held: `live again on ${survivor.id} as a new stream; playback URL the same: ${samePlaybackUrl ? 'yes' : 'NO'}; the edge playlist at that URL carries the new stream's segments (discontinuity marked: ${watcher.discontinuity ? 'yes' : 'no'})`,
          recovery: `publisher dropped after ${seconds(publisherDroppedMs)}; live again after ${seconds(liveAgainMs)}; new segment on the edge after ${seconds(playableAgainMs)}`,
          dataLost: `the source from the kill until the reconnect is transcoded by nobody (about ${seconds(liveAgainMs)}); segments of the first stream already in S3 stay`,
          passed: samePlaybackUrl && survivor.load.streams === 1,
          figures,
        },
      ];
    } finally {
      await watcher?.stop();
      for (const publisher of publishers) publisher.kill('SIGKILL');
      for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    }
  },
};

// Bytes of every file under a folder: the ingest node's spool on disk.
function folderBytes(root: string): number {
  let total = 0;
  for (const entry of fs.readdirSync(root, { recursive: true, encoding: 'utf8' })) {
    try {
      const stat = fs.statSync(path.join(root, entry));
      if (stat.isFile()) total += stat.size;
    } catch {
      // Uploaded and removed while the folder was read.
    }
  }
  return total;
}

// The node's count of segments dropped from a full spool.
async function droppedSegments(node: IngestNodeProcess): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${node.httpPort}/metrics`)).text();
  return Number(/^ingest_dropped_segments_total (\d+)/m.exec(text)?.[1] ?? Number.NaN);
}

/**
 * S3 stopped for `outageSeconds` under a 1280x720 stream (720p30 + 480p30 ladder) with VOD kept:
 * segments lost (gaps in the VOD playlists, and the node's drop counter), peak memory of the
 * ingest node process, peak spool on disk, and the time until the edge advances again.
 */
function s3Outage(options: {
  id: string;
  outageSeconds: number;
  spoolBytes?: number;
}): FaultScenario {
  return {
    id: options.id,
    async run() {
      const env: Record<string, string> = { INGEST_KEEP_VOD: 'true' };
      if (options.spoolBytes !== undefined) env.INGEST_SPOOL_MAX_BYTES = String(options.spoolBytes);
      const stack = await startStreamingStack(env);
      const { api, node, edge, s3, workDir } = stack;
      let watcher: EdgeWatcher | undefined;
      let publisher: ChildProcess | undefined;
      try {
        const key = await api.streams.createKey('outage');
        publisher = publishLikeObs({
          url: `rtmp://127.0.0.1:${node.rtmpPort}/live/${key.streamKey}`,
          seconds: options.outageSeconds + 40,
        });
        watcher = new EdgeWatcher(`${edge.url}/live/outage/720p30/index.m3u8`);
        await timeUntil(async () => watcher!.arrivals.length >= 3, 40_000, 'the live stream');
        const baselineKiB = residentKiB(node.pid);
        let peakKiB = baselineKiB;
        let peakSpool = folderBytes(workDir);
        console.log(`   S3 down for ${options.outageSeconds} s`);
        await s3.stop();
        const outageEnds = performance.now() + options.outageSeconds * 1000;
        while (performance.now() < outageEnds) {
          peakKiB = Math.max(peakKiB, residentKiB(node.pid));
          peakSpool = Math.max(peakSpool, folderBytes(workDir));
          await sleep(250);
        }
        const arrivalsBefore = watcher.arrivals.length;
        await s3.resume();
        const backAt = performance.now();
        await timeUntil(
          async () => watcher!.arrivals.length > arrivalsBefore,
          60_000,
          'the edge advancing again',
        );
        const advancingMs = performance.now() - backAt;
        const dropped = await droppedSegments(node);
        await exited(publisher);
        // The VOD playlists, complete once the stream ended and the backlog drained.
        const vodTexts: string[] = [];
        for (const rendition of ['720p30', '480p30']) {
          await timeUntil(
            async () =>
              (await fetch(`${s3.endpoint}/${TEST_BUCKET}/live/outage/${rendition}/vod.m3u8`)).ok,
            60_000,
            `the ${rendition} VOD playlist`,
          );
          vodTexts.push(
            await (
              await fetch(`${s3.endpoint}/${TEST_BUCKET}/live/outage/${rendition}/vod.m3u8`)
            ).text(),
          );
        }
        // Segment numbers run from 0 without a gap unless something was lost.
        const missing = vodTexts.map((text) => {
          const numbers = [...text.matchAll(/-(\d+)\.ts$/gm)].map((match) => Number(match[1]));
          const last = Math.max(...numbers);
          return last + 1 - numbers.length;
        });
        const lost = missing.reduce((sum, count) => sum + count, 0);
        const figures = {
          outageSeconds: options.outageSeconds,
          spoolMaxBytes: options.spoolBytes ?? 512 * 1024 * 1024,
          rssBaselineMiB: Math.round(baselineKiB / 102.4) / 10,
          rssPeakMiB: Math.round(peakKiB / 102.4) / 10,
          spoolPeakMiB: Math.round(peakSpool / 104857.6) / 10,
          edgeAdvancingAgainMs: Math.round(advancingMs),
          segmentsMissingFromVod: missing,
          droppedCounter: dropped,
        };
        const spool = options.spoolBytes
          ? `spool capped at ${options.spoolBytes / 1024 / 1024} MiB`
          : 'default 512 MiB spool';
        return [
          {
            scenario: `S3 down for ${options.outageSeconds} s (${spool})`,
            done: `s3rver stopped for ${options.outageSeconds} s under a 1280x720 stream (720p30 + 480p30), VOD kept, then back`,
            held: `ingest RSS ${figures.rssBaselineMiB} → peak ${figures.rssPeakMiB} MiB; spool on disk peak ${figures.spoolPeakMiB} MiB; segments missing from the VOD playlists ${missing.join(' + ')}, drop counter ${dropped}; playlists valid and complete after the drain`,
            recovery: `the edge advanced ${seconds(advancingMs)} after S3 was back`,
            dataLost:
              lost === 0
                ? 'none'
                : `${lost} segments (${dropped} dropped from the full spool, oldest first, counted and marked as discontinuities)`,
            passed: options.spoolBytes === undefined ? lost === 0 : lost === dropped && dropped > 0,
            figures,
          },
        ];
      } finally {
        await watcher?.stop();
        publisher?.kill('SIGKILL');
        await stack.close();
      }
    },
  };
}

/** Live-stream scenarios in table order. */
export const streamScenarios = {
  rtmpAndFfmpeg,
  ingestNodeKilled,
  s3Down10s: s3Outage({ id: 's3-10s', outageSeconds: 10 }),
  s3Down90s: s3Outage({ id: 's3-90s', outageSeconds: 90 }),
  s3Down90sSmallSpool: s3Outage({
    id: 's3-90s-spool',
    outageSeconds: 90,
    spoolBytes: 16 * 1024 * 1024,
  }),
};
