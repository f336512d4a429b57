// The bounded audience of bench:hls-audience: N hls.js-like viewers started evenly over the first
// seconds, sharing one pool of keep-alive connections and one cap on requests in flight, for a
// fixed time. It summarizes what the requests took and how the viewers' playback went.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { round } from '../stats';
import {
  EdgeClient,
  spreadOf,
  type KindSummary,
  type RequestKind,
  type Spread,
  type TimelineSecond,
} from './edge-client';
import { SharedPlaylists, Viewer, type ViewerOutcome } from './viewer';

// Viewers are placed on rungs by the fractional parts of multiples of the golden ratio, so every
// stretch of the ramp gets the same mix of rungs.
const GOLDEN_RATIO_FRACTION = 0.6180339887498949;
const PROGRESS_EVERY_SECONDS = 5;
// Node's event loop delay histogram samples with a timer of this period, and its values include
// the period itself (an idle loop reads about this much), so it is taken off.
const LOOP_DELAY_RESOLUTION_MS = 10;

/** What the audience does. */
export interface AudienceConfig {
  /** The edge, `http://127.0.0.1:<port>`. */
  readonly edgeUrl: string;
  /** Path of the master playlist on the edge. */
  readonly masterPath: string;
  /** Viewers in all. */
  readonly viewers: number;
  /** Seconds from the first viewer's start to the end of the run. */
  readonly seconds: number;
  /** Viewers start evenly spread over this many seconds. */
  readonly rampSeconds: number;
  /** Keep-alive connections to the edge, at most. */
  readonly connections: number;
  /** Requests in flight at once, at most. */
  readonly inFlight: number;
  /** Deadline of one request, ms. */
  readonly timeoutMs: number;
  /** Share of the viewers on each rung, highest rung first; they add up to 1. */
  readonly rungShares: readonly number[];
  /** Segment length of the stream, s: viewers ask for one segment and one playlist per segment. */
  readonly segmentSeconds: number;
}

/** Viewers of one rung. */
export interface RungOutcome {
  /** Rung name. */
  readonly name: string;
  /** Viewers on it. */
  readonly viewers: number;
  /** Mean size of the segments they loaded, bytes. */
  readonly meanSegmentBytes: number;
}

/** How the viewers' playback went, in an hls.js-like model of their buffers. */
export interface PlaybackSummary {
  /** Viewers that loaded at least one segment. */
  readonly playing: number;
  /** From a viewer's start to its first segment loaded, ms. */
  readonly startupMs: Spread;
  /** Seconds stalled over seconds watched, all viewers together. */
  readonly stalledShare: number;
  /** Viewers that stalled at least once. */
  readonly viewersStalled: number;
  /** Seconds each viewer stalled. */
  readonly stalledSeconds: Spread;
  /** Segments never loaded because they left the playlist's window first, all viewers. */
  readonly segmentsSkipped: number;
  /** Viewers that skipped at least one segment. */
  readonly viewersSkipped: number;
  /** At the end, segments between the newest listed and the last a viewer loaded. */
  readonly backlogSegments: Spread;
}

/** Request rates the viewers' cadence asks for and what the run achieved. */
export interface DemandSummary {
  /** Second of the run from which every viewer was playing; NaN when some never did. */
  readonly allPlayingFrom: number;
  /**
   * Start of the window counted as steady, s: when every viewer was playing, or else the end of
   * the ramp plus two segment lengths (0 when that leaves under 5 s).
   */
  readonly steadyFrom: number;
  /** End of the steady window, s. */
  readonly steadyTo: number;
  /** Requests per second the cadence asks for once every viewer plays. */
  readonly demandedRequestsPerSecond: number;
  /** Requests per second that ended in the steady window. */
  readonly achievedRequestsPerSecond: number;
  /** Mbit/s the viewers' rungs ask for once every viewer plays (measured segment sizes). */
  readonly demandedMbitPerSecond: number;
  /** Mbit/s received in the steady window. */
  readonly achievedMbitPerSecond: number;
  /** Requests per second that ended over the whole run. */
  readonly overallRequestsPerSecond: number;
}

/** Everything one run of the audience measured. */
export interface AudienceResult {
  /** What was run. */
  readonly config: AudienceConfig;
  /** Requests by kind. */
  readonly requests: Record<RequestKind, KindSummary>;
  /** Requests still waiting for a slot when the run ended, never sent. */
  readonly notSent: number;
  /** Sizes in bytes of media playlist answers (200) that were not media playlists. */
  readonly invalidPlaylistBytes: readonly number[];
  /** Requests ended and bytes received per second. */
  readonly timeline: readonly TimelineSecond[];
  /** Viewers per rung. */
  readonly rungs: readonly RungOutcome[];
  /** How playback went. */
  readonly playback: PlaybackSummary;
  /**
   * How late the generator's own timers ran (its event loop delay): what of the viewers'
   * latencies is the generator waiting for CPU rather than the edge.
   */
  readonly eventLoopDelayMs: Spread;
  /** Demanded and achieved rates. */
  readonly demand: DemandSummary;
}

/** What the audience tells the benchmark while it runs. */
export type AudienceMessage =
  | { readonly type: 'started' }
  | {
      readonly type: 'progress';
      readonly second: number;
      readonly endedPerSecond: number;
      readonly waiting: number;
      readonly inFlight: number;
      readonly viewers: number;
    }
  | { readonly type: 'stopping' }
  | { readonly type: 'result'; readonly result: AudienceResult };

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function loopDelayMs(nanoseconds: number): number {
  return round(Math.max(0, nanoseconds / 1e6 - LOOP_DELAY_RESOLUTION_MS));
}

function playbackOf(outcomes: readonly ViewerOutcome[]): PlaybackSummary {
  const playing = outcomes.filter((outcome) => outcome.segmentsLoaded > 0);
  const watched = playing.reduce((sum, outcome) => sum + outcome.watchedSeconds, 0);
  const stalled = playing.reduce((sum, outcome) => sum + outcome.stalledSeconds, 0);
  return {
    playing: playing.length,
    startupMs: spreadOf(playing.map((outcome) => outcome.startupMs)),
    stalledShare: watched > 0 ? round(stalled / watched, 4) : Number.NaN,
    viewersStalled: playing.filter((outcome) => outcome.stalls > 0).length,
    stalledSeconds: spreadOf(playing.map((outcome) => outcome.stalledSeconds)),
    segmentsSkipped: outcomes.reduce((sum, outcome) => sum + outcome.segmentsSkipped, 0),
    viewersSkipped: outcomes.filter((outcome) => outcome.segmentsSkipped > 0).length,
    backlogSegments: spreadOf(playing.map((outcome) => outcome.backlogSegments)),
  };
}

function rungsOf(outcomes: readonly ViewerOutcome[]): RungOutcome[] {
  const byRung = new Map<string, ViewerOutcome[]>();
  for (const outcome of outcomes) {
    const members = byRung.get(outcome.rung);
    if (members) members.push(outcome);
    else byRung.set(outcome.rung, [outcome]);
  }
  return [...byRung].map(([name, members]) => {
    const loaded = members.reduce((sum, outcome) => sum + outcome.segmentsLoaded, 0);
    const bytes = members.reduce((sum, outcome) => sum + outcome.segmentBytes, 0);
    return {
      name,
      viewers: members.length,
      meanSegmentBytes: loaded > 0 ? Math.round(bytes / loaded) : Number.NaN,
    };
  });
}

function demandOf(
  config: AudienceConfig,
  timeline: readonly TimelineSecond[],
  rungs: readonly RungOutcome[],
  outcomes: readonly ViewerOutcome[],
  startedAt: number,
): DemandSummary {
  const everyonePlaying =
    outcomes.length === config.viewers &&
    outcomes.every((outcome) => !Number.isNaN(outcome.firstSegmentAt));
  const allPlayingFrom = everyonePlaying
    ? Math.ceil(
        (outcomes.reduce((last, outcome) => Math.max(last, outcome.firstSegmentAt), 0) -
          startedAt) /
          1000,
      )
    : Number.NaN;
  // Past the ramp, each viewer's first loads (master, playlist, three segments) take about two
  // segment lengths when the edge keeps up.
  let steadyFrom = everyonePlaying
    ? allPlayingFrom
    : Math.ceil(config.rampSeconds + 2 * config.segmentSeconds);
  if (config.seconds - steadyFrom < 5) steadyFrom = 0;
  const steady = timeline.filter(({ second }) => second >= steadyFrom && second < config.seconds);
  const overall = timeline.filter(({ second }) => second < config.seconds);
  const perSecond = (seconds: readonly TimelineSecond[], pick: (s: TimelineSecond) => number) =>
    seconds.length > 0 ? seconds.reduce((sum, s) => sum + pick(s), 0) / seconds.length : Number.NaN;
  const demandedBitsPerSecond = rungs.reduce(
    (sum, rung) =>
      sum +
      (rung.viewers * (Number.isNaN(rung.meanSegmentBytes) ? 0 : rung.meanSegmentBytes) * 8) /
        config.segmentSeconds,
    0,
  );
  return {
    allPlayingFrom,
    steadyFrom,
    steadyTo: config.seconds,
    // One playlist reload and one segment per segment length (hls.js reloads once per target
    // duration while the playlist grows).
    demandedRequestsPerSecond: round((2 * config.viewers) / config.segmentSeconds),
    achievedRequestsPerSecond: round(perSecond(steady, (s) => s.ended)),
    demandedMbitPerSecond: round(demandedBitsPerSecond / 1e6),
    achievedMbitPerSecond: round((perSecond(steady, (s) => s.bytes) * 8) / 1e6),
    overallRequestsPerSecond: round(perSecond(overall, (s) => s.ended)),
  };
}

/**
 * Runs the audience against the edge for `config.seconds` and resolves with what it measured;
 * `report` hears when it starts, its progress, and when it stops sending.
 */
export async function runAudience(
  config: AudienceConfig,
  report: (message: AudienceMessage) => void,
): Promise<AudienceResult> {
  const client = new EdgeClient(new URL(config.edgeUrl), config);
  const loopDelay = monitorEventLoopDelay({ resolution: LOOP_DELAY_RESOLUTION_MS });
  loopDelay.enable();
  const shared = new SharedPlaylists();
  const viewers: Viewer[] = [];
  const runs: Promise<void>[] = [];
  const starters: NodeJS.Timeout[] = [];
  client.startTimeline();
  const startedAt = performance.now();
  report({ type: 'started' });
  for (let index = 0; index < config.viewers; index++) {
    const startAtMs = (index * config.rampSeconds * 1000) / config.viewers;
    starters.push(
      setTimeout(() => {
        const viewer = new Viewer({
          client,
          shared,
          masterPath: config.masterPath,
          rungPosition: (index * GOLDEN_RATIO_FRACTION) % 1,
          rungShares: config.rungShares,
        });
        viewers.push(viewer);
        runs.push(viewer.run());
      }, startAtMs),
    );
  }
  const progress = setInterval(() => {
    const recent = client.timeline.slice(-PROGRESS_EVERY_SECONDS);
    report({
      type: 'progress',
      second: client.timeline.length,
      endedPerSecond: Math.round(
        recent.reduce((sum, s) => sum + s.ended, 0) / Math.max(1, recent.length),
      ),
      waiting: client.waiting,
      inFlight: client.inFlight,
      viewers: viewers.length,
    });
  }, PROGRESS_EVERY_SECONDS * 1000);
  await delay(config.seconds * 1000);

  clearInterval(progress);
  for (const starter of starters) clearTimeout(starter);
  for (const viewer of viewers) viewer.stop();
  const outcomes = viewers.map((viewer) => viewer.outcome(shared.newest(viewer.rung ?? '')));
  loopDelay.disable();
  const notSent = client.stopSending();
  report({ type: 'stopping' });
  // Requests already sent are let finish (each has its deadline), so none is cut short.
  const drainDeadline = performance.now() + config.timeoutMs + 1000;
  while (client.inFlight > 0 && performance.now() < drainDeadline) await delay(50);
  await Promise.all(runs);
  const rungs = rungsOf(outcomes);
  const result: AudienceResult = {
    config,
    requests: client.summaries(),
    notSent,
    invalidPlaylistBytes: shared.invalidPlaylistBytes,
    timeline: client.timeline,
    rungs,
    playback: playbackOf(outcomes),
    eventLoopDelayMs: {
      p50: loopDelayMs(loopDelay.percentile(50)),
      p95: loopDelayMs(loopDelay.percentile(95)),
      p99: loopDelayMs(loopDelay.percentile(99)),
      max: loopDelayMs(loopDelay.max),
    },
    demand: demandOf(config, client.timeline, rungs, outcomes, startedAt),
  };
  client.close();
  return result;
}
