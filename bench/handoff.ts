// `npm run bench:handoff [-- --quick]`: how fast a growing screen share's audience moves from
// WebRTC to HLS (the handoff) and what the bridge costs. Everything runs in this process as in
// e2e/share-bridge.test.ts: the api with its voice node, an in-process ingest node with 1 s
// segments, s3rver, and a real 1280x720 VP8 share that ffmpeg sends into a plain transport. It
// times the cold bridge (an operator routes the channel to broadcast) and the pre-warmed handoff
// (API_HANDOFF_VIEWERS=4, pre-warm 0.5), measures the bridge's ffmpeg CPU and the age of the
// HLS live edge, prints the figures and writes bench/results/handoff.json and handoff.md; a full
// run also replaces the README's section.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { replaceReadmeSection } from './readme-section';
import {
  channelStreamSchema,
  type ChannelStream,
  type RenditionInfo,
  type SharePresetId,
} from '@hearth/protocol';
import { ingestConfig } from '@hearth/stream-ingest';
import { parseMediaPlaylist, type MediaPlaylist } from '../stream-ingest/src/media-playlist-parser';
import {
  ensureCappedChannel,
  ensureChannel,
  guestSession,
  operator,
  sendJson,
} from '../api/test/support/sessions';
import { startTestApi, TestSignalingClient, type TestApi } from '../api/test/support/server';
import { joinOnSocket } from '../api/test/support/voice-faults';
import { SHARE_ENCODING, shareRealVp8, type RealShare } from '../e2e/support/real-share';
import { TEST_BUCKET, TestS3Server } from '../stream-ingest/test/support/s3rver';
import { foreignCpuMeter, loadAverage, processCpuSeconds, waitForQuiet } from './screen-proc';
import { percentile, round } from './stats';

const run = promisify(execFile);
const resultsDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');
const quick = process.argv.includes('--quick');
const RUNS = quick ? 1 : 5;
// Seconds over which the bridge's CPU and the live edge's age are sampled, once it plays.
const COST_SECONDS = quick ? 5 : 10;
// The ladder's first seconds (x264 lookahead filling, first uploads) are left out of the window.
const COST_SETTLE_MS = 2000;
const EDGE_POLL_MS = 250;
// The channel's stream and share are polled this often while a handoff is timed.
const POLL_MS = 25;
const CHANNEL = 'stage';
// 1 s segments, as the e2e test uses and a deployment wanting a quick handoff would set
// (INGEST_SEGMENT_SECONDS): the first segment, and so the handoff, comes a second sooner than with
// the default 2 s.
const SEGMENT_SECONDS = 1;
const HANDOFF_VIEWERS = 4;
// ffmpeg probes its input on one thread; once the probe is done the decoder's threads and each
// rung's x264 threads start, well over this many more within 50 ms.
const ENCODER_THREADS_JUMP = 4;
// The stand-in sharer (e2e/support/real-share.ts) sends a key frame every 60 frames at 30 fps and
// ignores key frame requests, which a browser answers at once.
const SHARER_KEYFRAME_MS = 2000;
// The share runs longer than any measurement of one stage.
const SHARE_SECONDS = 120;
// Length of the share's source file, sent in a loop; a whole number of key frame intervals.
const SHARE_SOURCE_SECONDS = 30;
// Other work shares this machine: wait (up to QUIET_WAIT_SECONDS) for the 1-minute load average
// to fall to QUIET_LOAD before measuring.
const QUIET_LOAD = 1.2;
const QUIET_WAIT_SECONDS = quick ? 0 : 180;

/** One api with an in-process ingest node and s3rver, a channel and a live share in it. */
interface Stage {
  readonly api: TestApi;
  readonly s3: TestS3Server;
  readonly share: RealShare;
  /** performance.now() when the share's sender started: its key frames follow every 2 s. */
  readonly shareStartedAt: number;
  /** performance.now() of the ingest node's first events, as they happen. */
  readonly marks: IngestMarks;
  /** The ingest's work folder: ffmpeg writes each rung's segments under it. */
  readonly workDir: string;
  /** Headers of a guest who reads the channel's stream. */
  readonly viewer: Record<string, string>;
  /** Spectators joined so far. */
  readonly spectators: TestSignalingClient[];
  close(): Promise<void>;
}

interface IngestMarks {
  firstSegmentUploaded?: number;
  firstSegmentUploadMs?: number;
  firstPlaylistUploaded?: number;
  masterUploaded?: number;
  speeds: number[];
  adaptations: string[];
}

// The share is encoded once, not in real time, and then sent as it is, looped: encoding it live
// takes most of a core of the two the bridge needs (it fell to a third of real time that way).
async function ensureShareSource(): Promise<string> {
  const cacheDir = path.join(
    process.env.HEARTH_CACHE_DIR ??
      path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'hearth'),
    'bench-sources',
  );
  fs.mkdirSync(cacheDir, { recursive: true });
  const file = path.join(cacheDir, 'share-720p30-vp8.ivf');
  if (!fs.existsSync(file)) {
    console.log('preparing the share source (once) ...');
    const temp = `${file}.tmp`;
    await run('/usr/bin/ffmpeg', [
      ...['-hide_banner', '-loglevel', 'error', '-y', '-f', 'lavfi'],
      ...['-i', 'testsrc2=size=1280x720:rate=30', '-t', String(SHARE_SOURCE_SECONDS)],
      ...SHARE_ENCODING,
      ...['-f', 'ivf', temp],
    ]);
    fs.renameSync(temp, file);
  }
  return file;
}

async function openStage(
  options: { handoffViewers?: number; maxSharePreset?: SharePresetId } = {},
): Promise<Stage> {
  const s3 = await TestS3Server.start();
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-bench-handoff-'));
  const cleanup: Array<() => unknown> = [];
  const spectators: TestSignalingClient[] = [];
  let api: TestApi | undefined;
  const close = async () => {
    for (const client of spectators.splice(0)) client.close();
    for (const step of cleanup.splice(0).reverse()) await step();
    await api?.close();
    await s3.close();
    fs.rmSync(workDir, { recursive: true, force: true });
    // Whatever ffmpeg the api left behind would skew the next run.
    for (const pid of children('ffmpeg')) {
      console.warn(`ffmpeg ${pid} outlived its run; killed`);
      process.kill(pid, 'SIGKILL');
    }
  };
  try {
    api = await startTestApi({
      api: {
        guestGrants: 'join,speak,screen-share',
        ...(options.handoffViewers === undefined
          ? {}
          : { handoffViewers: String(options.handoffViewers) }),
      },
      ingest: {
        config: ingestConfig({
          rtmpPort: '0',
          workDir,
          segmentSeconds: String(SEGMENT_SECONDS),
        }),
        storage: s3.storage(),
      },
    });
    const marks: IngestMarks = { speeds: [], adaptations: [] };
    api.ingest!.events.on('speed', ({ speed }) => marks.speeds.push(speed));
    api.ingest!.events.on('adapted', ({ reason }) => marks.adaptations.push(reason));
    api.ingest!.events.on('uploaded', ({ kind, ms }) => {
      const now = performance.now();
      if (kind === 'segment' && marks.firstSegmentUploaded === undefined) {
        marks.firstSegmentUploaded = now;
        marks.firstSegmentUploadMs = ms;
      }
      if (kind === 'playlist') marks.firstPlaylistUploaded ??= now;
      if (kind === 'master') marks.masterUploaded ??= now;
    });
    if (options.maxSharePreset) {
      await ensureCappedChannel(api.baseUrl, CHANNEL, options.maxSharePreset);
    } else {
      await ensureChannel(api.baseUrl, CHANNEL);
    }
    const sue = await TestSignalingClient.connect(api.baseUrl, 'Sue', { channel: CHANNEL });
    cleanup.push(() => sue.close());
    const { peerId } = await joinOnSocket(sue, CHANNEL);
    const share = await shareRealVp8(api, CHANNEL, peerId, cleanup, {
      seconds: SHARE_SECONDS,
      source: shareSource,
    });
    const shareStartedAt = performance.now();
    const viewer = await guestSession(api.baseUrl, 'Viewer');
    const stage = { api, s3, share, shareStartedAt, marks, workDir, viewer, spectators, close };
    await until(async () => (await channelStream(stage)).share !== null, 10_000, 'the share');
    return stage;
  } catch (error) {
    await close();
    throw error;
  }
}

async function channelStream(stage: Pick<Stage, 'api' | 'viewer'>): Promise<ChannelStream> {
  const response = await fetch(`${stage.api.baseUrl}/api/channels/${CHANNEL}/stream`, {
    headers: stage.viewer,
  });
  if (response.status !== 200) throw new Error(`GET stream answered ${response.status}`);
  return channelStreamSchema.parse(await response.json());
}

async function joinSpectator(stage: Stage, name: string): Promise<void> {
  const client = await TestSignalingClient.connect(stage.api.baseUrl, name, {
    channel: CHANNEL,
    spectate: true,
  });
  stage.spectators.push(client);
  await joinOnSocket(client, CHANNEL);
}

/** Polls `check` every POLL_MS; resolves with performance.now() of the first poll it held. */
async function until(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await check()) return performance.now();
    if (performance.now() > deadline) throw new Error(`no ${what} within ${timeoutMs} ms`);
    await sleep(POLL_MS);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Child processes of this one whose name starts with `prefix` (the api, its voice node and its
// ingest node all run in this process, so their ffmpeg and mediasoup workers are its children).
function children(prefix: string): number[] {
  let listed: string;
  try {
    listed = fs.readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, 'utf8');
  } catch {
    return [];
  }
  return listed
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .map(Number)
    .filter((pid) => commandLine(pid)[0]?.split('/').at(-1)?.startsWith(prefix) ?? false);
}

function commandLine(pid: number): string[] {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return []; // It exited meanwhile.
  }
}

/** What the bridge's ffmpeg did, as seen from outside (performance.now() of each step). */
interface BridgeWatch {
  /** The process appeared. */
  spawned: number;
  /** Its thread count jumped: the encoders of the rungs started, so the input was probed. */
  encodersStarted: number;
  /** A segment was complete on disk (written whole once its last part came). */
  firstSegmentCut: number;
  /** Thread counts seen, as [ms after spawn, threads], for checking the step above. */
  threads: Array<[number, number]>;
}

/**
 * Watches the bridge's ffmpeg from /proc and the ingest's work folder until it has cut its first
 * segment. ffmpeg says nothing to the outside while it probes its input; once the probe is done it
 * starts one x264 encoder per rung, each with threads of its own, so the thread count jumps.
 */
async function watchBridge(workDir: string, marks: IngestMarks): Promise<BridgeWatch> {
  let pid: number | undefined;
  let spawned: number | undefined;
  let encodersStarted: number | undefined;
  const threads: Array<[number, number]> = [];
  let uploadedFirst = false;
  const seen = await until(
    () => {
      pid ??= bridgeFfmpeg();
      if (pid === undefined) return false;
      const now = performance.now();
      spawned ??= now;
      const count = threadCount(pid);
      if (count !== undefined && threads.at(-1)?.[1] !== count) {
        threads.push([round(now - spawned), count]);
        if (count >= threads[0]![1] + ENCODER_THREADS_JUMP) encodersStarted ??= now;
      }
      // The uploader deletes a segment once it is in S3: should that happen between two polls,
      // the upload's own timing tells when the segment was there.
      uploadedFirst = marks.firstSegmentUploaded !== undefined;
      return (
        uploadedFirst ||
        fs
          .readdirSync(workDir, { recursive: true, encoding: 'utf8' })
          .some((name) => /^\d+\.m4s$/.test(path.basename(name)))
      );
    },
    30_000,
    'first segment',
  );
  const firstSegmentCut = uploadedFirst
    ? marks.firstSegmentUploaded! - marks.firstSegmentUploadMs!
    : seen;
  return {
    spawned: spawned!,
    encodersStarted: encodersStarted ?? Number.NaN,
    firstSegmentCut,
    threads,
  };
}

function threadCount(pid: number): number | undefined {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/^Threads:\s+(\d+)/m.exec(status)?.[1]);
  } catch {
    return undefined; // It exited meanwhile.
  }
}

// The ingest's ffmpeg of the bridge: the one reading an SDP (the stand-in sharer writes RTP).
function bridgeFfmpeg(): number | undefined {
  return children('ffmpeg').find((pid) => commandLine(pid).includes('sdp'));
}

/** Milliseconds from the operator's PUT to each step of a cold bridge. */
interface ColdTimeline {
  putAnswered: number;
  ffmpegStarted: number;
  /** When the stand-in sharer's next key frame was due after ffmpeg started (an estimate). */
  sharerKeyFrame: number;
  encodersStarted: number;
  firstSegmentCut: number;
  firstSegmentInS3: number;
  firstPlaylistInS3: number;
  masterInS3: number;
  streamLive: number;
  broadcast: number;
}

interface CostResult {
  seconds: number;
  /** x264 presets on the bridge's ffmpeg command line. */
  presets: string[];
  rungs: RenditionInfo[];
  /** Cores the bridge's ffmpeg used (1 = one core busy). */
  bridgeFfmpegCores: number;
  /** The stand-in sharer's VP8 encoder, not part of the bridge. */
  sharerCores: number;
  /** The mediasoup worker, which forwards the share to the bridge. */
  mediasoupCores: number;
  /** This process: api, voice node, ingest node, s3rver and the benchmark. */
  nodeCores: number;
  /** Everything else on the machine meanwhile. */
  foreignCores: number;
  loadAverageBefore: number;
  /** ffmpeg's speed over its 10 s sliding window (1 = real time); null if none came. */
  speed: { median: number; min: number } | null;
  adaptations: string[];
  /** Age of the newest segment's end in the top rung's playlist when fetched, in ms. */
  edgeAgeMs: number[];
  /** The same by the sharer's clock: how long ago the sharer sent that segment's last frame. */
  sharerClockAgeMs: number[];
  /** Playlist fetches that failed or found nothing, left out of the ages. */
  failedFetches: number;
  topRung: string;
  targetDurationSec: number | undefined;
}

interface ColdResult {
  timeline: ColdTimeline;
  /** How long the first segment's PUT to S3 took. */
  firstSegmentUploadMs: number;
  /** The bridge's ffmpeg thread counts until its first segment, as [ms after spawn, threads]. */
  ffmpegThreads: Array<[number, number]>;
  cost: CostResult;
}

// A rung's media playlist in S3; undefined when it is missing or the fetch failed: s3rver now and
// then closes a kept-alive connection under a request, which a player would simply retry.
async function mediaPlaylist(stage: Stage, rung: string): Promise<MediaPlaylist | undefined> {
  try {
    const response = await fetch(
      `${stage.s3.endpoint}/${TEST_BUCKET}/live/${CHANNEL}/${rung}/index.m3u8`,
    );
    return response.ok ? parseMediaPlaylist(await response.text()) : undefined;
  } catch (error) {
    if (!(error instanceof TypeError)) throw error; // fetch's network errors are TypeErrors.
    return undefined;
  }
}

// Times one cold bridge: the operator routes the channel to broadcast with no bridge running.
async function coldRun(maxSharePreset?: SharePresetId): Promise<ColdResult> {
  const stage = await openStage({ maxSharePreset });
  try {
    const started = performance.now();
    const watch = watchBridge(stage.workDir, stage.marks);
    const routed = await sendJson(
      `${stage.api.baseUrl}/api/channels/${CHANNEL}/share-routing`,
      'PUT',
      { routing: 'broadcast' },
      operator(),
    );
    const putAnswered = performance.now();
    if (routed.status !== 200) throw new Error(`PUT share-routing answered ${routed.status}`);
    let streamLive: number | undefined;
    const broadcast = await until(
      async () => {
        const now = await channelStream(stage);
        if (now.stream?.state === 'live') streamLive ??= performance.now();
        return now.share?.broadcast === true;
      },
      30_000,
      'broadcast',
    );
    const bridge = await watch;
    const spawned = bridge.spawned;
    const { marks } = stage;
    const sinceShare = spawned - stage.shareStartedAt;
    const keyFrame =
      stage.shareStartedAt + Math.ceil(sinceShare / SHARER_KEYFRAME_MS) * SHARER_KEYFRAME_MS;
    const at = (mark: number | undefined, what: string) => {
      if (mark === undefined) throw new Error(`the ingest never reported its ${what}`);
      return round(mark - started);
    };
    const timeline: ColdTimeline = {
      putAnswered: round(putAnswered - started),
      ffmpegStarted: round(spawned - started),
      sharerKeyFrame: round(keyFrame - started),
      encodersStarted: round(bridge.encodersStarted - started),
      firstSegmentCut: round(bridge.firstSegmentCut - started),
      firstSegmentInS3: at(marks.firstSegmentUploaded, 'first segment'),
      firstPlaylistInS3: at(marks.firstPlaylistUploaded, 'first playlist'),
      masterInS3: at(marks.masterUploaded, 'master playlist'),
      streamLive: at(streamLive, 'live stream'),
      broadcast: round(broadcast - started),
    };
    console.log(`  cold bridge: ${JSON.stringify(timeline)}`);
    console.log(`  ffmpeg threads: ${JSON.stringify(bridge.threads)}`);
    const stream = (await channelStream(stage)).stream;
    const top = [...(stream?.renditions ?? [])].sort((a, b) => b.height - a.height)[0];
    if (!top) throw new Error('the bridged stream has no renditions');
    let first: MediaPlaylist['segments'][number] | undefined;
    await until(
      async () => {
        first = (await mediaPlaylist(stage, top.name))?.segments[0];
        return first !== undefined;
      },
      5000,
      "the top rung's playlist",
    );
    if (first?.sequence !== 0 || !first.programDateTime) {
      throw new Error('the first segment of the top rung is not listed');
    }
    const cost = await measureCost(stage, top, {
      programDateTime0: first.programDateTime.getTime(),
      firstFrameSentAt: keyFrame - performance.now() + Date.now(),
    });
    return {
      timeline,
      firstSegmentUploadMs: round(marks.firstSegmentUploadMs ?? Number.NaN),
      ffmpegThreads: bridge.threads,
      cost,
    };
  } finally {
    await stage.close();
  }
}

// CPU of the bridge and the live edge's age, over COST_SECONDS once the bridged stream plays.
// `origin` places the bridge's media timeline on the wall clock: its first frame is the sharer's
// key frame sent at `firstFrameSentAt` (ms since the epoch), dated `programDateTime0` by ffmpeg.
async function measureCost(
  stage: Stage,
  top: RenditionInfo,
  origin: { programDateTime0: number; firstFrameSentAt: number },
): Promise<CostResult> {
  await sleep(COST_SETTLE_MS);
  const stream = (await channelStream(stage)).stream;
  if (!stream) throw new Error('the bridged stream is gone');
  const bridge = bridgeFfmpeg();
  const workers = children('mediasoup-worker');
  const sharer = stage.share.sender.pid;
  if (bridge === undefined || sharer === undefined) throw new Error('no ffmpeg to measure');
  const cpuOf = (pids: number[]) => pids.reduce((sum, pid) => sum + processCpuSeconds(pid), 0);
  const loadAverageBefore = round(loadAverage(), 2);
  const speedsBefore = stage.marks.speeds.length;
  const before = {
    bridge: cpuOf([bridge]),
    sharer: cpuOf([sharer]),
    workers: cpuOf(workers),
    node: cpuOf([process.pid]),
  };
  const foreign = foreignCpuMeter();
  const started = performance.now();
  const edgeAgeMs: number[] = [];
  const sharerClockAgeMs: number[] = [];
  let failedFetches = 0;
  let targetDurationSec: number | undefined;
  while (performance.now() - started < COST_SECONDS * 1000) {
    const playlist = await mediaPlaylist(stage, top.name);
    const fetchedAt = Date.now();
    if (!playlist) failedFetches++;
    targetDurationSec = playlist?.targetDurationSec;
    const newest = playlist?.segments.at(-1);
    if (newest?.programDateTime) {
      const end = newest.programDateTime.getTime() + newest.durationSec * 1000;
      edgeAgeMs.push(fetchedAt - end);
      sharerClockAgeMs.push(fetchedAt - (origin.firstFrameSentAt + end - origin.programDateTime0));
    }
    await sleep(EDGE_POLL_MS);
  }
  const seconds = (performance.now() - started) / 1000;
  const foreignCores = foreign();
  const cores = (now: number, then: number) => round((now - then) / seconds, 2);
  const speeds = stage.marks.speeds.slice(speedsBefore);
  const presets = commandLine(bridge).flatMap((arg, index, argv) =>
    arg.startsWith('-preset') ? [argv[index + 1]!] : [],
  );
  const result: CostResult = {
    seconds: round(seconds),
    presets: [...new Set(presets)],
    rungs: stream.renditions,
    bridgeFfmpegCores: cores(cpuOf([bridge]), before.bridge),
    sharerCores: cores(cpuOf([sharer]), before.sharer),
    mediasoupCores: cores(cpuOf(workers), before.workers),
    nodeCores: cores(cpuOf([process.pid]), before.node),
    foreignCores: round(foreignCores, 2),
    loadAverageBefore,
    speed:
      speeds.length === 0
        ? null
        : { median: round(percentile(speeds, 50), 2), min: round(Math.min(...speeds), 2) },
    adaptations: [...stage.marks.adaptations],
    edgeAgeMs,
    sharerClockAgeMs,
    failedFetches,
    topRung: top.name,
    targetDurationSec,
  };
  console.log(
    `  cost: ffmpeg ${result.bridgeFfmpegCores} cores (${result.rungs.map((r) => r.name).join(' + ')}, ${result.presets.join('/')}), speed ${result.speed?.median ?? '?'}x; edge age p50 ${round(percentile(edgeAgeMs, 50))} ms`,
  );
  return result;
}

interface PrewarmResult {
  /** From the 2nd spectator's join to the bridged stream live. */
  warmUpMs: number;
  /** Whether the share was still on WebRTC with 3 spectators, as the policy says. */
  webrtcAtThree: boolean;
  /** The 4th spectator's join (POST /api/voice/join, socket, join request). */
  joinMs: number;
  /** From the 4th spectator's join request to share.broadcast === true. */
  handoffMs: number;
}

// Times one pre-warmed handoff: 2 spectators warm the bridge up, the 4th sends them to HLS.
async function prewarmRun(): Promise<PrewarmResult> {
  const stage = await openStage({ handoffViewers: HANDOFF_VIEWERS });
  try {
    await joinSpectator(stage, 'Spectator 1');
    await joinSpectator(stage, 'Spectator 2');
    const warming = performance.now();
    const live = await until(
      async () => (await channelStream(stage)).stream?.state === 'live',
      30_000,
      'the pre-warmed stream live',
    );
    await joinSpectator(stage, 'Spectator 3');
    const webrtcAtThree = (await channelStream(stage)).share?.broadcast === false;
    const started = performance.now();
    await joinSpectator(stage, 'Spectator 4');
    const joined = performance.now();
    const broadcast = await until(
      async () => (await channelStream(stage)).share?.broadcast === true,
      30_000,
      'broadcast',
    );
    const result: PrewarmResult = {
      warmUpMs: round(live - warming),
      webrtcAtThree,
      joinMs: round(joined - started),
      handoffMs: round(broadcast - started),
    };
    console.log(`  pre-warmed: ${JSON.stringify(result)}`);
    return result;
  } finally {
    await stage.close();
  }
}

/** p50 and p95 (nearest rank) of a list, rounded. */
function dist(values: readonly number[], digits = 1): { p50: number; p95: number } {
  return {
    p50: round(percentile(values, 50), digits),
    p95: round(percentile(values, 95), digits),
  };
}

const loadAverageAtStart = round(loadAverage(), 2);
const waitedForQuietSeconds = await waitForQuiet(QUIET_LOAD, QUIET_WAIT_SECONDS);
const loadAverageAfterWait = round(loadAverage(), 2);
console.log(
  `load average ${loadAverageAtStart}, ${loadAverageAfterWait} after waiting ${waitedForQuietSeconds} s`,
);

const shareSource = await ensureShareSource();
const cold: ColdResult[] = [];
for (let run = 1; run <= RUNS; run++) {
  console.log(`cold bridge, run ${run} of ${RUNS} ...`);
  cold.push(await coldRun());
}
console.log('cold bridge with the channel capped at 720p30 ...');
const capped = await coldRun('720p30');
const prewarmed: PrewarmResult[] = [];
for (let run = 1; run <= RUNS; run++) {
  console.log(`pre-warmed handoff, run ${run} of ${RUNS} ...`);
  prewarmed.push(await prewarmRun());
}

const steps: Array<[keyof ColdTimeline, string]> = [
  ['putAnswered', '`PUT share-routing` answered'],
  ['ffmpegStarted', "the ingest's ffmpeg started (voice node ↔ api ↔ ingest set-up)"],
  ['sharerKeyFrame', "the stand-in sharer's next key frame due (estimate; every 2 s)"],
  ['encodersStarted', "ffmpeg's x264 encoders started (input probed; its thread count jumps)"],
  ['firstSegmentCut', 'first segment complete on disk'],
  ['firstSegmentInS3', 'first segment in S3'],
  ['firstPlaylistInS3', 'first media playlist in S3'],
  ['masterInS3', 'master playlist in S3 (every rung has a playlist)'],
  ['streamLive', 'stream `live` at the api'],
  ['broadcast', '`share.broadcast === true`'],
];
const timelineDist = Object.fromEntries(
  steps.map(([key]) => [key, dist(cold.map((run) => run.timeline[key]))]),
) as Record<keyof ColdTimeline, { p50: number; p95: number }>;
const costs = cold.map((run) => run.cost);
const coresOf = (list: CostResult[], pick: (cost: CostResult) => number) => dist(list.map(pick), 2);
const costSummary = (list: CostResult[]) => ({
  bridgeFfmpegCores: coresOf(list, (c) => c.bridgeFfmpegCores),
  sharerCores: coresOf(list, (c) => c.sharerCores),
  mediasoupCores: coresOf(list, (c) => c.mediasoupCores),
  nodeCores: coresOf(list, (c) => c.nodeCores),
  foreignCores: coresOf(list, (c) => c.foreignCores),
  speed: speedSummary(list.flatMap((c) => (c.speed ? [c.speed] : []))),
  edgeAgeMs: dist(list.flatMap((c) => c.edgeAgeMs)),
  sharerClockAgeMs: dist(list.flatMap((c) => c.sharerClockAgeMs)),
  edgeAgeSamples: list.reduce((sum, c) => sum + c.edgeAgeMs.length, 0),
  failedFetches: list.reduce((sum, c) => sum + c.failedFetches, 0),
});
const summary = {
  coldBroadcastMs: timelineDist.broadcast,
  coldMasterMs: timelineDist.masterInS3,
  // What a sharer answering the voice node's key frame request at once would see: the same
  // without the wait from ffmpeg's start to the stand-in's next key frame.
  coldBroadcastAnsweringMs: dist(
    cold.map(({ timeline: t }) => t.broadcast - Math.max(0, t.sharerKeyFrame - t.ffmpegStarted)),
  ),
  firstSegmentUploadMs: dist(cold.map((run) => run.firstSegmentUploadMs)),
  prewarmedHandoffMs: dist(prewarmed.map((run) => run.handoffMs)),
  prewarmedJoinMs: dist(prewarmed.map((run) => run.joinMs)),
  warmUpMs: dist(prewarmed.map((run) => run.warmUpMs)),
  cost: costSummary(costs),
  cappedCost: costSummary([capped.cost]),
};

function speedSummary(speeds: Array<{ median: number; min: number }>): string {
  if (speeds.length === 0) return 'not reported';
  const median = round(
    percentile(
      speeds.map((s) => s.median),
      50,
    ),
    2,
  );
  return `${median}x (min ${round(Math.min(...speeds.map((s) => s.min)), 2)}x)`;
}

function rungList(rungs: readonly RenditionInfo[]): string {
  return rungs.map((r) => `${r.name} (${r.width}x${r.height}, ${r.bitrateKbps} kbit/s)`).join(', ');
}

function costRow(label: string, c: ReturnType<typeof costSummary>, rungs: CostResult): string {
  return `| ${label} | ${rungs.rungs.map((r) => r.name).join(' + ')} at ${rungs.presets.join('/')} | **${c.bridgeFfmpegCores.p50}** (p95 ${c.bridgeFfmpegCores.p95}) | ${c.speed} | ${c.nodeCores.p50} | ${c.sharerCores.p50} | ${c.mediasoupCores.p50} | ${c.foreignCores.p50} |`;
}

const machine = `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
const target = 3000;
const pw = summary.prewarmedHandoffMs;
const firstCost = costs[0]!;
const markdown = [
  `Measured ${new Date().toISOString()} on ${machine}. Load average ${loadAverageAtStart} at start${waitedForQuietSeconds > 0 ? `, ${loadAverageAfterWait} after waiting ${waitedForQuietSeconds} s for a quieter machine` : ''}. ${RUNS} run${RUNS === 1 ? '' : 's'} of each, a fresh api, s3rver and share every run; ${SEGMENT_SECONDS} s segments; the share is 1280x720 VP8 at 30 fps, 1 Mbit/s, encoded once and sent from a file in real time, with a key frame every 2 s (it ignores key frame requests); p95 is by nearest rank, so with ${RUNS} runs it is the slowest.`,
  '',
  `**Cold bridge** (no bridge running; an operator's \`PUT share-routing {"routing":"broadcast"}\` to the spectators being sent to HLS): p50 **${summary.coldBroadcastMs.p50} ms**, p95 **${summary.coldBroadcastMs.p95} ms**; the master playlist is in S3 after p50 ${summary.coldMasterMs.p50} ms, p95 ${summary.coldMasterMs.p95} ms. Where the time goes, from the PUT:`,
  '',
  '| step | p50 (ms) | p95 (ms) |',
  '|---|---|---|',
  ...steps.map(
    ([key, label]) => `| ${label} | ${timelineDist[key].p50} | ${timelineDist[key].p95} |`,
  ),
  '',
  `The first segment's PUT to S3 itself took p50 ${summary.firstSegmentUploadMs.p50} ms, p95 ${summary.firstSegmentUploadMs.p95} ms. Without the wait for the stand-in's key frame (from ffmpeg's start to when it was due), as with a sharer that answers the key frame request at once, the cold bridge would take about p50 **${summary.coldBroadcastAnsweringMs.p50} ms**, p95 ${summary.coldBroadcastAnsweringMs.p95} ms (an estimate).`,
  '',
  `**Pre-warmed handoff** (API_HANDOFF_VIEWERS=${HANDOFF_VIEWERS}, pre-warm 0.5: 2 spectators start the bridge, whose stream was live p50 ${summary.warmUpMs.p50} ms, p95 ${summary.warmUpMs.p95} ms after the 2nd joined; a 3rd joins, still on WebRTC in ${prewarmed.filter((run) => run.webrtcAtThree).length} of ${RUNS} runs; then the 4th): from the 4th spectator's join request to \`share.broadcast === true\`, p50 **${pw.p50} ms**, p95 **${pw.p95} ms** (target ≤ ${target / 1000} s: ${pw.p95 <= target ? 'met' : 'not met'}); the join itself takes p50 ${summary.prewarmedJoinMs.p50} ms of that.`,
  '',
  `**Bridge cost** (over ${COST_SECONDS} s, from ${COST_SETTLE_MS / 1000} s after the handoff; cores, 1 = one core busy, from /proc of each process: the in-process ingest agent's heartbeats sample the node's own \`load()\` all the time, so it cannot cover a window of its own). The channel's cap decides the rungs, not the share's size: at the default cap (\`source\`) the 720p share is bridged at 1080p. Rungs at the default cap: ${rungList(firstCost.rungs)}.`,
  '',
  '| channel cap | rungs and x264 preset | bridge ffmpeg (cores) | ffmpeg speed | this Node process (api, voice and ingest nodes, s3rver, benchmark) | stand-in sharer (ffmpeg sending a file) | mediasoup worker | other processes |',
  '|---|---|---|---|---|---|---|---|',
  costRow(`source (${RUNS} runs)`, summary.cost, firstCost),
  costRow('720p30 (1 run)', summary.cappedCost, capped.cost),
  '',
  `**HLS delay added** (the top rung's playlist fetched from S3 every ${EDGE_POLL_MS} ms during the cost windows, ${summary.cost.edgeAgeSamples} fetches, ${summary.cost.failedFetches} failed; how old the end of its newest segment is): by the segments' own \`EXT-X-PROGRAM-DATE-TIME\` + \`EXTINF\`, p50 ${summary.cost.edgeAgeMs.p50} ms, p95 ${summary.cost.edgeAgeMs.p95} ms; by the sharer's clock, p50 **${summary.cost.sharerClockAgeMs.p50} ms**, p95 **${summary.cost.sharerClockAgeMs.p95} ms**. ffmpeg dates its first segment when its encoders start, after the probe, so the first figure leaves out the probe's backlog and the path before the encoders; the second places each segment's end on the sharer's clock instead (the bridge's first frame is the sharer's key frame, sent at a known time, and the file is sent in real time), an estimate within a few tens of milliseconds. A player sits its hold-back further behind that edge (the watch page: 2 target durations, ${2 * SEGMENT_SECONDS} s here), against about 0.1–0.2 s glass to glass over WebRTC (bench:screen).`,
  '',
].join('\n');

fs.mkdirSync(resultsDir, { recursive: true });
fs.writeFileSync(
  path.join(resultsDir, 'handoff.json'),
  `${JSON.stringify(
    {
      measuredAt: new Date().toISOString(),
      machine,
      quick,
      runs: RUNS,
      segmentSeconds: SEGMENT_SECONDS,
      handoffViewers: HANDOFF_VIEWERS,
      loadAverageAtStart,
      waitedForQuietSeconds,
      loadAverageAfterWait,
      summary,
      cold,
      capped720p30: capped,
      prewarmed,
    },
    null,
    2,
  )}\n`,
);
fs.writeFileSync(path.join(resultsDir, 'handoff.md'), markdown);
console.log(`\n${markdown}`);
console.log(`written to ${path.relative(process.cwd(), resultsDir)}/handoff.{json,md}`);
if (!quick) await replaceReadmeSection('handoff', markdown);
