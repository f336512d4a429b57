import dgram from 'node:dgram';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureChannel } from '../api/test/support/sessions';
import { startTestApi } from '../api/test/support/server';
import { launchChromium } from '../e2e/support/browser';
import { eventually } from '../e2e/support/wait';
import { joinPlainSpeaker, type PlainSpeaker } from '../voice-sfu/test/support/plain-peers';
import { OPUS_PAYLOAD_TYPE } from '../voice-sfu/test/support/rtp';
import { round } from './stats';

// Seed 000's figure: what one Chromium page costs its machine in a 10-person channel. The
// other nine are RTP clients on the voice node, sending real Opus (encoded once by ffmpeg from
// a voice-like tone and replayed), so the page decodes what a browser's microphone would send.

const webDistDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../web/dist');
const CHANNEL = 'client-cost';
const OTHERS = 9;
const FRAME_MS = 20;
const SECONDS_OF_OPUS = 10;
const CLOCK_TICKS_PER_SECOND = 100;

/** What the Chromium processes of one page used over a measuring window. */
export interface ClientCost {
  /** How many of the nine others talked the whole time; null for a blank page, not in voice. */
  readonly talking: number | null;
  /** CPU of every Chromium process, in cores (1 = one core busy), over the window. */
  readonly cpuCores: number;
  /** The same as a share of this machine's cores, in percent. */
  readonly cpuPercentOfMachine: number;
  /** Proportional set size of every Chromium process, summed, in MB. */
  readonly memoryPssMb: number;
  /** Resident memory of the page's renderer alone, in MB. */
  readonly rendererRssMb: number;
  /** Measuring window, in seconds. */
  readonly seconds: number;
}

/**
 * Joins one Chromium page to a channel with nine RTP participants and measures the CPU and
 * memory of all of Chromium's processes, first with one of the nine talking, then with all nine.
 */
export async function runClientCostBenchmark(seconds: number): Promise<ClientCost[]> {
  const frames = await encodeOpusFrames();
  const api = await startTestApi({ api: { webDistDir } });
  const browser = await launchChromium();
  const speakers: PlainSpeaker[] = [];
  const timers: NodeJS.Timeout[] = [];
  try {
    await ensureChannel(api.baseUrl, CHANNEL);
    for (let index = 0; index < OTHERS; index++) {
      speakers.push(await joinPlainSpeaker(api.voice!, CHANNEL, `rtp-${index}`, 9000 + index));
    }
    const page = await (await browser.newContext()).newPage();
    // Chromium's own floor: the same browser with one blank page.
    const results: ClientCost[] = [{ talking: null, ...(await measureChromium(seconds)), seconds }];
    await page.goto(`${api.baseUrl}/voice/${CHANNEL}?name=Measured`);
    await page.getByTestId('join').click();
    await eventually(
      async () => api.voice!.channels.get(CHANNEL)?.peerCount === OTHERS + 1,
      20_000,
      'the page in the channel',
    );
    for (const talking of [1, OTHERS]) {
      for (const timer of timers.splice(0)) clearInterval(timer);
      for (const speaker of speakers.slice(0, talking)) {
        timers.push(talkLoop(speaker, frames));
      }
      // Let the jitter buffers and the adaptation settle before measuring.
      await new Promise((resolve) => setTimeout(resolve, 5000));
      results.push({ talking, ...(await measureChromium(seconds)), seconds });
    }
    return results;
  } finally {
    for (const timer of timers) clearInterval(timer);
    for (const speaker of speakers) speaker.sender.close();
    await browser.close();
    await api.close();
  }
}

// Sends the Opus frames in a loop, one every 20 ms, as the speaker's microphone would.
function talkLoop(speaker: PlainSpeaker, frames: Buffer[]): NodeJS.Timeout {
  let index = 0;
  return setInterval(() => {
    speaker.sender.sendPayload(frames[index % frames.length]!);
    index += 1;
  }, FRAME_MS);
}

// Ten seconds of real Opus, 20 ms frames at 48 kHz: ffmpeg sends them as RTP to a socket here.
async function encodeOpusFrames(): Promise<Buffer[]> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
  const frames: Buffer[] = [];
  socket.on('message', (packet) => frames.push(packet.subarray(12)));
  const ffmpeg = spawn(
    '/usr/bin/ffmpeg',
    [
      ...['-hide_banner', '-loglevel', 'error', '-f', 'lavfi'],
      ...['-i', `sine=frequency=220:beep_factor=4:sample_rate=48000:duration=${SECONDS_OF_OPUS}`],
      ...['-c:a', 'libopus', '-b:a', '32k', '-ac', '1', '-frame_duration', String(FRAME_MS)],
      ...['-payload_type', String(OPUS_PAYLOAD_TYPE), '-f', 'rtp'],
      `rtp://127.0.0.1:${socket.address().port}`,
    ],
    { stdio: 'ignore' },
  );
  await new Promise((resolve) => ffmpeg.once('exit', resolve));
  await new Promise((resolve) => setTimeout(resolve, 100));
  socket.close();
  if (frames.length < 100) throw new Error(`ffmpeg made ${frames.length} Opus frames`);
  return frames;
}

// CPU over the window and memory at its end, of every process of the Chromium binary.
async function measureChromium(seconds: number): Promise<Omit<ClientCost, 'talking' | 'seconds'>> {
  const before = chromiumProcesses();
  const startedAt = performance.now();
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  const after = chromiumProcesses();
  const elapsed = (performance.now() - startedAt) / 1000;
  let ticks = 0;
  for (const [pid, process] of after) {
    ticks += process.cpuTicks - (before.get(pid)?.cpuTicks ?? 0);
  }
  const cpuCores = ticks / CLOCK_TICKS_PER_SECOND / elapsed;
  const renderers = [...after.values()].filter((process) => process.renderer);
  return {
    cpuCores: round(cpuCores, 3),
    cpuPercentOfMachine: round((100 * cpuCores) / os.cpus().length, 1),
    memoryPssMb: round([...after.values()].reduce((sum, p) => sum + p.pssKb, 0) / 1024, 1),
    rendererRssMb: round(Math.max(0, ...renderers.map((p) => p.rssKb)) / 1024, 1),
  };
}

interface ChromiumProcess {
  ppid: number;
  cpuTicks: number;
  pssKb: number;
  rssKb: number;
  renderer: boolean;
}

// The processes of the Chromium this process launched: its browser process and every process
// below it (other Chromium instances on the machine are left out).
function chromiumProcesses(): Map<number, ChromiumProcess> {
  const all = new Map<number, ChromiumProcess>();
  for (const entry of fs.readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      const cmdline = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (!cmdline.startsWith('/usr/lib/chromium/chromium')) continue;
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      // Fields after the command name: ppid is the 2nd, utime the 12th and stime the 13th.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const rollup = fs.readFileSync(`/proc/${entry}/smaps_rollup`, 'utf8');
      all.set(Number(entry), {
        ppid: Number(fields[1]),
        cpuTicks: Number(fields[11]) + Number(fields[12]),
        pssKb: Number(/^Pss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0),
        rssKb: Number(/^Rss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0),
        renderer: cmdline.includes('--type=renderer'),
      });
    } catch {
      // The process ended meanwhile.
    }
  }
  const ours = new Set<number>();
  const isOurs = (pid: number): boolean => {
    const seen = new Set<number>();
    for (let current = pid; all.has(current) && !seen.has(current);) {
      seen.add(current);
      const parent = all.get(current)!.ppid;
      if (parent === process.pid || ours.has(parent)) return true;
      current = parent;
    }
    return false;
  };
  for (const pid of all.keys()) if (isOurs(pid)) ours.add(pid);
  return new Map([...all].filter(([pid]) => ours.has(pid)));
}

/** The figure as the README and results quote it. */
export function clientCostTable(results: readonly ClientCost[]): string {
  return [
    '| others talking | Chromium CPU (cores) | share of this machine | memory, all Chromium processes (PSS) | renderer RSS |',
    '|---|---|---|---|---|',
    ...results.map(
      (r) =>
        `| ${r.talking === null ? 'none: a blank page, not in the channel' : `${r.talking} of ${OTHERS}`} | ${r.cpuCores} | ${r.cpuPercentOfMachine} % | ${r.memoryPssMb} MB | ${r.rendererRssMb} MB |`,
    ),
  ].join('\n');
}
