// `npm run bench:network [-- --quick]`: voice under impaired networks (issue 11 §3). One call of
// two Chromium pages, one of them behind a UDP impairment relay, is taken through good, 3G, 2G,
// 5 % and 20 % loss and a 5 s blackout, each followed by the network's recovery; then NACK for
// audio is compared at 20 % loss, and RED is checked. Prints the tables and writes
// bench/results/network.{json,md}; a full run also replaces the README's bench:network section.
// `--quick` holds every phase for less time and leaves the README alone.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as mediasoup from 'mediasoup';
import { replaceReadmeSection } from './readme-section';
import { DROPOUT_DEFINITION } from './network/analysis';
import { reportMarkdown, type NetworkReport } from './network/report';
import {
  runNackComparison,
  runScenarios,
  scenarios,
  type NackRun,
  type ScenarioResult,
  type Timing,
} from './network/scenarios';
import { NODE_HOST, RELAY_HOST, startCall, WORKERS } from './network/session';
import { foreignCpuMeter, loadAverage, waitForQuiet } from './screen-proc';
import { round } from './stats';

const resultsDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');
const quick = process.argv.includes('--quick');
const SEED = 11;
const MARKER_PERIOD_MS = 1000;
const POLL_MS = 25;
const SETTLE_MS = 3000;
const timing: Timing = quick
  ? { holdMs: 8000, blackoutMs: 5000, minRecoveryMs: 4000, maxRecoveryMs: 12_000, nackHoldMs: 8000 }
  : {
      holdMs: 15_000,
      blackoutMs: 5000,
      minRecoveryMs: 10_000,
      maxRecoveryMs: 35_000,
      nackHoldMs: 20_000,
    };
const NACK_VARIANTS = [0, 100].flatMap((delayMs) =>
  [false, true].map((nack) => ({ nack, delayMs })),
);
// The machine is shared: a full run waits a little for a quieter moment, and says how busy it was.
const QUIET_LOAD = 2;
const QUIET_WAIT_SECONDS = quick ? 0 : 60;

const ROUTING =
  `The voice node embedded in the api (${WORKERS} mediasoup workers, each with a WebRtcServer on ` +
  `UDP and TCP at one port of ${NODE_HOST}) announces ${RELAY_HOST} in its ICE candidates ` +
  `(VOICE_ANNOUNCED_ADDRESS). In a process of its own, one UDP impairment relay ` +
  `(e2e/support/impairment) per worker listens on ${RELAY_HOST} at that worker's port and ` +
  `forwards to ${NODE_HOST} at the same port. The impaired participant's page uses the ` +
  `candidates as announced, so all of its media crosses the relays, and every scenario applies ` +
  `to both directions of its link. The clean participant's page has ${RELAY_HOST} rewritten to ` +
  `${NODE_HOST} in the remote candidates (an init script), so its media reaches the node ` +
  `directly. Nothing listens on TCP at ${RELAY_HOST}, so ICE-TCP cannot go around the relay. The ` +
  `downlink path (clean → node → impaired) and the uplink path (impaired → node → clean) each ` +
  `cross the impairment once. Each microphone is a synthetic voice from a Web Audio worklet ` +
  `(a harmonic buzz gliding between 110 and 190 Hz whose loudness swings at a syllable rate, ` +
  `never silent, so Opus sends 50 packets a second without DTX) with a 40 ms 1 kHz marker ` +
  `every ${MARKER_PERIOD_MS / 1000} s; both pages are in one headless Chromium.`;

async function mediasoupRedRefusal(): Promise<string | null> {
  const worker = await mediasoup.createWorker({ logLevel: 'none' });
  try {
    await worker.createRouter({
      mediaCodecs: [
        { kind: 'audio', mimeType: 'audio/red', clockRate: 48000, channels: 2 },
        { kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2 },
      ],
    });
    return null;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  } finally {
    worker.close();
  }
}

// CPU time the hypervisor gave to other guests (the `steal` column of /proc/stat), in seconds:
// while it grows, every process here stalls at once, whatever its priority.
function stealSeconds(): number {
  const ticks = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/);
  return Number(ticks[8] ?? 0) / 100;
}

const log = (line: string) => console.log(line.length > 600 ? `${line.slice(0, 600)} …` : line);
const loadAverageAtStart = round(loadAverage(), 2);
const waited = await waitForQuiet(QUIET_LOAD, QUIET_WAIT_SECONDS);
if (waited > 0) console.log(`waited ${waited} s for a quieter machine`);
const foreignCpu = foreignCpuMeter();
const stealAtStart = stealSeconds();
const startedAt = performance.now();

console.log('main call: good, 3G, 2G, 5 % loss, 20 % loss, blackout, each with its recovery');
const call = await startCall({
  channel: 'network-bench',
  seed: SEED,
  nack: 'shipped',
  markerPeriodMs: MARKER_PERIOD_MS,
  pollMs: POLL_MS,
});
let results: ScenarioResult[];
const { chromiumOffersRed, relayNice } = call;
try {
  // The jitter buffers settle after the join before the good baseline is taken.
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
  results = await runScenarios(call, scenarios(timing), timing, MARKER_PERIOD_MS, log);
} finally {
  await call.close();
}

const nack: NackRun[] = [];
for (const variant of NACK_VARIANTS) {
  console.log(`NACK ${variant.nack ? 'on' : 'off'}, 20 % loss, ${variant.delayMs} ms each way`);
  nack.push(
    await runNackComparison(
      variant,
      {
        seed: SEED,
        markerPeriodMs: MARKER_PERIOD_MS,
        pollMs: POLL_MS,
        holdMs: timing.nackHoldMs,
      },
      log,
    ),
  );
}

const report: NetworkReport = {
  measuredAt: new Date().toISOString(),
  machine: `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}`,
  loadAverageAtStart,
  foreignCpuCores: round(foreignCpu(), 2),
  stealPercent: round(
    (100 * (stealSeconds() - stealAtStart)) /
      ((performance.now() - startedAt) / 1000) /
      os.cpus().length,
    1,
  ),
  routing: ROUTING,
  relayNice,
  dropoutDefinition: DROPOUT_DEFINITION,
  timing,
  scenarios: results,
  nack,
  red: { chromiumOffersRed, mediasoupRefusal: await mediasoupRedRefusal() },
};
const markdown = reportMarkdown(report);
fs.mkdirSync(resultsDir, { recursive: true });
fs.writeFileSync(path.join(resultsDir, 'network.json'), `${JSON.stringify(report, null, 2)}\n`);
fs.writeFileSync(path.join(resultsDir, 'network.md'), `${markdown}\n`);
console.log(`\n${markdown}\n`);
console.log(`written to ${path.relative(process.cwd(), resultsDir)}/network.{json,md}`);
if (!quick) await replaceReadmeSection('network', markdown);
