// `npm run bench:client`: seed 000's client cost, one Chromium page in a 10-person channel.
// Prints the figures and writes them to bench/results/client-cost.json and client-cost.md.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { clientCostTable, runClientCostBenchmark } from './client-cost';
import { replaceReadmeSection } from './readme-section';

const resultsDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');
const seconds = process.argv.includes('--quick') ? 5 : 30;

console.log(`client cost: one Chromium page, nine RTP participants, ${seconds} s per window ...`);
const results = await runClientCostBenchmark(seconds);
const machine = `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
const markdown = [
  `Measured ${new Date().toISOString()} on ${machine}, load average ${os.loadavg()[0]!.toFixed(1)} at the end; ${seconds} s per window. One headless Chromium page (fake microphone, speaking) joined to a channel with nine RTP participants sending real 32 kbit/s Opus; CPU and memory of every Chromium process (browser, renderer, GPU, network and audio services):`,
  '',
  clientCostTable(results),
  '',
  "Seed 000 targets under 10 % of the client's CPU and under 100 MB of its memory.",
  '',
].join('\n');
fs.mkdirSync(resultsDir, { recursive: true });
fs.writeFileSync(
  path.join(resultsDir, 'client-cost.json'),
  `${JSON.stringify({ machine, seconds, results }, null, 2)}\n`,
);
fs.writeFileSync(path.join(resultsDir, 'client-cost.md'), markdown);
if (seconds === 30) await replaceReadmeSection('client-cost', markdown);
console.log(`\n${markdown}`);
