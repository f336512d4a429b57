// The report: the rows' table, the targets with pass/fail, and the ladder and upload figures.
import type { OfflineSpeed } from './encode-speed';
import type { HearthResult } from './hearth';
import type { PlaybackWindow, RowMeasurement } from './latency';
import type { RowId, RowResult } from './rows';

/** Glass-to-glass p50 the LL-HLS row must reach, in seconds. */
export const LL_LATENCY_TARGET_SECONDS = 2.5;
/** Publish to first playable the LL-HLS row must reach, in seconds. */
export const FIRST_PLAYABLE_TARGET_SECONDS = 2;

/** One target of issue 12 and whether the run met it. */
export interface TargetCheck {
  /** What is asked. */
  target: string;
  /** What was measured. */
  measured: string;
  /** Whether it was met. */
  passed: boolean;
}

/** Everything the report is made of. */
export interface StreamReport {
  /** The machine and ffmpeg. */
  machine: string;
  /** The one-minute load average when the run started. */
  loadAverage: number;
  /** The hls.js version the player ran. */
  hlsJs: string;
  /** How long each row's player settled and was timed. */
  timing: PlaybackWindow;
  /** The clock source of rows 1-3, then that of the nginx-rtmp 1 s row. */
  sources: { label: string; keyframeSeconds: number }[];
  /** The table's rows. */
  rows: RowResult[];
  /** The Hearth chain's other figures, null when it did not start. */
  hearth: Omit<HearthResult, 'rows'> | null;
  /** Why the Hearth chain did not start, if it did not. */
  hearthError: string | null;
  /** The ladders encoded from files, unpaced. */
  offline: OfflineSpeed[];
}

function measuredOf(rows: RowResult[], id: RowId): RowMeasurement | null {
  return rows.find((row) => row.id === id)?.measured ?? null;
}

function failure(rows: RowResult[], id: RowId): string {
  const row = rows.find((candidate) => candidate.id === id);
  return `no figure (${row?.label ?? id}: ${row?.error ?? 'not run'})`;
}

/** Checks the LL-HLS row against the targets and the nginx-rtmp rows. */
export function checkTargets(rows: RowResult[]): TargetCheck[] {
  const ll = measuredOf(rows, 'hearthLl');
  const llMissing = failure(rows, 'hearthLl');
  const below = (id: RowId, name: string): TargetCheck => {
    const other = measuredOf(rows, id);
    const target = `LL-HLS glass-to-glass p50 below ${name}`;
    if (!ll) return { target, measured: llMissing, passed: false };
    if (!other) return { target, measured: failure(rows, id), passed: false };
    return {
      target,
      measured: `${ll.latencySeconds.p50} s vs ${other.latencySeconds.p50} s`,
      passed: ll.latencySeconds.p50 < other.latencySeconds.p50,
    };
  };
  return [
    ll
      ? {
          target: 'the LL-HLS row is played as LL-HLS (parts loaded, blocking reloads)',
          measured: `${ll.player.partsLoaded} parts and ${ll.player.segmentsLoaded} whole segments loaded; CAN-BLOCK-RELOAD ${ll.player.blockingReload ? 'yes' : 'no'}`,
          passed: ll.player.partsLoaded > 0 && ll.player.blockingReload,
        }
      : { target: 'the LL-HLS row is played as LL-HLS', measured: llMissing, passed: false },
    ll
      ? {
          target: `LL-HLS glass-to-glass p50 ≤ ${LL_LATENCY_TARGET_SECONDS} s`,
          measured: `${ll.latencySeconds.p50} s`,
          passed: ll.latencySeconds.p50 <= LL_LATENCY_TARGET_SECONDS,
        }
      : { target: `LL-HLS glass-to-glass p50 ≤ 2.5 s`, measured: llMissing, passed: false },
    below('nginxRtmp2s', 'nginx-rtmp with 2 s fragments'),
    below('nginxRtmp1s', 'nginx-rtmp with 1 s fragments'),
    ll
      ? {
          target: `LL-HLS publish → first playable ≤ ${FIRST_PLAYABLE_TARGET_SECONDS} s`,
          measured: `${ll.firstPlayableSeconds} s`,
          passed: ll.firstPlayableSeconds <= FIRST_PLAYABLE_TARGET_SECONDS,
        }
      : { target: 'LL-HLS publish → first playable ≤ 2 s', measured: llMissing, passed: false },
  ];
}

function cell(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ');
}

function media(measured: RowMeasurement): string {
  const { player } = measured;
  const segments = player.segmentSeconds === null ? '?' : `${player.segmentSeconds} s`;
  const parts = player.partTargetSeconds === null ? '' : `, parts ≤ ${player.partTargetSeconds} s`;
  return `${segments} segments${parts}; loaded ${player.partsLoaded} parts, ${player.segmentsLoaded} segments`;
}

function rowLine(row: RowResult, targets: TargetCheck[]): string {
  const verdict =
    row.id === 'hearthLl'
      ? targets.every((check) => check.passed)
        ? 'pass'
        : '**FAIL**'
      : '– (comparison)';
  if (!row.measured) {
    return `| ${row.label} | ${cell(row.chain)} | **failed:** ${cell(row.error ?? '')} | | | | | ${verdict} |`;
  }
  const { measured } = row;
  const hold = measured.player.targetLatencySeconds;
  return [
    '',
    row.label,
    cell(row.chain),
    cell(media(measured)),
    hold === null ? '?' : `${hold} s`,
    `**${measured.latencySeconds.p50}** / ${measured.latencySeconds.p95}`,
    String(measured.firstPlayableSeconds),
    String(measured.firstFrameSeconds),
    verdict,
    '',
  ]
    .join(' | ')
    .trim();
}

function ladderLines(report: StreamReport): string[] {
  const { hearth } = report;
  if (!hearth) return [`**Ladder and uploads:** not measured (${report.hearthError}).`, ''];
  const speed = hearth.encodeSpeed;
  const full = hearth.ladder1080p60;
  const live = [
    speed
      ? `${speed.renditions} from 720p30: median ${speed.median}x (min ${speed.min}x)`
      : '720p30: no reading',
    full
      ? `${full.renditions} from 1080p60: median ${full.median}x (min ${full.min}x)${full.adaptations.length > 0 ? `; adaptations: ${full.adaptations.join('; ')}` : '; no adaptation needed'}`
      : `1080p60: not measured (${hearth.ladderError})`,
  ];
  const uploads = hearth.uploadMs;
  return [
    `**Ladder encode speed** (ffmpeg \`speed=\`, after warm-up): ${live.join('; ')}.`,
    '',
    `**Offline ladder encode speed** (the ingest's argv on the source file, not paced, 20 s of content): ${report.offline.map((o) => `${o.ladder} at ${o.preset}: ${o.speed}x`).join('; ')}.`,
    '',
    uploads
      ? `**Segment upload to S3** (s3rver on loopback, ${uploads.count} segments): p50 ${uploads.p50} ms, p95 ${uploads.p95} ms, max ${uploads.max} ms.`
      : '**Segment upload to S3:** no segment was uploaded.',
  ];
}

/** The report as markdown: the rows' table, the targets' table, then the ladder figures. */
export function renderReport(report: StreamReport, targets: TargetCheck[]): string {
  const { timing } = report;
  const [main, oneSecond] = report.sources;
  return [
    `Measured ${new Date().toISOString()} on ${report.machine}; load average ${report.loadAverage} at start. Source: ${main?.label} with a key frame every ${main?.keyframeSeconds} s (every ${oneSecond?.keyframeSeconds} s for the nginx-rtmp 1 s row), pushed from a file in real time (\`-re -c copy\`). Every row is played by the same page: hls.js ${report.hlsJs} with the watch page's settings (low-latency mode, no sync count of its own), so it holds back PART-HOLD-BACK on LL-HLS playlists and three target durations on the others. Latency is timed per displayed frame over ${timing.measureSeconds} s, after ${timing.settleSeconds} s of settling. First playable: the master and every variant playlist on the edge list a whole segment, or on LL-HLS a part that starts with a key frame (polled every 50 ms); first frame: the player page, opened at that moment, shows its first frame.`,
    '',
    '| row | chain | media | player holds back (hls.js target) | glass-to-glass p50 / p95 (s) | publish → first playable (s) | publish → first frame (s) | targets |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...report.rows.map((row) => rowLine(row, targets)),
    '',
    '| target (issue 12) | measured | result |',
    '| --- | --- | --- |',
    ...targets.map(
      (check) =>
        `| ${cell(check.target)} | ${cell(check.measured)} | ${check.passed ? 'pass' : '**FAIL**'} |`,
    ),
    '',
    ...ladderLines(report),
  ].join('\n');
}
