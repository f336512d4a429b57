// `npm run bench:faults`: the fault suite. Each scenario runs against real processes (mediasoup
// workers, voice-sfu and ingest node processes, ffmpeg, nginx, s3rver, Redis, PostgreSQL), and
// the suite prints one table, writes bench/results/faults.{json,md} and replaces the
// `<!-- bench:faults -->` section of the README.
//   --short          participant churn for 30 s instead of 10 minutes
//   --only=a,b       only the scenarios with these ids (see `scenarios` below)
import fs from 'node:fs';
import { replaceReadmeSection } from './readme-section';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { storeScenarios } from './faults/stores';
import { streamScenarios } from './faults/stream';
import { voiceScenarios } from './faults/voice';
import type { FaultRow, FaultScenario } from './faults/row';

const here = path.dirname(fileURLToPath(import.meta.url));
const short = process.argv.includes('--short') || process.env.FAULTS_SHORT === '1';
const only = process.argv
  .find((argument) => argument.startsWith('--only='))
  ?.slice('--only='.length)
  .split(',');

// Every scenario of issue 7 §4, in table order.
const scenarios: FaultScenario[] = [
  voiceScenarios.signalingFlood,
  streamScenarios.rtmpAndFfmpeg,
  voiceScenarios.workerKilled,
  voiceScenarios.voiceNodeKilled,
  streamScenarios.ingestNodeKilled,
  streamScenarios.s3Down10s,
  streamScenarios.s3Down90s,
  streamScenarios.s3Down90sSmallSpool,
  storeScenarios.redisDown,
  storeScenarios.postgresDown,
  storeScenarios.apiKilled,
  voiceScenarios.churn,
];

async function main(): Promise<void> {
  const rows: FaultRow[] = [];
  for (const entry of scenarios) {
    if (only && !only.includes(entry.id)) continue;
    console.log(`== ${entry.id} ==`);
    const started = performance.now();
    try {
      const result = await entry.run({ short });
      for (const row of result) console.log(`${row.passed ? 'held' : 'FAILED'}: ${row.scenario}`);
      rows.push(...result);
    } catch (error) {
      // One broken scenario must not hide the others' figures; its row says what went wrong.
      console.error(error);
      rows.push({
        scenario: entry.id,
        done: 'the run failed',
        held: `error: ${error instanceof Error ? error.message : String(error)}`,
        recovery: '–',
        dataLost: 'unknown',
        passed: false,
        figures: { error: String(error) },
      });
    }
    console.log(`   (${Math.round((performance.now() - started) / 1000)} s)`);
  }
  await report(rows);
  if (rows.some((row) => !row.passed)) process.exitCode = 1;
}

function cell(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ');
}

async function report(rows: FaultRow[]): Promise<void> {
  const machine = `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB`;
  const failed = rows.filter((row) => !row.passed).map((row) => row.scenario);
  const lines = [
    `Measured ${new Date().toISOString()} on ${machine}${short ? '; participant churn in its 30 s short form' : ''}${only ? `; only ${only.join(', ')}` : ''}.`,
    '',
    '| scenario | what was done | what held | recovery | data lost |',
    '| --- | --- | --- | --- | --- |',
    ...rows.map(
      (row) =>
        `| ${cell(row.passed ? row.scenario : `**FAILED** ${row.scenario}`)} | ${cell(row.done)} | ${cell(row.held)} | ${cell(row.recovery)} | ${cell(row.dataLost)} |`,
    ),
    '',
    failed.length === 0 ? 'Every check held.' : `Checks that did not hold: ${failed.join('; ')}.`,
  ];
  const markdown = lines.join('\n');
  console.log(`\n${markdown}`);
  const resultsDir = path.join(here, 'results');
  fs.mkdirSync(resultsDir, { recursive: true });
  fs.writeFileSync(
    path.join(resultsDir, 'faults.json'),
    `${JSON.stringify({ machine, short, only: only ?? null, rows }, null, 2)}\n`,
  );
  fs.writeFileSync(path.join(resultsDir, 'faults.md'), `${markdown}\n`);
  await replaceReadmeSection('faults', markdown);
}

main().then(
  () => process.exit(),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
