// `npm run bench:stream`: glass-to-glass latency and publish to first playable for four rows,
// Hearth LL-HLS, Hearth regular HLS, nginx-rtmp with 2 s and with 1 s fragments, checked against
// issue 12's targets; plus the ladder's encode speed and segment upload times. Prints the figures,
// writes them to bench/results/stream.json and stream.md and, on a full run, replaces the README's
// `<!-- bench:stream -->` section. `-- --quick` times 10 s per row instead of 25 s and leaves the
// README alone. Exits with 1 when a measurement failed or a target was missed.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { launchChromium } from '../e2e/support/browser';
import { replaceReadmeSection } from './readme-section';
import { measureOfflineSpeed } from './stream/encode-speed';
import { runHearth, type HearthResult } from './stream/hearth';
import { startPlayerServer, type PlaybackWindow } from './stream/latency';
import { runNginxRtmp } from './stream/nginx-rtmp';
import { checkTargets, renderReport, type StreamReport } from './stream/report';
import { attemptRow, failedRow, type RowResult } from './stream/rows';
import { ensureSource } from './stream/sources';
import { round } from './stats';

const here = path.dirname(fileURLToPath(import.meta.url));
const quick = process.argv.includes('--quick');
const timing: PlaybackWindow = { settleSeconds: 6, measureSeconds: quick ? 10 : 25 };
// Long enough for first playable, the player's start, settling and timing, with room to spare.
const PUSH_SECONDS = 70;

const loadAverage = round(os.loadavg()[0]!, 1);
const source = await ensureSource({
  name: 'clock-720p30',
  size: '1280x720',
  fps: 30,
  seconds: PUSH_SECONDS,
  clock: true,
  keyframeSeconds: 2,
});
const source1s = await ensureSource({
  name: 'clock-720p30-gop1',
  size: '1280x720',
  fps: 30,
  seconds: PUSH_SECONDS,
  clock: true,
  keyframeSeconds: 1,
});
const source1080p60 = await ensureSource({
  name: '1080p60',
  size: '1920x1080',
  fps: 60,
  seconds: 45,
  clock: false,
  keyframeSeconds: 2,
});

console.log('offline ladder encode speed ...');
const offline = [
  await measureOfflineSpeed(source, 1280, 720, 30),
  await measureOfflineSpeed(source1080p60, 1920, 1080, 60),
];
console.log(JSON.stringify(offline));

const player = await startPlayerServer();
const browser = await launchChromium();
const rows: RowResult[] = [];
let hearth: HearthResult | null = null;
let hearthError: string | null = null;
try {
  try {
    hearth = await runHearth({
      browser,
      playerUrl: player.url,
      source,
      source1080p60,
      timing,
      ladderSeconds: quick ? 10 : 25,
    });
    rows.push(...hearth.rows);
  } catch (error) {
    console.error(error);
    hearthError = error instanceof Error ? error.message : String(error);
    rows.push(failedRow('hearthLl', error), failedRow('hearthHls', error));
  }
  for (const [id, fragmentSeconds, pushed] of [
    ['nginxRtmp2s', 2, source],
    ['nginxRtmp1s', 1, source1s],
  ] as const) {
    rows.push(
      await attemptRow(id, () =>
        runNginxRtmp({
          browser,
          playerUrl: player.url,
          source: pushed,
          fragmentSeconds,
          timing,
        }),
      ),
    );
  }
} finally {
  await browser.close();
  await player.close();
}

const ffmpegVersion = (await promisify(execFile)('ffmpeg', ['-version'])).stdout.split('\n')[0];
const report: StreamReport = {
  machine: `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${ffmpegVersion}`,
  loadAverage,
  hlsJs: JSON.parse(fs.readFileSync(path.join(here, '../node_modules/hls.js/package.json'), 'utf8'))
    .version,
  timing,
  sources: [source, source1s].map(({ label, keyframeSeconds }) => ({
    label,
    keyframeSeconds,
  })),
  rows,
  hearth: hearth && {
    encodeSpeed: hearth.encodeSpeed,
    uploadMs: hearth.uploadMs,
    ladder1080p60: hearth.ladder1080p60,
    ladderError: hearth.ladderError,
  },
  hearthError,
  offline,
};
const targets = checkTargets(rows);
const markdown = renderReport(report, targets);
const resultsDir = path.join(here, 'results');
fs.mkdirSync(resultsDir, { recursive: true });
fs.writeFileSync(
  path.join(resultsDir, 'stream.json'),
  `${JSON.stringify({ ...report, targets }, null, 2)}\n`,
);
fs.writeFileSync(path.join(resultsDir, 'stream.md'), `${markdown}\n`);
console.log(`\n${markdown}\n`);
console.log('written to bench/results/stream.{json,md}');
if (quick) console.log('a --quick run: README left as it is');
else await replaceReadmeSection('stream', markdown);
const missed = targets.filter((check) => !check.passed).length;
const broken = rows.filter((row) => row.error !== null).length + (hearth?.ladderError ? 1 : 0);
if (missed > 0 || broken > 0) {
  console.log(`${missed} target(s) missed, ${broken} measurement(s) failed`);
  process.exitCode = 1;
}
