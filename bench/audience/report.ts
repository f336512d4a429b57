// The figures of one bench:hls-audience run, and the markdown that bench/results/hls-audience.md
// and the README's section show.
import type { RenditionInfo } from '@hearth/protocol';
import { round } from '../stats';
import type { AudienceResult } from './audience';
import { REQUEST_KINDS, type RequestKind, type Spread } from './edge-client';
import type { EdgeLogSummary } from './edge-log';

/** Cores one part of the set-up used over the run (1 = one core busy). */
export interface CpuShare {
  /** What it is. */
  readonly part: string;
  /** Cores used, from /proc. */
  readonly cores: number;
}

/** Everything a run measured. */
export interface HlsAudienceReport {
  /** When the run ended, ISO 8601. */
  readonly measuredAt: string;
  /** CPU, memory and Node version. */
  readonly machine: string;
  /** The 1-minute load average when the benchmark started. */
  readonly loadAverageAtStart: number;
  /** The stream's rungs as the api lists them. */
  readonly renditions: readonly RenditionInfo[];
  /** Segments of every rung uploaded to S3 during the run. */
  readonly segmentsProduced: number;
  /** Each time the ladder fell behind and was restarted with cheaper settings, what changed. */
  readonly ladderAdaptations: readonly string[];
  /** What the viewers measured. */
  readonly audience: AudienceResult;
  /** What the edge's access log says about the same stretch. */
  readonly edgeLog: EdgeLogSummary;
  /** CPU of each part over the run. */
  readonly cpu: readonly CpuShare[];
}

/** The figures the issue asks for, derived from a report. */
export interface Headline {
  /** Requests the edge answered without an origin request, over all requests (access log). */
  readonly edgeHitRatio: number;
  /** The same, leaving out the master playlist (never cached by design). */
  readonly edgeHitRatioCacheable: number;
  /** Answers whose X-Cache-Status was HIT, over all answers the viewers got. */
  readonly xCacheStatusHitShare: number;
  /** Origin GETs of segments per different segment the viewers asked for (all rungs). */
  readonly originRequestsPerSegment: number;
  /**
   * Origin GETs of segments per segment produced during the run: above the figure before, since
   * viewers also load the segments listed when they start.
   */
  readonly originRequestsPerSegmentProduced: number;
  /** Origin GETs of media playlists per second, all rungs. */
  readonly originPlaylistRequestsPerSecond: number;
  /** Requests that failed or timed out. */
  readonly errors: number;
}

const KIND_LABELS: Record<RequestKind, string> = {
  master: 'master playlist',
  playlist: 'media playlist',
  segment: 'segment',
};

function ratio(part: number, whole: number, digits = 4): number {
  return whole > 0 ? round(part / whole, digits) : Number.NaN;
}

function percent(value: number): string {
  return `${round(value * 100, 2)} %`;
}

function spread(value: Spread, digits = 1): string {
  return [value.p50, value.p95, value.p99].map((v) => round(v, digits)).join(' / ');
}

function counts(record: Record<string, number>): string {
  const entries = Object.entries(record).sort((a, b) => b[1] - a[1]);
  return entries.length === 0 ? '-' : entries.map(([key, n]) => `${key} ${n}`).join(', ');
}

/** The issue's figures from a report. */
export function headlineOf(report: HlsAudienceReport): Headline {
  const { edgeLog, audience } = report;
  const logged = REQUEST_KINDS.map((kind) => edgeLog[kind]);
  const cacheable = logged.filter((_, index) => REQUEST_KINDS[index] !== 'master');
  const sum = (kinds: typeof logged, pick: (kind: (typeof logged)[number]) => number) =>
    kinds.reduce((total, kind) => total + pick(kind), 0);
  const answers = REQUEST_KINDS.map((kind) => audience.requests[kind]);
  return {
    edgeHitRatio: ratio(
      sum(logged, (k) => k.servedByEdge),
      sum(logged, (k) => k.requests),
    ),
    edgeHitRatioCacheable: ratio(
      sum(cacheable, (k) => k.servedByEdge),
      sum(cacheable, (k) => k.requests),
    ),
    xCacheStatusHitShare: ratio(
      answers.reduce((total, kind) => total + (kind.cacheStatus.HIT ?? 0), 0),
      answers.reduce((total, kind) => total + kind.count, 0),
    ),
    originRequestsPerSegment: ratio(
      edgeLog.segment.originRequests,
      edgeLog.segment.distinctUris,
      3,
    ),
    originRequestsPerSegmentProduced: ratio(
      edgeLog.segment.originRequests,
      report.segmentsProduced,
      3,
    ),
    originPlaylistRequestsPerSecond: ratio(
      edgeLog.playlist.originRequests,
      audience.config.seconds,
      2,
    ),
    errors: answers.reduce((total, kind) => total + kind.count - kind.ok, 0),
  };
}

/** The markdown of a report: set-up, the issue's figures, requests by kind, playback and CPU. */
export function renderReport(report: HlsAudienceReport): string {
  const { audience, edgeLog } = report;
  const { config, demand, playback } = audience;
  const headline = headlineOf(report);
  const invalid = audience.invalidPlaylistBytes;
  const invalidSizes: Record<string, number> = {};
  for (const bytes of invalid)
    invalidSizes[`${bytes} bytes`] = (invalidSizes[`${bytes} bytes`] ?? 0) + 1;
  const rungs = report.renditions
    .map((rendition, index) => {
      const measured = audience.rungs.find((rung) => rung.name === rendition.name);
      const kbps = measured
        ? round((measured.meanSegmentBytes * 8) / config.segmentSeconds / 1000, 0)
        : NaN;
      return `${rendition.name} (${percent(config.rungShares[index] ?? 0)} of the viewers, ${kbps} kbit/s measured)`;
    })
    .join(', ');
  const viewers = config.viewers.toLocaleString('en-US');
  const kindRows = REQUEST_KINDS.map((kind) => {
    const seen = audience.requests[kind];
    const logged = edgeLog[kind];
    return `| ${KIND_LABELS[kind]} | ${seen.count} | ${seen.count - seen.ok}${seen.count > seen.ok ? ` (${counts(seen.errors)})` : ''} | ${counts(seen.cacheStatus)} | ${logged.originRequests} | ${spread(seen.firstByteMs)} | ${spread(seen.latencyMs)} | ${spread(logged.requestTimeMs, 0)} | ${spread(seen.waitMs)} |`;
  });
  const mbit = (bytes: number) => round((bytes * 8) / 1e6, 0);
  return [
    `Measured ${report.measuredAt} on ${report.machine}; load average ${report.loadAverageAtStart} at start. **The load generator, the nginx edge, the ffmpeg ladder, the publisher and the api/ingest/s3rver process all share these 2 cores.**`,
    '',
    `Set-up: a synthetic 1280x720 30 fps stream (testsrc2 + sine, x264 veryfast, 2.5 Mbit/s) published over RTMP to the in-process ingest node, whose ladder (passthrough on) gives ${rungs}; ${config.segmentSeconds} s segments in a 6-segment live window, uploaded to s3rver; the nginx edge from cdn-config (one worker) in front of it. ${viewers} hls.js-like viewers started evenly over the first ${config.rampSeconds} s and ran for ${config.seconds} s in all, through ${config.connections} keep-alive connections with at most ${config.inFlight} requests in flight and a ${config.timeoutMs / 1000} s deadline per request.`,
    '',
    '| figure | value |',
    '| --- | --- |',
    `| edge hit ratio: requests answered without an origin request (access log) | **${percent(headline.edgeHitRatio)}**; ${percent(headline.edgeHitRatioCacheable)} without the master playlist (never cached, by design); X-Cache-Status HIT on ${percent(headline.xCacheStatusHitShare)} of answers |`,
    `| origin (S3) requests per segment | **${headline.originRequestsPerSegment}**: ${edgeLog.segment.originRequests} segment GETs at the origin for ${edgeLog.segment.distinctUris} different segments asked for (all rungs); ${report.segmentsProduced} segments were produced during the run, the rest are those listed when viewers started |`,
    `| origin requests for media playlists | ${edgeLog.playlist.originRequests} (${headline.originPlaylistRequestsPerSecond}/s for ${report.renditions.length} rungs) against ${edgeLog.playlist.requests} viewer requests; master playlists: ${edgeLog.master.originRequests} |`,
    `| requests/s, steady (s ${demand.steadyFrom}–${demand.steadyTo}: ${Number.isNaN(demand.allPlayingFrom) ? `from the end of the ramp, as ${config.viewers - playback.playing} viewers never played` : 'every viewer playing'}) | **${demand.achievedRequestsPerSecond} achieved of ${demand.demandedRequestsPerSecond} demanded** (${percent(ratio(demand.achievedRequestsPerSecond, demand.demandedRequestsPerSecond))}); ${demand.overallRequestsPerSecond}/s over the whole run |`,
    `| Mbit/s, steady | ${demand.achievedMbitPerSecond} achieved of ${demand.demandedMbitPerSecond} demanded |`,
    `| errors | ${headline.errors}; ${invalid.length} media playlist answers (200) that were not playlists${invalid.length === 0 ? '' : ` (by size: ${counts(invalidSizes)})`}; ${audience.notSent} requests still waiting for a slot when the run ended |`,
    '',
    `Requests by kind, in ms: first and last byte are timed by the generator from the request being sent, so they include the generator's own event loop delay (p50 / p95 / p99 ${spread(audience.eventLoopDelayMs)}, max ${audience.eventLoopDelayMs.max}); nginx is its \`$request_time\` from the access log (first byte read to last byte handed to the kernel); the wait is for a free slot under the in-flight cap, before sending:`,
    '',
    '| request | ended | errors | X-Cache-Status | origin requests | first byte p50 / p95 / p99 | last byte p50 / p95 / p99 | nginx p50 / p95 / p99 | wait for a slot p50 / p95 / p99 |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...kindRows,
    '',
    `Bytes received: ${mbit(audience.requests.segment.bytes)} Mbit of segments, ${mbit(audience.requests.playlist.bytes + audience.requests.master.bytes)} Mbit of playlists.`,
    '',
    `**How far behind the viewers fell** (${playback.playing} of ${viewers} viewers played): start-up (master, playlist, first segment) p50 / p95 / p99 ${spread(playback.startupMs, 0)} ms; stalled ${percent(playback.stalledShare)} of the time watched, ${playback.viewersStalled} viewers stalled at least once, stall per viewer p50 / p95 / p99 ${spread(playback.stalledSeconds)} s; ${playback.segmentsSkipped} segments skipped by ${playback.viewersSkipped} viewers that fell out of the live window; at the end, segments between the newest listed and the last loaded p50 / p95 / p99 ${spread(playback.backlogSegments, 0)} (0–1 keeps up).`,
    '',
    `CPU over the run (cores, from /proc); the ladder ${report.ladderAdaptations.length === 0 ? 'kept up without adapting' : `fell behind and adapted: ${report.ladderAdaptations.join('; ')}`}:`,
    '',
    '| part | cores |',
    '| --- | --- |',
    ...report.cpu.map(({ part, cores }) => `| ${part} | ${cores} |`),
  ].join('\n');
}
