// Pure functions that turn what the pages recorded into bench:network's figures.
import { percentile, round } from '../stats';
import type { InboundSample, SenderSample } from './page-hook';

/** Samples per millisecond of the audio Chromium plays out (48 kHz for Opus). */
const SAMPLES_PER_MS = 48;

/** The measurable definitions of a dropout and of a choppy stretch used throughout. */
export const DROPOUT = {
  /** A gap is a dropout when it lasts longer than this, in ms. */
  minMs: 100,
  /** A window counts as concealed throughout when at least this share of it was concealed. */
  fullShare: 0.9,
  /** A window counts as choppy when at least this share of its audio was concealed. */
  choppyShare: 0.5,
} as const;

/** The definitions in words, for the report. */
export const DROPOUT_DEFINITION =
  `The receiver's inbound-rtp audio statistics are read every 25 ms (Chromium refreshes them ` +
  `about every 50 ms); each window between two refreshes gives the samples played out ` +
  `(totalSamplesReceived), those concealed (concealedSamples) and the concealment events that ` +
  `began (concealmentEvents: runs of consecutive concealed samples). A **dropout** is one ` +
  `concealment event longer than ${DROPOUT.minMs} ms, followed from window to window: ` +
  `concealment in a window where no event began continues it, and it ends in a window without ` +
  `concealment or where another event began (two events in a window concealed throughout, at ` +
  `least ${DROPOUT.fullShare * 100} %, count as one gap); measured to within one window. ` +
  `A **choppy stretch** is looser: consecutive windows each at least ` +
  `${DROPOUT.choppyShare * 100} % concealed, holding more than ${DROPOUT.minMs} ms of ` +
  `concealment with the windows on either side (many short losses close together). Audio that ` +
  `Opus FEC or a retransmission restored in time is not concealed. Each dropout's cause: ` +
  `**loss** when the packets counted lost around it cover at least half of it; **late** when ` +
  `they do not, so packets came too late to be played (a delay stepping up at once, or a stall ` +
  `of some process on the path); **outage** when it lasted over a second (Chromium counts no ` +
  `loss in a gap of more than 50 packets, which it takes for a stream restart).`;

/** One window between two distinct statistics reports. */
interface Window {
  start: number;
  end: number;
  concealed: number;
  total: number;
  /** Concealment events that began in it. */
  events: number;
}

/** A stretch of concealed audio: a dropout or a choppy stretch. */
export interface Dropout {
  /** Wall-clock start of its first window, in ms. */
  startAt: number;
  /** Wall-clock end of its last window, in ms. */
  endAt: number;
  /** Concealed audio in it, in ms. */
  concealedMs: number;
}

/**
 * Why a dropout happened: `outage` when it lasted over a second (Chromium takes a gap of more
 * than 50 sequence numbers for a stream restart and counts none of it lost, so the counter
 * cannot tell); else `loss` when the packets counted lost around it (20 ms of audio each) cover
 * at least half of it; else `late`: packets came too late to be played, after a delay that
 * stepped up or a stall on the way (on a shared machine, any process on the path).
 */
export type DropoutCause = 'outage' | 'loss' | 'late';

/** Dropouts longer than this are outages (see `DropoutCause`), in ms. */
const OUTAGE_MS = 1000;

/** A dropout with its cause. */
export interface ClassifiedDropout extends Dropout {
  /** Packets counted lost from 50 ms before it to 150 ms after it. */
  lostPackets: number;
  cause: DropoutCause;
}

/** Milliseconds of audio in one Opus packet (WebRTC's 20 ms frames). */
const PACKET_MS = 20;

/** Figures of the received audio over one stretch of time. */
export interface ReceivedAudio {
  /** Concealed samples over samples played out, in percent. */
  concealedPercent: number;
  /** Packets the receiver counted lost, in percent of those expected. */
  lossPercent: number;
  /** Concealment events (runs of concealed samples). */
  concealmentEvents: number;
  /** Mean length of a concealment event, in ms. */
  meanConcealmentMs: number;
  /** Dropouts (see `DROPOUT_DEFINITION`). */
  dropouts: number;
  /** Each dropout, with its cause. */
  dropoutList: ClassifiedDropout[];
  /** The longest dropout, in ms of concealed audio; 0 without one. */
  longestDropoutMs: number;
  /** Concealed audio inside dropouts, in ms. */
  dropoutMs: number;
  /** Choppy stretches (see `DROPOUT_DEFINITION`). */
  choppyStretches: number;
  /** The longest choppy stretch, in ms of concealed audio; 0 without one. */
  longestChoppyMs: number;
  /** Mean time a sample spent in the jitter buffer, in ms. */
  jitterBufferMs: number;
  /** Packets with Opus FEC data the receiver got (`fecPacketsReceived`). */
  fecPackets: number;
  /** Wall-clock time of the first report counting a new FEC packet, in ms, or null. */
  firstFecAt: number | null;
  /** NACKs the receiver sent. */
  nacks: number;
  /** Seconds of audio covered. */
  seconds: number;
}

/** The reports of `samples` within [from, to), one per distinct statistics timestamp. */
export function reportsBetween(
  samples: readonly InboundSample[],
  from: number,
  to: number,
): InboundSample[] {
  const reports: InboundSample[] = [];
  for (const sample of samples) {
    if (sample.statsAt < from || sample.statsAt >= to) continue;
    if (reports.length > 0 && reports.at(-1)!.statsAt === sample.statsAt) continue;
    reports.push(sample);
  }
  return reports;
}

function windowsOf(reports: readonly InboundSample[]): Window[] {
  const windows: Window[] = [];
  for (let index = 1; index < reports.length; index++) {
    const previous = reports[index - 1]!;
    const current = reports[index]!;
    const total = current.totalSamplesReceived - previous.totalSamplesReceived;
    // A counter that went back belongs to a new stream; a window that played nothing says nothing.
    if (total <= 0) continue;
    windows.push({
      start: previous.statsAt,
      end: current.statsAt,
      concealed: Math.min(total, Math.max(0, current.concealedSamples - previous.concealedSamples)),
      total,
      events: Math.max(0, current.concealmentEvents - previous.concealmentEvents),
    });
  }
  return windows;
}

function stretch(startAt: number, endAt: number, samples: number): Dropout[] {
  const concealedMs = samples / SAMPLES_PER_MS;
  return concealedMs > DROPOUT.minMs ? [{ startAt, endAt, concealedMs: round(concealedMs) }] : [];
}

/** Classifies each dropout by the packets counted lost around it (see `DropoutCause`). */
export function classifyDropouts(
  reports: readonly InboundSample[],
  dropouts: readonly Dropout[],
): ClassifiedDropout[] {
  return dropouts.map((dropout) => {
    // Chromium counts a packet lost once a later one arrives, which is before the audio after
    // the gap plays, so the count has settled by the end of the dropout.
    const before = reports.findLast((report) => report.statsAt <= dropout.startAt - 50);
    const after = reports.find((report) => report.statsAt >= dropout.endAt + 150) ?? reports.at(-1);
    const lostPackets = Math.max(
      0,
      (after?.packetsLost ?? 0) - (before ?? reports[0])!.packetsLost,
    );
    const cause: DropoutCause =
      dropout.concealedMs > OUTAGE_MS
        ? 'outage'
        : lostPackets * PACKET_MS >= 0.5 * dropout.concealedMs
          ? 'loss'
          : 'late';
    return { ...dropout, lostPackets, cause };
  });
}

/**
 * The dropouts in a series of reports: concealment events longer than 100 ms, followed window by
 * window. Concealment in a window where no event began continues the ongoing event (the two
 * counters are not read at quite the same instant, so a window concealed throughout can show a
 * few percent more or less than it played). In a window where one began, the ongoing event
 * ended, unless the window was concealed throughout (the two are then one gap, a few ms apart at
 * most); the new event's share of the window is all of its concealment when none was ongoing,
 * and none of it otherwise, so an event is measured to within one window.
 */
export function dropoutsOf(reports: readonly InboundSample[]): Dropout[] {
  const dropouts: Dropout[] = [];
  let current: { startAt: number; endAt: number; samples: number } | null = null;
  const close = () => {
    if (current) dropouts.push(...stretch(current.startAt, current.endAt, current.samples));
    current = null;
  };
  for (const window of windowsOf(reports)) {
    const throughout = window.concealed >= DROPOUT.fullShare * window.total;
    if (window.events === 0 || (current && throughout)) {
      if (window.concealed === 0) {
        close();
      } else if (current) {
        current.samples += window.concealed;
        current.endAt = window.end;
      } else {
        current = { startAt: window.start, endAt: window.end, samples: window.concealed };
      }
      continue;
    }
    const head = current ? 0 : window.concealed;
    close();
    current = { startAt: window.start, endAt: window.end, samples: head };
  }
  close();
  return dropouts;
}

/** The choppy stretches in a series of reports (see `DROPOUT_DEFINITION`). */
export function choppyStretchesOf(reports: readonly InboundSample[]): Dropout[] {
  const windows = windowsOf(reports);
  const choppy = windows.map((window) => window.concealed >= DROPOUT.choppyShare * window.total);
  const stretches: Dropout[] = [];
  let index = 0;
  while (index < windows.length) {
    if (!choppy[index]) {
      index++;
      continue;
    }
    const first = index;
    while (index < windows.length && choppy[index]) index++;
    let samples = 0;
    for (let inside = first; inside < index; inside++) samples += windows[inside]!.concealed;
    samples += first > 0 ? windows[first - 1]!.concealed : 0;
    samples += index < windows.length ? windows[index]!.concealed : 0;
    stretches.push(...stretch(windows[first]!.start, windows[index - 1]!.end, samples));
  }
  return stretches;
}

/**
 * Milliseconds from `from` to the start of the first second within [from, to) in which at most
 * `share` of the audio played out was concealed, or null if there is none: when the received
 * audio was back to normal, whatever happens later.
 */
export function concealmentRecoveredAfter(
  samples: readonly InboundSample[],
  from: number,
  to: number,
  share = 0.01,
): number | null {
  const windows = windowsOf(reportsBetween(samples, from, to));
  for (let first = 0; first < windows.length; first++) {
    let concealed = 0;
    let total = 0;
    for (let index = first; index < windows.length; index++) {
      concealed += windows[index]!.concealed;
      total += windows[index]!.total;
      if (windows[index]!.end - windows[first]!.start >= 1000) {
        if (concealed <= share * total) return round(Math.max(0, windows[first]!.start - from));
        break;
      }
    }
  }
  return null;
}

/** Figures of the received audio from `samples` within [from, to). */
export function receivedAudio(
  samples: readonly InboundSample[],
  from: number,
  to: number,
): ReceivedAudio {
  const reports = reportsBetween(samples, from, to);
  const first = reports[0];
  const last = reports.at(-1);
  // The loss behind a dropout is counted once packets flow again, which may be after `to`.
  const dropouts = classifyDropouts(
    reportsBetween(samples, from - 1000, to + 2000),
    dropoutsOf(reports),
  );
  const choppy = choppyStretchesOf(reports);
  if (!first || !last || first === last) {
    return {
      concealedPercent: Number.NaN,
      lossPercent: Number.NaN,
      concealmentEvents: 0,
      meanConcealmentMs: 0,
      dropouts: 0,
      dropoutList: [],
      longestDropoutMs: 0,
      dropoutMs: 0,
      choppyStretches: 0,
      longestChoppyMs: 0,
      jitterBufferMs: Number.NaN,
      fecPackets: 0,
      firstFecAt: null,
      nacks: 0,
      seconds: 0,
    };
  }
  const firstFec = reports.find((report) => report.fecPacketsReceived > first.fecPacketsReceived);
  const delta = (key: keyof InboundSample) => Math.max(0, last[key] - first[key]);
  const concealed = delta('concealedSamples');
  const total = delta('totalSamplesReceived');
  const lost = delta('packetsLost');
  const expected = lost + delta('packetsReceived');
  const events = delta('concealmentEvents');
  const emitted = delta('jitterBufferEmittedCount');
  return {
    // The two counters are not read at quite the same instant; a stretch that was all
    // concealment can come out a hair above 100 %.
    concealedPercent: total === 0 ? Number.NaN : round(Math.min(100, (100 * concealed) / total), 2),
    lossPercent: expected === 0 ? Number.NaN : round((100 * lost) / expected, 1),
    concealmentEvents: events,
    meanConcealmentMs: events === 0 ? 0 : round(concealed / SAMPLES_PER_MS / events),
    dropouts: dropouts.length,
    dropoutList: dropouts,
    longestDropoutMs: Math.max(0, ...dropouts.map((dropout) => dropout.concealedMs)),
    dropoutMs: round(dropouts.reduce((sum, dropout) => sum + dropout.concealedMs, 0)),
    choppyStretches: choppy.length,
    longestChoppyMs: Math.max(0, ...choppy.map((stretch) => stretch.concealedMs)),
    jitterBufferMs:
      emitted === 0 ? Number.NaN : round((1000 * delta('jitterBufferDelay')) / emitted),
    fecPackets: delta('fecPacketsReceived'),
    firstFecAt: firstFec?.statsAt ?? null,
    nacks: delta('nackCount'),
    seconds: round((last.statsAt - first.statsAt) / 1000),
  };
}

/**
 * Milliseconds from `from` to the start of the first second within [from, to) whose samples
 * spent at most `limitMs` in the jitter buffer on average, or null if there is none.
 */
export function jitterBufferBackAfter(
  samples: readonly InboundSample[],
  from: number,
  to: number,
  limitMs: number,
): number | null {
  const reports = reportsBetween(samples, from, to);
  for (let first = 0; first < reports.length; first++) {
    const start = reports[first]!;
    const end = reports.find((report) => report.statsAt - start.statsAt >= 1000);
    if (!end) break;
    const emitted = end.jitterBufferEmittedCount - start.jitterBufferEmittedCount;
    if (emitted <= 0) continue;
    const meanMs = (1000 * (end.jitterBufferDelay - start.jitterBufferDelay)) / emitted;
    if (meanMs <= limitMs) return round(Math.max(0, start.statsAt - from));
  }
  return null;
}

/** The microphone's bitrate cap of a sender sample, in kbit/s (64 while none is set). */
export function capKbps(sample: SenderSample): number {
  return sample.maxBitrate === null ? 64 : sample.maxBitrate / 1000;
}

/** A change of the microphone's bitrate cap. */
export interface CapChange {
  /** Wall-clock time of the first sample showing it, in ms. */
  at: number;
  /** The new cap, in kbit/s. */
  kbps: number;
}

/** The changes of the cap among `samples` within [from, to), after the cap in force at `from`. */
export function capChanges(
  samples: readonly SenderSample[],
  from: number,
  to: number,
): CapChange[] {
  const changes: CapChange[] = [];
  let current: number | undefined;
  for (const sample of samples) {
    if (sample.at >= to) break;
    const kbps = capKbps(sample);
    if (sample.at < from) {
      current = kbps;
      continue;
    }
    if (current !== undefined && kbps !== current) changes.push({ at: sample.at, kbps });
    current = kbps;
  }
  return changes;
}

/** The cap in force at `at`, from the last sample before it (64 without one). */
export function capAt(samples: readonly SenderSample[], at: number): number {
  const before = samples.findLast((sample) => sample.at <= at);
  return before ? capKbps(before) : 64;
}

/** What the microphone sent within [from, to), in kbit/s of RTP payload. */
export function sentKbps(samples: readonly SenderSample[], from: number, to: number): number {
  const inside = samples.filter((sample) => sample.at >= from && sample.at < to);
  const first = inside[0];
  const last = inside.at(-1);
  if (!first || !last || last.at === first.at) return Number.NaN;
  return round((8 * (last.bytesSent - first.bytesSent)) / (last.at - first.at));
}

/** Mouth-to-ear delay of markers: p50 and p95 in ms, and how many of those sent were heard. */
export interface MarkerDelay {
  /** Median delay, in ms. */
  p50: number;
  /** 95th percentile, in ms. */
  p95: number;
  /** Markers heard and paired with the one sent before them. */
  heard: number;
  /** Markers sent in the same stretch. */
  sent: number;
}

/**
 * Pairs each marker heard within [from, to) with the last marker sent before it, no more than
 * `periodMs` earlier (markers are `periodMs` apart, and delays are shorter than that).
 */
export function markerDelay(
  sent: readonly number[],
  heard: readonly number[],
  from: number,
  to: number,
  periodMs: number,
): MarkerDelay {
  const delays: number[] = [];
  for (const at of heard) {
    if (at < from || at >= to) continue;
    const source = sent.findLast((sentAt) => sentAt <= at);
    if (source !== undefined && at - source < periodMs) delays.push(at - source);
  }
  return {
    p50: round(percentile(delays, 50)),
    p95: round(percentile(delays, 95)),
    heard: delays.length,
    sent: sent.filter((at) => at >= from && at < to).length,
  };
}
