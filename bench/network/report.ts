// The tables and verdicts of bench:network, in Markdown.
import type { MarkerDelay } from './analysis';
import {
  JITTER_BUFFER_MARGIN_MS,
  TAIL_MS,
  type Listening,
  type NackRun,
  type ScenarioResult,
  type Timing,
} from './scenarios';
import { ROLES, type Role } from './session';

/** Everything one run measured, as written to bench/results/network.json. */
export interface NetworkReport {
  /** When the run ended, ISO 8601. */
  measuredAt: string;
  /** CPUs, memory and Node version. */
  machine: string;
  /** The 1-minute load average at the start. */
  loadAverageAtStart: number;
  /** The cores other processes used on average during the run. */
  foreignCpuCores: number;
  /** Share of the CPUs' time the hypervisor gave to other guests during the run, in percent. */
  stealPercent: number;
  /** How the relay is put in the path, in words. */
  routing: string;
  /** The relay process's nice value. */
  relayNice: number;
  /** The dropout definition, in words. */
  dropoutDefinition: string;
  /** How long phases lasted. */
  timing: Timing;
  /** The main call's scenarios, in order. */
  scenarios: ScenarioResult[];
  /** The NACK comparison's runs. */
  nack: NackRun[];
  /** Whether Chromium offers RED, and mediasoup's refusal of it in a router (null if taken). */
  red: { chromiumOffersRed: boolean; mediasoupRefusal: string | null };
}

const DIRECTIONS: Record<Role, string> = {
  impaired: 'downlink (the impaired participant hears the clean one)',
  clean: 'uplink (the clean participant hears the impaired one)',
};
const SHORT: Record<Role, string> = { impaired: 'downlink', clean: 'uplink' };
// Scenarios with loss below 20 %, where the seeds allow no dropout.
const BELOW_20 = new Set(['good', '3G', '2G', '5 % loss']);

const seconds = (ms: number | null) => (ms === null ? '–' : `${(ms / 1000).toFixed(1)} s`);
const number = (value: number | null) =>
  value === null || Number.isNaN(value) ? '–' : String(value);

function table(header: string[], rows: string[][]): string {
  return [
    `| ${header.join(' | ')} |`,
    `|${header.map(() => '---').join('|')}|`,
    ...rows.map((row) => `| ${row.join(' | ')} |`),
  ].join('\n');
}

function isBlackout(result: ScenarioResult): boolean {
  return result.scenario.includes('blackout');
}

function capHistory(result: ScenarioResult, role: Role): string {
  const sending = result.sending[role];
  const steps = sending.changes.map((change) => `${change.kbps} at ${seconds(change.afterMs)}`);
  return [`${sending.capAtStartKbps}`, ...steps].join(' → ');
}

function dropoutCell(listening: Listening): string {
  if (listening.dropouts.length === 0) return '0';
  const each = listening.dropouts.map(
    (dropout) => `${dropout.concealedMs} ms at ${seconds(dropout.afterMs)}, ${dropout.cause}`,
  );
  return `${listening.dropouts.length}: ${each.join('; ')}`;
}

function delayCell(delay: MarkerDelay | null): string {
  if (delay === null || delay.heard === 0) return '–';
  return `${number(delay.p50)} / ${number(delay.p95)} (${delay.heard}/${delay.sent})`;
}

/** The received audio, per scenario and direction, while the impairment held. */
export function audioTable(results: readonly ScenarioResult[]): string {
  const rows = results.flatMap((result) =>
    ROLES.map((role) => {
      const listening = result.listening[role];
      const during = listening.during;
      return [
        result.scenario,
        SHORT[role],
        number(during.lossPercent),
        number(during.concealedPercent),
        `${during.concealmentEvents} (${during.meanConcealmentMs} ms)`,
        dropoutCell(listening),
        during.choppyStretches === 0
          ? '0'
          : `${during.choppyStretches} (longest ${during.longestChoppyMs} ms)`,
        number(during.jitterBufferMs),
        isBlackout(result) ? '–' : delayCell(listening.mouthToEar),
        `${during.fecPackets}${listening.fecFromMs === null ? '' : ` (from ${seconds(listening.fecFromMs)})`}`,
      ];
    }),
  );
  return table(
    [
      'scenario',
      'path',
      'loss (%)',
      'concealed (%)',
      'concealment events (mean length)',
      'dropouts > 100 ms (length, start, cause)',
      'choppy stretches (longest)',
      'jitter buffer (ms)',
      'mouth-to-ear p50 / p95 (ms) (markers heard/sent)',
      'Opus FEC packets (first)',
    ],
    rows,
  );
}

/** The microphones' bitrate caps per scenario, while the impairment held and after. */
export function adaptationTable(results: readonly ScenarioResult[]): string {
  const rows = results.map((result) => [
    result.scenario,
    capHistory(result, 'impaired'),
    seconds(result.sending.impaired.firstStepDownMs),
    number(result.sending.impaired.sentKbps),
    capHistory(result, 'clean'),
    `${result.relayLoopDelayMaxMs}`,
  ]);
  return table(
    [
      'scenario',
      'impaired mic cap (kbit/s, at time from the impairment starting)',
      'first step down',
      'impaired mic sent while impaired (kbit/s)',
      'clean mic cap',
      "relay's longest stall (ms)",
    ],
    rows,
  );
}

function recoveredCell(listening: Listening): string {
  const ms = listening.concealmentRecoveredMs;
  return ms === null ? 'not within the watch' : `${ms} ms`;
}

function jitterBufferCell(result: ScenarioResult, role: Role): string {
  const ms = result.listening[role].jitterBufferBackMs;
  return ms === null ? `not within ${seconds(result.watchedMs)}` : seconds(ms);
}

function backTo64(result: ScenarioResult, role: Role): string {
  const sending = result.sending[role];
  if (sending.stillReducedAtEnd) return `not within ${seconds(result.watchedMs)}`;
  return sending.backTo64Ms === null ? 'never left 64' : seconds(sending.backTo64Ms);
}

/** How each impaired scenario recovered once the network was restored. */
export function recoveryTable(results: readonly ScenarioResult[]): string {
  const rows = results
    .filter((result) => result.watchedMs > 0)
    .map((result) => [
      result.scenario,
      seconds(result.watchedMs),
      ROLES.map((role) => recoveredCell(result.listening[role])).join(' / '),
      ROLES.map((role) => jitterBufferCell(result, role)).join(' / '),
      ROLES.map((role) => number(result.listening[role].mouthToEarAtEnd?.p50 ?? null)).join(' / '),
      backTo64(result, 'impaired'),
      backTo64(result, 'clean'),
    ]);
  return table(
    [
      'restored after',
      'watched',
      'concealment back to normal, downlink / uplink',
      `jitter buffer back within ${JITTER_BUFFER_MARGIN_MS} ms of the good baseline, downlink / uplink`,
      `mouth-to-ear p50 in the last ${TAIL_MS / 1000} s, downlink / uplink (ms)`,
      'impaired mic back at 64 kbit/s',
      'clean mic back at 64 kbit/s',
    ],
    rows,
  );
}

/** One line per target of the seeds: the figure and whether it is met. */
export function targetsTable(results: readonly ScenarioResult[]): string {
  const below = results.filter((result) => BELOW_20.has(result.scenario));
  const dropouts = below.flatMap((result) =>
    ROLES.flatMap((role) => {
      const each = result.listening[role].dropouts.map(
        (dropout) => `${dropout.concealedMs} ms at ${seconds(dropout.afterMs)} (${dropout.cause})`,
      );
      return each.length === 0 ? [] : [`${result.scenario} ${SHORT[role]}: ${each.join(', ')}`];
    }),
  );
  const twoG = results.find((result) => result.scenario === '2G');
  const twenty = results.find((result) => result.scenario === '20 % loss');
  const adaptCell = (result: ScenarioResult | undefined) =>
    result ? `${result.scenario}: ${seconds(result.sending.impaired.firstStepDownMs)}` : '';
  const adaptMet =
    twenty !== undefined && (twenty.sending.impaired.firstStepDownMs ?? Infinity) <= 5000;
  const restored = results.filter((result) => result.watchedMs > 0);
  const settled = restored.map(
    (result) =>
      `${result.scenario}: ${ROLES.map((role) => recoveredCell(result.listening[role])).join(' / ')}`,
  );
  const settledMet = restored.every((result) =>
    ROLES.every((role) => (result.listening[role].concealmentRecoveredMs ?? Infinity) <= 2000),
  );
  const lowered = restored.filter(
    (result) =>
      result.sending.impaired.capAtStartKbps < 64 ||
      result.sending.impaired.changes.some((change) => change.kbps < 64),
  );
  const bitrate = lowered.map((result) => `${result.scenario}: ${backTo64(result, 'impaired')}`);
  return table(
    ['target (seeds)', 'measured', 'met'],
    [
      [
        'no audio dropouts below 20 % loss (good, 3G, 2G, 5 %)',
        dropouts.length === 0 ? 'none' : dropouts.join('; '),
        dropouts.length === 0 ? 'yes' : 'no',
      ],
      [
        'adaptation within 5 s: the impaired mic\'s first step down at 20 % loss (2G\'s 10 % sits at the step-down threshold, which is "above 10 %": it steps down when a 2 s report happens to exceed it)',
        [adaptCell(twenty), adaptCell(twoG)].filter(Boolean).join('; '),
        adaptMet ? 'yes (20 %)' : 'no',
      ],
      [
        'recovery within 2 s of the network being restored: concealment (downlink / uplink)',
        settled.join('; '),
        settledMet ? 'yes' : 'no',
      ],
      [
        'recovery within 2 s: the impaired mic back at 64 kbit/s',
        bitrate.join('; ') || 'its cap never changed',
        bitrate.length === 0 ? 'yes' : 'no (by design: one step up per 10 s below 2 % loss)',
      ],
    ],
  );
}

/** The NACK comparison at 20 % loss. */
export function nackTable(runs: readonly NackRun[]): string {
  const rows = runs.map((run) => [
    `${run.delayMs} ms`,
    run.nack ? 'on (both ways)' : 'off',
    ...ROLES.flatMap((role) => {
      const heard = run.listening[role];
      return [
        `${number(heard.lossPercent)} / ${number(heard.concealedPercent)}`,
        `${heard.dropouts} (${heard.longestDropoutMs} ms)`,
        String(heard.nacks),
        `${heard.fecPackets}${run.fecFromMs[role] === null ? '' : ` (from ${seconds(run.fecFromMs[role])})`}`,
      ];
    }),
    String(run.retransmitted.impaired),
    `${run.capAtEndKbps.impaired} / ${run.capAtEndKbps.clean}`,
  ]);
  return table(
    [
      'delay each way',
      'NACK for audio',
      'downlink loss / concealed (%)',
      'downlink dropouts (longest)',
      'downlink NACKs sent',
      'downlink Opus FEC packets (first)',
      'uplink loss / concealed (%)',
      'uplink dropouts (longest)',
      'uplink NACKs sent by the listener',
      'uplink Opus FEC packets (first)',
      'impaired mic packets resent',
      'caps at the end, impaired / clean (kbit/s)',
    ],
    rows,
  );
}

/** The whole report in Markdown. */
export function reportMarkdown(report: NetworkReport): string {
  const { timing } = report;
  return [
    `Measured ${report.measuredAt} on ${report.machine}. Load average ${report.loadAverageAtStart} at the start; other processes used ${report.foreignCpuCores} cores on average during the run, and the hypervisor took ${report.stealPercent} % of the CPUs' time (steal). Every impairment is held ${timing.holdMs / 1000} s (the blackout ${timing.blackoutMs / 1000} s), then the network is restored and the call watched for at least ${timing.minRecoveryMs / 1000} s and until both microphones are back at 64 kbit/s (at most ${timing.maxRecoveryMs / 1000} s). One run of each; loss, concealment and dropouts are counted while the impairment holds.`,
    '',
    `**Set-up.** ${report.routing} The relay process runs at nice ${report.relayNice}; the table of adaptation gives its longest event-loop stall per scenario.`,
    '',
    `**Received audio while impaired** (${DIRECTIONS.impaired}; ${DIRECTIONS.clean}). Loss as the receiver counts it (a packet resent in time is not lost); concealed: share of the samples played out that were concealed; mouth-to-ear: from a marker leaving the sender's synthetic voice to its detection in the receiver's Web Audio graph (no audio device latency: headless); Opus FEC packets: \`fecPacketsReceived\`, with the time of the first from the impairment starting.`,
    '',
    audioTable(report.scenarios),
    '',
    `**Adaptation** (each microphone's cap, \`RTCRtpSender.getParameters().encodings[0].maxBitrate\` read every 25 ms on its page, with the times from the impairment starting; 64 while none is set):`,
    '',
    adaptationTable(report.scenarios),
    '',
    `**Recovery** (times from the network being restored; concealment back to normal: the start of the first second with at most 1 % of its audio concealed):`,
    '',
    recoveryTable(report.scenarios),
    '',
    '**Against the seeds:**',
    '',
    targetsTable(report.scenarios),
    '',
    `**NACK for audio at 20 % loss** (each a fresh call, 20 % loss on both directions of the impaired link for ${timing.nackHoldMs / 1000} s; "on": the voice node's audio consumers with \`enableRtx: true\`, as shipped, and the microphones' Opus with \`opusNack: true\`, emulated by the benchmark; "off": neither, the consumers patched to \`enableRtx: false\` by the benchmark):`,
    '',
    nackTable(report.nack),
    '',
    `**RED:** Chromium ${report.red.chromiumOffersRed ? 'offers' : 'does not offer'} audio/red for Opus; mediasoup 3.12 ${report.red.mediasoupRefusal === null ? 'accepted it in a router' : `refuses it in a router ("${report.red.mediasoupRefusal}")`}, so it cannot be negotiated through the voice node.`,
    '',
    `**Dropouts and choppy stretches.** ${report.dropoutDefinition}`,
  ].join('\n');
}
