// `npm run bench:voice`: join latency in Chromium and forwarding capacity with RTP clients.
// Prints the figures and writes them to bench/results/voice.json and voice.md.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCapacityScenario, type CapacityResult, type CapacityScenario } from './capacity';
import { clientCostTable, runClientCostBenchmark } from './client-cost';
import { runJoinBenchmark, type JoinResult } from './join-time';

const resultsDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');
const quick = process.argv.includes('--quick');
const seconds = quick ? 3 : 10;

const scenarios: CapacityScenario[] = [
  // One worker alone: how many Opus consumers one worker-core carries.
  ...[200, 400].map((listeners) => ({
    name: `1 worker, 5 speakers, ${listeners} listening`,
    workers: 1,
    participants: listeners + 5,
    speakers: 5,
    seconds,
  })),
  ...[50, 100, 200, 500].map((participants) => ({
    name: `2 workers, ${participants} participants, 5 speakers`,
    workers: 2,
    participants,
    speakers: 5,
    seconds,
  })),
];

function capacityTable(results: CapacityResult[]): string {
  const rows = results.map((r) =>
    [
      r.scenario.name,
      r.consumers,
      r.workerConsumers.join(' / '),
      r.workerCpuPercent.map((cpu) => `${cpu}%`).join(' / '),
      r.forwardedPacketsPerSecond,
      `${r.sfuLossPercent}%`,
      `${r.deliveryLossPercent}%`,
      `${r.latencyMs.p50} / ${r.latencyMs.p95} / ${r.latencyMs.p99}`,
    ].join(' | '),
  );
  return [
    '| scenario | listener consumers | consumers per worker (incl. pipes) | worker CPU | packets forwarded/s | SFU loss | delivery loss | added latency p50 / p95 / p99 (ms) |',
    '|---|---|---|---|---|---|---|---|',
    ...rows.map((row) => `| ${row} |`),
  ].join('\n');
}

function joinTable(join: JoinResult): string {
  return [
    '| joins | p50 (ms) | p95 (ms) | max (ms) |',
    '|---|---|---|---|',
    `| 10 sequential | ${join.sequential.p50} | ${join.sequential.p95} | ${join.sequential.max} |`,
    `| 10 concurrent | ${join.concurrent.p50} | ${join.concurrent.p95} | ${join.concurrent.max} |`,
    `| server share, 10 sequential | ${join.serverSequential.p50} | ${join.serverSequential.p95} | ${join.serverSequential.max} |`,
    `| server share, 10 concurrent | ${join.serverConcurrent.p50} | ${join.serverConcurrent.p95} | ${join.serverConcurrent.max} |`,
  ].join('\n');
}

const capacity: CapacityResult[] = [];
for (const scenario of scenarios) {
  console.log(`capacity: ${scenario.name} ...`);
  const result = await runCapacityScenario(scenario);
  console.log(JSON.stringify(result));
  capacity.push(result);
}
console.log('join time: 10 sequential, then 10 concurrent joins in Chromium ...');
const join = await runJoinBenchmark(10);
console.log(JSON.stringify(join));
console.log('client cost: one Chromium page in a 10-person channel ...');
const client = await runClientCostBenchmark(seconds);
console.log(JSON.stringify(client));

const machine = `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
const markdown = [
  `Measured ${new Date().toISOString()} on ${machine}; ${seconds} s per capacity run.`,
  '',
  '**Join time** (Chromium, from clicking Join on a settled page to the first remote audio packet, with a speaker talking without pause; loopback). The "server share" rows run the same signaling steps from a WebSocket client without a browser, up to the resumed consumer (no ICE/DTLS):',
  '',
  joinTable(join),
  '',
  `**Capacity** (Opus-like RTP, 50 packets/s per speaker; listeners use ${capacity[0]?.srtpSuite}; every participant hears every speaker but itself):`,
  '',
  capacityTable(capacity),
  '',
  `**Client cost** (seed 000: one Chromium page in a 10-person channel, the other nine RTP clients sending real Opus; every Chromium process, ${seconds} s per window; the target is under 10 % of the client's CPU and under 100 MB):`,
  '',
  clientCostTable(client),
  '',
].join('\n');
fs.mkdirSync(resultsDir, { recursive: true });
fs.writeFileSync(
  path.join(resultsDir, 'voice.json'),
  `${JSON.stringify({ machine, seconds, join, capacity, client }, null, 2)}\n`,
);
fs.writeFileSync(path.join(resultsDir, 'voice.md'), markdown);
console.log(`\n${markdown}`);
console.log(`written to ${path.relative(process.cwd(), resultsDir)}/voice.{json,md}`);
