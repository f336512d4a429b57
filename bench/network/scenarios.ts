// The scenarios of bench:network (issue 11 §3) and how one call is driven through them: each
// impairment is held, then the network is restored and the call watched until both microphones'
// bitrate caps are back at 64 kbit/s; and the NACK comparison at 20 % loss.
import {
  IMPAIRMENT_PROFILES,
  type DirectionImpairment,
  type ImpairmentPatch,
} from '../../e2e/support/impairment';
import { round } from '../stats';
import {
  capAt,
  capChanges,
  concealmentRecoveredAfter,
  jitterBufferBackAfter,
  markerDelay,
  receivedAudio,
  sentKbps,
  type CapChange,
  type DropoutCause,
  type MarkerDelay,
  type ReceivedAudio,
} from './analysis';
import type { IceChange } from './page-hook';
import { ROLES, startCall, type Call, type Role } from './session';

/** How far above the good baseline the jitter buffer may stay and count as back, in ms. */
export const JITTER_BUFFER_MARGIN_MS = 20;

/** The end of a recovery watch over which the mouth-to-ear delay is taken again. */
export const TAIL_MS = 5000;

/** One network condition, applied to both directions of the impaired participant's link. */
export interface Scenario {
  /** Short name, as in the table. */
  name: string;
  /** What the relay does. */
  description: string;
  /** The relay's settings. */
  impairment: DirectionImpairment;
  /** How long it is held, in ms. */
  holdMs: number;
}

/** How long phases last. */
export interface Timing {
  /** An impairment is held this long (a blackout lasts `blackoutMs`). */
  holdMs: number;
  /** The blackout. */
  blackoutMs: number;
  /** After the network is restored, the call is watched at least this long. */
  minRecoveryMs: number;
  /** And at most this long, waiting for both bitrate caps to be back at 64 kbit/s. */
  maxRecoveryMs: number;
  /** Each run of the NACK comparison holds 20 % loss this long. */
  nackHoldMs: number;
}

/** The scenarios, in the order they run. */
export function scenarios(timing: Timing): Scenario[] {
  return [
    { name: 'good', description: 'nothing impaired', impairment: IMPAIRMENT_PROFILES.good },
    {
      name: '3G',
      description: '3 % loss, 100 ms, 1 Mbit/s (250 ms queue)',
      impairment: IMPAIRMENT_PROFILES['3g'],
    },
    {
      name: '2G',
      description: '10 % loss, 200 ms, 256 kbit/s (500 ms queue)',
      impairment: IMPAIRMENT_PROFILES['2g'],
    },
    { name: '5 % loss', description: '5 % random loss', impairment: IMPAIRMENT_PROFILES['loss-5'] },
    {
      name: '20 % loss',
      description: '20 % random loss',
      impairment: IMPAIRMENT_PROFILES['loss-20'],
    },
    {
      name: `${timing.blackoutMs / 1000} s blackout`,
      description: 'every packet dropped',
      impairment: IMPAIRMENT_PROFILES.blackout,
    },
  ].map((scenario) => ({
    ...scenario,
    holdMs: scenario.impairment.blackout ? timing.blackoutMs : timing.holdMs,
  }));
}

/** A dropout during a phase. */
export interface PhaseDropout {
  /** When it began, ms from the impairment starting. */
  afterMs: number;
  /** Its length, in ms of concealed audio. */
  concealedMs: number;
  /** Whether packets were lost or late (see `DropoutCause`). */
  cause: DropoutCause;
  /** Packets counted lost around it. */
  lostPackets: number;
}

/** What one participant heard of the other during a phase. */
export interface Listening {
  /** While the impairment held. */
  during: ReceivedAudio;
  /** From the restore to the end of the recovery watch. */
  after: ReceivedAudio | null;
  /**
   * Ms from the restore to the start of the first second with at most 1 % of its audio
   * concealed, or null when there was none in the watch.
   */
  concealmentRecoveredMs: number | null;
  /** Mouth-to-ear delay of the markers heard while the impairment held. */
  mouthToEar: MarkerDelay;
  /** Each dropout while the impairment held: when it began (ms from the start), its length, cause. */
  dropouts: PhaseDropout[];
  /**
   * Ms from the restore to the start of the first second whose jitter buffer delay was back
   * within `JITTER_BUFFER_MARGIN_MS` of the good baseline's, or null when it was not in the watch.
   */
  jitterBufferBackMs: number | null;
  /** Mouth-to-ear delay of the markers heard in the last `TAIL_MS` of the recovery watch. */
  mouthToEarAtEnd: MarkerDelay | null;
  /** Ms from the start until the first Opus FEC packet arrived, or null if none did. */
  fecFromMs: number | null;
}

/** What happened to one participant's microphone during a phase. */
export interface Sending {
  /** The bitrate cap when the phase started, in kbit/s. */
  capAtStartKbps: number;
  /** Cap changes from the start of the phase to the end of its recovery watch (ms from start). */
  changes: { afterMs: number; kbps: number }[];
  /** Ms from the impairment starting to the first step down while it held, or null. */
  firstStepDownMs: number | null;
  /** Ms from the restore until the cap was back at 64 kbit/s to stay, or null if it never left. */
  backTo64Ms: number | null;
  /** Whether the cap was still below 64 kbit/s when the watch ended. */
  stillReducedAtEnd: boolean;
  /** What the microphone sent while the impairment held, in kbit/s. */
  sentKbps: number;
}

/** One scenario's figures. */
export interface ScenarioResult {
  /** The scenario's short name. */
  scenario: string;
  /** What the relay did. */
  description: string;
  /** How long the impairment held, in ms. */
  heldMs: number;
  /** How long the call was watched after the restore, in ms (0 for the baseline). */
  watchedMs: number;
  /** Per listener: `impaired` hears `clean` through its downlink, `clean` hears `impaired`. */
  listening: Record<Role, Listening>;
  /** Per sender. */
  sending: Record<Role, Sending>;
  /** ICE state changes of the impaired page, ms from the start of the phase. */
  ice: { afterMs: number; connection: number; state: string }[];
  /** The relay process's longest event-loop delay in the phase (a bound on what it added), ms. */
  relayLoopDelayMaxMs: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const now = () => performance.timeOrigin + performance.now();
const other = (role: Role): Role => (role === 'impaired' ? 'clean' : 'impaired');

function listening(
  call: Call,
  role: Role,
  phase: { start: number; restoredAt: number | null; end: number },
  baselineJitterBufferMs: number,
  markerPeriodMs: number,
): Listening {
  const { start, restoredAt, end } = phase;
  const { inbound, markersHeard } = call.record(role);
  const sent = call.record(other(role)).markersSent;
  const heldUntil = restoredAt ?? end;
  const during = receivedAudio(inbound, start, heldUntil);
  return {
    during,
    after: restoredAt === null ? null : receivedAudio(inbound, restoredAt, end),
    concealmentRecoveredMs:
      restoredAt === null ? null : concealmentRecoveredAfter(inbound, restoredAt, end),
    jitterBufferBackMs:
      restoredAt === null
        ? null
        : jitterBufferBackAfter(
            inbound,
            restoredAt,
            end,
            baselineJitterBufferMs + JITTER_BUFFER_MARGIN_MS,
          ),
    mouthToEar: markerDelay(sent, markersHeard, start, heldUntil, markerPeriodMs),
    dropouts: during.dropoutList.map((dropout) => ({
      afterMs: round(dropout.startAt - start),
      concealedMs: dropout.concealedMs,
      cause: dropout.cause,
      lostPackets: dropout.lostPackets,
    })),
    mouthToEarAtEnd:
      restoredAt === null
        ? null
        : markerDelay(sent, markersHeard, Math.max(restoredAt, end - TAIL_MS), end, markerPeriodMs),
    fecFromMs: during.firstFecAt === null ? null : round(during.firstFecAt - start),
  };
}

function sending(call: Call, role: Role, start: number, restoredAt: number | null, end: number) {
  const samples = call.record(role).sender;
  const capAtStartKbps = capAt(samples, start);
  const changes: CapChange[] = capChanges(samples, start, end);
  const heldUntil = restoredAt ?? end;
  const firstDown = changes.find((change) => change.at < heldUntil);
  const reduced = capAtStartKbps < 64 || changes.some((change) => change.kbps < 64);
  const finalCap = changes.at(-1)?.kbps ?? capAtStartKbps;
  const lastUp = changes.findLast((change) => change.kbps === 64);
  return {
    capAtStartKbps,
    changes: changes.map((change) => ({ afterMs: round(change.at - start), kbps: change.kbps })),
    firstStepDownMs:
      firstDown && firstDown.kbps < capAtStartKbps ? round(firstDown.at - start) : null,
    backTo64Ms:
      !reduced || restoredAt === null || finalCap < 64 || !lastUp
        ? null
        : round(Math.max(0, lastUp.at - restoredAt)),
    stillReducedAtEnd: finalCap < 64,
    sentKbps: sentKbps(samples, start, heldUntil),
  } satisfies Sending;
}

function iceChanges(changes: readonly IceChange[], start: number, end: number) {
  return changes
    .filter((change) => change.at >= start && change.at < end)
    .map((change) => ({
      afterMs: round(change.at - start),
      connection: change.connection,
      state: change.state,
    }));
}

function bothCapsAt64(call: Call): boolean {
  return ROLES.every((role) => {
    const last = call.record(role).sender.at(-1);
    return !last || last.maxBitrate === null || last.maxBitrate === 64_000;
  });
}

/**
 * Drives one call through `list`: `good` is held as the baseline; every other scenario is held,
 * the network restored, and the call watched until both caps are back at 64 kbit/s.
 */
export async function runScenarios(
  call: Call,
  list: readonly Scenario[],
  timing: Timing,
  markerPeriodMs: number,
  log: (line: string) => void,
): Promise<ScenarioResult[]> {
  const results: ScenarioResult[] = [];
  const baseline: Record<Role, number> = { impaired: Infinity, clean: Infinity };
  for (const scenario of list) {
    const restores = scenario.impairment !== IMPAIRMENT_PROFILES.good;
    log(`${scenario.name}: ${scenario.description}, ${scenario.holdMs / 1000} s`);
    const { at: start } = await call.impair(scenario.impairment);
    await sleep(scenario.holdMs);
    let restoredAt: number | null = null;
    let end = now();
    let relayLoopDelayMaxMs: number;
    if (restores) {
      const restored = await call.impair(IMPAIRMENT_PROFILES.good);
      restoredAt = restored.at;
      relayLoopDelayMaxMs = restored.loopDelayMaxMs;
      do {
        await sleep(500);
        await call.flush();
        end = now();
      } while (
        end - restoredAt < timing.maxRecoveryMs &&
        (end - restoredAt < timing.minRecoveryMs || !bothCapsAt64(call))
      );
      relayLoopDelayMaxMs = Math.max(
        relayLoopDelayMaxMs,
        (await call.relayStatus()).loopDelayMaxMs,
      );
    } else {
      relayLoopDelayMaxMs = (await call.relayStatus()).loopDelayMaxMs;
    }
    await call.flush();
    const phase = { start, restoredAt, end };
    const result: ScenarioResult = {
      scenario: scenario.name,
      description: scenario.description,
      heldMs: round((restoredAt ?? end) - start),
      watchedMs: restoredAt === null ? 0 : round(end - restoredAt),
      listening: {
        impaired: listening(call, 'impaired', phase, baseline.impaired, markerPeriodMs),
        clean: listening(call, 'clean', phase, baseline.clean, markerPeriodMs),
      },
      sending: {
        impaired: sending(call, 'impaired', start, restoredAt, end),
        clean: sending(call, 'clean', start, restoredAt, end),
      },
      ice: iceChanges(call.record('impaired').ice, start, end),
      relayLoopDelayMaxMs: round(relayLoopDelayMaxMs),
    };
    log(JSON.stringify(result));
    results.push(result);
    if (!restores) {
      // The good baseline's jitter buffer, which recoveries are measured against.
      for (const role of ROLES) baseline[role] = result.listening[role].during.jitterBufferMs;
    }
  }
  return results;
}

/** One run of the NACK comparison. */
export interface NackRun {
  /** NACK for audio both ways, or neither (the node ships it on the downlink only). */
  nack: boolean;
  /** One-way delay added to each direction besides the loss, in ms. */
  delayMs: number;
  /** What each participant heard while 20 % loss held. */
  listening: Record<Role, ReceivedAudio>;
  /** Packets the microphones resent, per sender. */
  retransmitted: Record<Role, number>;
  /** Ms from the loss starting to the first Opus FEC packet each listener got, or null. */
  fecFromMs: Record<Role, number | null>;
  /** Each microphone's cap when the loss ended, in kbit/s. */
  capAtEndKbps: Record<Role, number>;
}

/**
 * Measures 20 % loss (plus `delayMs` each way) on a fresh call with or without NACK for audio,
 * after 2 s of clean network.
 */
export async function runNackComparison(
  variant: { nack: boolean; delayMs: number },
  options: { seed: number; markerPeriodMs: number; pollMs: number; holdMs: number },
  log: (line: string) => void,
): Promise<NackRun> {
  const call = await startCall({
    channel: `network-nack-${variant.nack ? 'on' : 'off'}-${variant.delayMs}`,
    seed: options.seed,
    nack: variant.nack ? 'both' : 'off',
    markerPeriodMs: options.markerPeriodMs,
    pollMs: options.pollMs,
  });
  try {
    await sleep(2000);
    const patch: ImpairmentPatch = { lossPercent: 20, delayMs: variant.delayMs };
    const { at: start } = await call.impair(patch);
    await sleep(options.holdMs);
    const end = now();
    await call.flush();
    const retransmitted = (role: Role) => {
      const samples = call.record(role).sender.filter((s) => s.at >= start && s.at < end);
      const first = samples[0];
      const last = samples.at(-1);
      return first && last ? last.retransmittedPacketsSent - first.retransmittedPacketsSent : 0;
    };
    const heard = {
      impaired: receivedAudio(call.record('impaired').inbound, start, end),
      clean: receivedAudio(call.record('clean').inbound, start, end),
    };
    const fecFrom = (role: Role) => {
      const at = heard[role].firstFecAt;
      return at === null ? null : round(at - start);
    };
    const run: NackRun = {
      ...variant,
      listening: heard,
      fecFromMs: { impaired: fecFrom('impaired'), clean: fecFrom('clean') },
      retransmitted: { impaired: retransmitted('impaired'), clean: retransmitted('clean') },
      capAtEndKbps: {
        impaired: capAt(call.record('impaired').sender, end),
        clean: capAt(call.record('clean').sender, end),
      },
    };
    log(JSON.stringify(run));
    return run;
  } finally {
    await call.close();
  }
}
