// `npm run bench:audience [-- --seconds=N --viewers=N --connections=N --ramp=N]`: the audience the
// HLS side holds. A real live stream (RTMP publish -> ingest ffmpeg ladder -> s3rver -> the nginx
// edge from cdn-config, see audience/live-source.ts) is played by 10,000 hls.js-like viewers for
// 60 s from a bounded load generator in its own process (audience/). It reports the edge's hit
// ratio, the origin (S3) requests per segment, latency per request kind as the viewers and as
// nginx saw it, the request rate achieved against the one the viewers' cadence asks for, and how
// far behind the viewers fell. It prints a table, writes bench/results/hls-audience.{json,md},
// and a full run (60 s, 10,000 viewers) replaces the README's bench:hls-audience section.
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { childPids } from '@hearth/cdn-config';
import type { AudienceConfig, AudienceMessage, AudienceResult } from './audience/audience';
import { logOffset, readEdgeLog } from './audience/edge-log';
import { startLiveSource, type LiveSource } from './audience/live-source';
import { headlineOf, renderReport, type CpuShare, type HlsAudienceReport } from './audience/report';
import { replaceReadmeSection } from './readme-section';
import { loadAverage, machineBusySeconds, processCpuSeconds, waitForQuiet } from './screen-proc';
import { round } from './stats';

const here = path.dirname(fileURLToPath(import.meta.url));
const FULL_RUN = { seconds: 60, viewers: 10_000 };
// The synthetic publisher: with passthrough, a 720p30 source gives three rungs (the source copied,
// 720p30 and 480p30) for the encoding cost of two.
const PUBLISHER = { width: 1280, height: 720, fps: 30 };
// Most viewers on the middle rung, the rest split between the top and the bottom.
const RUNG_SHARES = [0.2, 0.6, 0.2];
const REQUEST_TIMEOUT_MS = 10_000;
// Other work shares this machine: a full run waits (up to QUIET_WAIT_SECONDS) for the 1-minute
// load average to fall to QUIET_LOAD before it starts.
const QUIET_LOAD = 1.2;
const QUIET_WAIT_SECONDS = 180;
// The publisher runs past the end of the run, its drain and the reading of the results.
const PUBLISH_MARGIN_SECONDS = 60;

function option(name: string, fallback: number): number {
  const given = process.argv.find((arg) => arg.startsWith(`--${name}=`));
  const value = given === undefined ? fallback : Number(given.slice(name.length + 3));
  if (!Number.isFinite(value) || value <= 0)
    throw new TypeError(`--${name} must be a positive number`);
  return value;
}

const seconds = option('seconds', FULL_RUN.seconds);
const viewers = option('viewers', FULL_RUN.viewers);
const connections = option('connections', 256);
const rampSeconds = option('ramp', Math.min(10, seconds / 4));
const fullRun = seconds === FULL_RUN.seconds && viewers === FULL_RUN.viewers;

// Linux reports CPU times in /proc in clock ticks of 1/100 s.
const TICKS_PER_SECOND = 100;

/** CPU seconds used so far by each part of the set-up, and by the whole machine. */
interface CpuSnapshot {
  readonly at: number;
  readonly parts: Record<string, number>;
  /** CPU seconds of each ffmpeg of the ladder now running: a ladder that adapts is restarted. */
  readonly ladder: ReadonlyMap<number, number>;
  /** CPU seconds of the exited children this process has reaped (its cutime + cstime). */
  readonly reaped: number;
  readonly machine: number;
}

function reapedChildrenCpuSeconds(): number {
  const stat = fs.readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[13]) + Number(fields[14])) / TICKS_PER_SECOND;
}

function cpuSnapshot(source: LiveSource, generator: ChildProcess): CpuSnapshot {
  const nginx = [source.edge.pid, ...childPids(source.edge.pid)];
  const sum = (pids: readonly number[]) =>
    pids.reduce((total, pid) => total + processCpuSeconds(pid), 0);
  return {
    at: performance.now(),
    parts: {
      'load generator (10,000 viewers)': processCpuSeconds(generator.pid!),
      'nginx edge (master + 1 worker + cache manager)': sum(nginx),
      'publisher ffmpeg (x264 720p30)': processCpuSeconds(source.publisherPid),
      'benchmark process (api, ingest node, s3rver)': processCpuSeconds(process.pid),
    },
    ladder: new Map(source.ladderPids().map((pid) => [pid, processCpuSeconds(pid)])),
    reaped: reapedChildrenCpuSeconds(),
    machine: machineBusySeconds(),
  };
}

// The ladder's ffmpeg runs over the window: those still running from their value at the start
// (or from 0 when they started later), plus those that exited meanwhile, whose whole CPU time
// reached this process when it reaped them, less the part they had used before the window.
function ladderCpuSeconds(start: CpuSnapshot, end: CpuSnapshot): number {
  let total = end.reaped - start.reaped;
  for (const [pid, seconds] of end.ladder) total += seconds - (start.ladder.get(pid) ?? 0);
  for (const [pid, seconds] of start.ladder) if (!end.ladder.has(pid)) total -= seconds;
  return total;
}

function cpuShares(start: CpuSnapshot, end: CpuSnapshot): CpuShare[] {
  const elapsed = (end.at - start.at) / 1000;
  const shares = [
    ...Object.keys(start.parts).map((part) => ({
      part: part.replace('10,000', viewers.toLocaleString('en-US')),
      cores: round((end.parts[part]! - start.parts[part]!) / elapsed, 2),
    })),
    { part: 'ingest ffmpeg ladder', cores: round(ladderCpuSeconds(start, end) / elapsed, 2) },
  ];
  const ours = shares.reduce((sum, share) => sum + share.cores, 0);
  const machine = (end.machine - start.machine) / elapsed;
  return [
    ...shares,
    {
      part: 'everything else on the machine (other work running meanwhile)',
      cores: round(Math.max(0, machine - ours), 2),
    },
    { part: 'whole machine (of 2 cores)', cores: round(machine, 2) },
  ];
}

// Runs the generator process and gathers the edge and origin figures around its run.
async function measure(source: LiveSource, loadAverageAtStart: number): Promise<HlsAudienceReport> {
  const edgeUrl = new URL(source.masterUrl);
  const config: AudienceConfig = {
    edgeUrl: edgeUrl.origin,
    masterPath: edgeUrl.pathname,
    viewers,
    seconds,
    rampSeconds,
    connections,
    inFlight: connections,
    timeoutMs: REQUEST_TIMEOUT_MS,
    rungShares: RUNG_SHARES,
    segmentSeconds: source.segmentSeconds,
  };
  const generator = fork(path.join(here, 'audience', 'generator-process.ts'), [
    JSON.stringify(config),
  ]);
  cleanups.push(async () => generator.kill('SIGKILL'));
  // Taken now: the generator sends nothing before it has loaded and said it started.
  const accessLog = source.edge.layout.accessLogPath;
  const logFrom = logOffset(accessLog);
  let segmentsAtStart = 0;
  let segmentsProduced = 0;
  let cpuStart: CpuSnapshot | undefined;
  let cpu: CpuShare[] = [];
  const result = await new Promise<AudienceResult>((resolve, reject) => {
    generator.on('message', (message: AudienceMessage) => {
      if (message.type === 'started') {
        segmentsAtStart = source.segmentsUploaded();
        cpuStart = cpuSnapshot(source, generator);
      } else if (message.type === 'progress') {
        console.log(
          `${message.second} s: ${message.viewers} viewers, ${message.endedPerSecond} requests/s, ` +
            `${message.inFlight} in flight, ${message.waiting} waiting`,
        );
      } else if (message.type === 'stopping') {
        segmentsProduced = source.segmentsUploaded() - segmentsAtStart;
        cpu = cpuStart ? cpuShares(cpuStart, cpuSnapshot(source, generator)) : [];
      } else resolve(message.result);
    });
    generator.once('exit', (code) => reject(new Error(`the load generator exited with ${code}`)));
  });
  return {
    measuredAt: new Date().toISOString(),
    machine: `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}`,
    loadAverageAtStart,
    renditions: source.renditions,
    segmentsProduced,
    ladderAdaptations: source.adaptations(),
    audience: result,
    edgeLog: readEdgeLog(accessLog, logFrom, logOffset(accessLog)),
    cpu,
  };
}

// What is running, stopped in reverse order at the end and on Ctrl-C. A Ctrl-C while the stream
// starts leaves nothing behind either: nginx gets SIGTERM when this process dies (setpriv), the
// ladder's ffmpeg reads its input from this process, and the publisher's RTMP connection and
// stderr end with it.
const cleanups: (() => Promise<unknown>)[] = [];
let stopping: Promise<void> | undefined;
function stopEverything(): Promise<void> {
  stopping ??= (async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  })();
  return stopping;
}
process.once('SIGINT', () => {
  console.log('interrupted: stopping every process');
  void stopEverything().finally(() => process.exit(130));
});

if (fullRun) {
  const waited = await waitForQuiet(QUIET_LOAD, QUIET_WAIT_SECONDS);
  if (waited > 0) console.log(`waited ${waited} s for a quieter machine`);
}
const loadAverageAtStart = round(loadAverage(), 2);
console.log('starting the live stream (s3rver, nginx edge, api + ingest, RTMP publisher) ...');
const source = await startLiveSource({
  publisher: PUBLISHER,
  publishSeconds: seconds + REQUEST_TIMEOUT_MS / 1000 + PUBLISH_MARGIN_SECONDS,
});
cleanups.push(() => source.close());
let report: HlsAudienceReport;
try {
  console.log(`${viewers} viewers for ${seconds} s against ${source.masterUrl} ...`);
  report = await measure(source, loadAverageAtStart);
} finally {
  await stopEverything();
}

const markdown = renderReport(report);
const resultsDir = path.join(here, 'results');
fs.mkdirSync(resultsDir, { recursive: true });
fs.writeFileSync(
  path.join(resultsDir, 'hls-audience.json'),
  `${JSON.stringify({ fullRun, headline: headlineOf(report), ...report }, null, 2)}\n`,
);
fs.writeFileSync(path.join(resultsDir, 'hls-audience.md'), `${markdown}\n`);
console.log(`\n${markdown}`);
console.log('written to bench/results/hls-audience.{json,md}');
if (fullRun) await replaceReadmeSection('hls-audience', markdown);
else
  console.log(
    `not a full run (${FULL_RUN.viewers} viewers, ${FULL_RUN.seconds} s): README left as it is`,
  );
