// `npm run bench:screen [-- --quick] [-- --fanout-only | --browser-only]`: screen share figures
// (issue 9). Fan-out capacity of one simulcast share on one mediasoup worker, with RTP clients;
// then, in Chromium through the whole platform, share-to-first-frame time, the sharer's encoder
// and its layers at 1080p30 and 2160p30, glass-to-glass delay at 1080p30 and top layer resume
// after the server switched it off. Prints the figures
// and writes them to bench/results/screen.json and screen.md.
import fs from 'node:fs';
import { replaceReadmeSection } from './readme-section';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  runBrowserBenchmarks,
  type BrowserResult,
  type EncodingResult,
  type ForwardedSample,
  type LayerRate,
} from './screen-browser';
import {
  SHARE_FPS,
  SHARE_LAYERS,
  VIEWER_SRTP,
  runFanout,
  type FanoutResult,
  type FanoutScenario,
} from './screen-fanout';
import { loadAverage, waitForQuiet } from './screen-proc';
import { round } from './stats';

const resultsDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');
const quick = process.argv.includes('--quick');
const fanoutOnly = process.argv.includes('--fanout-only');
const browserOnly = process.argv.includes('--browser-only');
const seconds = quick ? 3 : 10;
const VIEWER_COUNTS = [50, 100, 200, 500];
// Other people's work shares this machine: the benchmark starts once the 1-minute load average
// is at most this (or after waiting QUIET_WAIT_SECONDS), and a fan-out run during which the
// rest of the machine used more than FOREIGN_CPU_LIMIT cores is run again (MAX_ATTEMPTS times at
// most, MAX_RERUNS reruns in all), keeping the run with the least other load.
const QUIET_LOAD = 1.2;
const QUIET_WAIT_SECONDS = quick ? 0 : 180;
const FOREIGN_CPU_LIMIT = 0.3;
const MAX_ATTEMPTS = 3;
const MAX_RERUNS = 8;
// The viewer counts per worker-core the issue asks for, with zero loss.
const TARGET_VIEWERS_PER_CORE = 500;

const loadAverageAtStart = round(loadAverage(), 2);
const waitedForQuietSeconds = await waitForQuiet(QUIET_LOAD, QUIET_WAIT_SECONDS);
const loadAverageAfterWait = round(loadAverage(), 2);
console.log(
  `load average ${loadAverageAtStart}, ${loadAverageAfterWait} after waiting ${waitedForQuietSeconds} s`,
);

const scenarios: FanoutScenario[] = [1, 0].flatMap((spatialLayer) =>
  VIEWER_COUNTS.map((viewers) => ({ viewers, spatialLayer, seconds })),
);
const fanout: (FanoutResult & { attempts: number })[] = [];
let reruns = 0;
for (const scenario of browserOnly ? [] : scenarios) {
  let best: FanoutResult | undefined;
  let attempts = 0;
  for (;;) {
    attempts++;
    console.log(
      `fan-out: ${scenario.viewers} viewers of the ${layerName(scenario.spatialLayer)} layer ...`,
    );
    const result = await runFanout(scenario);
    console.log(JSON.stringify(result));
    if (!best || result.foreignCpuCores < best.foreignCpuCores) best = result;
    if (
      result.foreignCpuCores <= FOREIGN_CPU_LIMIT ||
      attempts >= MAX_ATTEMPTS ||
      reruns >= MAX_RERUNS
    )
      break;
    reruns++;
    console.log(`  other processes used ${result.foreignCpuCores} cores; again in 10 s`);
    await new Promise((resolve) => setTimeout(resolve, 10_000));
  }
  fanout.push({ ...best!, attempts });
}

let browser: BrowserResult | undefined;
if (!fanoutOnly) {
  console.log('Chromium: encoding, share-to-first-frame, glass-to-glass, layer resume ...');
  browser = await runBrowserBenchmarks(quick);
  console.log(JSON.stringify(browser));
}

function layerName(spatialLayer: number): string {
  return spatialLayer === 0 ? 'low' : 'top';
}

// Viewers one worker-core carries: the largest zero-loss run, scaled to 100 % of a core.
function viewersPerCore(spatialLayer: number): { viewers: number; perCore: number } | null {
  const clean = fanout.filter(
    (r) =>
      r.scenario.spatialLayer === spatialLayer &&
      r.inputLossPercent === 0 &&
      r.sfuLossPercent === 0 &&
      r.endToEndLossPercent === 0,
  );
  const largest = clean.sort((a, b) => b.scenario.viewers - a.scenario.viewers)[0];
  if (!largest) return null;
  return {
    viewers: largest.scenario.viewers,
    perCore: Math.floor((largest.scenario.viewers * 100) / largest.workerCpuPercent),
  };
}

function fanoutTable(): string {
  return [
    '| viewers × layer | worker CPU | forwarded Mbit/s | packets forwarded/s | loss: sharer→SFU / in the SFU / sharer→viewer sockets | added latency p50 / p95 / p99 (ms) | load avg before / other CPU (cores) |',
    '|---|---|---|---|---|---|---|',
    ...fanout.map(
      (r) =>
        `| ${r.scenario.viewers} × ${layerName(r.scenario.spatialLayer)} | ${r.workerCpuPercent}% | ${r.forwardedMbps} | ${r.forwardedPacketsPerSecond} | ${r.inputLossPercent}% / ${r.sfuLossPercent}% / ${r.endToEndLossPercent}% | ${r.latencyMs.p50} / ${r.latencyMs.p95} / ${r.latencyMs.p99} | ${r.loadAverageBefore} / ${r.foreignCpuCores} |`,
    ),
  ].join('\n');
}

function capacityLines(): string[] {
  if (fanout.length === 0) return [];
  return [1, 0].map((layer) => {
    const capacity = viewersPerCore(layer);
    if (!capacity) return `- ${layerName(layer)} layer: no run without loss.`;
    const met = capacity.perCore >= TARGET_VIEWERS_PER_CORE;
    return `- ${layerName(layer)} layer: ${capacity.viewers} viewers without loss; at that cost per viewer one worker-core carries about **${capacity.perCore} viewers** (target ${TARGET_VIEWERS_PER_CORE}: ${met ? 'met' : 'not met'}).`;
  });
}

function kbits(bytesPerSecond: number): number {
  return Math.round((bytesPerSecond * 8) / 1000);
}

function layerRow(prefix: string, layer: LayerRate): string {
  const packetBytes = Math.round(layer.payloadBytesPerSecond / layer.packetsPerSecond);
  return `| ${prefix} | ${layer.rid} ${layer.width}x${layer.height} | ${layer.framesPerSecond} | ${kbits(layer.payloadBytesPerSecond)} (${layer.payloadBytesPerSecond} B/s) | ${layer.packetsPerSecond} | ${packetBytes} | ${layer.encodeMsPerSecond} | ${layer.qualityLimitationReason} |`;
}

function encodingTable(encoding: EncodingResult[]): string {
  return [
    '| content, preset: sharer browser CPU (idle in the channel) | layer | frames/s | payload kbit/s | packets/s | payload bytes/packet | encode ms per s | limited by |',
    '|---|---|---|---|---|---|---|---|',
    ...encoding.flatMap((e) =>
      e.layers.map((layer, index) =>
        layerRow(
          index === 0
            ? `${e.content}, ${e.preset}: **${e.sharerCpuPercent}%** (${e.idleCpuPercent}%); load ${e.loadAverageBefore}, other CPU ${e.foreignCpuCores}`
            : '',
          layer,
        ),
      ),
    ),
  ].join('\n');
}

// "the top layer, every temporal layer, in 15 of 15 samples (estimate 5822–6075 kbit/s)".
function describeForwarded(samples: ForwardedSample[]): string {
  const counts = new Map<string, number>();
  for (const { spatialLayer, temporalLayer } of samples) {
    const key =
      spatialLayer === null
        ? 'nothing'
        : `the ${layerName(spatialLayer)} layer up to temporal layer ${temporalLayer}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const estimates = samples.map((sample) => sample.availableKbps);
  return `${[...counts].map(([key, count]) => `${key} in ${count} of ${samples.length}`).join(', ')} (bandwidth estimate ${Math.min(...estimates)}–${Math.max(...estimates)} kbit/s)`;
}

function browserSection(result: BrowserResult): string[] {
  const g2g = result.glassToGlass;
  const stages = g2g.stages;
  const byWidth = Object.entries(g2g.delayMsByWidth)
    .map(
      ([width, delays]) =>
        `${delays.count} of them ${width} pixels wide: p50 ${delays.p50}, p95 ${delays.p95} ms`,
    )
    .join('; ');
  const first = result.shareToFirstFrameMs;
  const resume = result.layerResume;
  const dist = (d: { p50: number; p95: number; max: number }, bold = false) =>
    bold
      ? `p50 **${d.p50} ms**, p95 **${d.p95} ms**, max ${d.max} ms`
      : `p50 ${d.p50}, p95 ${d.p95}, max ${d.max} ms`;
  const resumeLines = resume
    ? [
        '',
        `**Top layer resume** (a voice node of its own with VOICE_SHARE_LAYER_IDLE_MS at its default ${resume.idleMs} ms; one viewer in a 480x400 window, whose tile asks for the low layer, watches a 1080p30 share of the fake screen; once the sharer's top layer (rid r1) has stopped sending, the window grows to 1280x720; polled every ${resume.pollMs} ms; ${resume.repetitions} repetitions, ${resume.timedOut} without the top layer within 10 s): the sharer's top layer \`bytesSent\` grows again after ${dist(resume.sharerResumeMs, true)} (target < 1 s: ${resume.sharerResumeMs.p95 < 1000 ? 'met' : 'not met'}); the viewer presents its first 1920-pixel-wide frame after ${dist(resume.viewerTopFrameMs, true)}${resume.sfuForwardMs ? ` (the SFU forwards it the top layer after ${dist(resume.sfuForwardMs)})` : ''}. After the window shrank back, the sharer's top layer stopped ${dist(resume.stopAfterShrinkMs)} later.`,
      ]
    : [];
  const sizes = Object.entries(result.firstFrameSizes)
    .map(([size, count]) => `${size} × ${count}`)
    .join(', ');
  return [
    '#### In Chromium',
    '',
    `Through the whole platform (api, one voice node with 2 workers, the web app), headless Chromium (software VP8), sharer and viewer as separate browsers on this machine.`,
    '',
    `**Share to first decoded frame** (1080p30 preset; clicking Share to the viewer's first presented frame, both clocks the machine's; ${first.count} shares): p50 **${first.p50} ms**, p95 **${first.p95} ms**, max ${first.max} ms. First frames: ${sizes} (a viewer starts on the low layer and moves up as bandwidth estimation ramps).`,
    '',
    `**Glass to glass at 1080p30** (game-like content: the sharer draws a moving scene and the drawing time into a canvas it shares in place of the screen; the viewer reads the time back from each presented frame): p50 **${g2g.delayMs.p50} ms**, p95 **${g2g.delayMs.p95} ms**, max ${g2g.delayMs.max} ms over ${g2g.delayMs.count} frames (${byWidth}), ${g2g.framesPerSecond} frames/s presented, ${g2g.unreadableFrames} unreadable (target < 300 ms: ${g2g.delayMs.p95 < 300 ? 'met' : 'not met'}; load ${g2g.loadAverageBefore}, other CPU ${g2g.foreignCpuCores} cores). Its layers:`,
    '',
    '| | layer | frames/s | payload kbit/s | packets/s | payload bytes/packet | encode ms per s | limited by |',
    '|---|---|---|---|---|---|---|---|',
    ...g2g.layers.map((layer) => layerRow('', layer)),
    '',
    `**Time to the top layer after Share**: ${round(g2g.topLayerAfterMs / 1000)} s. The viewer had joined before the share started; its bandwidth estimate starts at the voice node's VOICE_VIEWER_START_BITRATE (2 Mbit/s by default), and the SFU first sends it the low layer; it got the whole top layer to stay (every temporal layer, held 3 s) ${round(g2g.topLayerAfterMs / 1000)} s after Share was clicked. The window began after 3 s of that; in its once-a-second samples the SFU forwarded ${describeForwarded(g2g.forwarded)}.`,
    '',
    `Where the time goes, from the browsers' counters: encoding ${stages.encodeMsPerFrame} ms per top-layer frame, pacer ${stages.pacerMsPerPacket} ms per packet; at the viewer ${stages.receiveToDecodedMsPerFrame} ms from a frame's first packet to decoded (jitter buffer ${stages.jitterBufferMsPerFrame} ms, decoding ${stages.decodeMsPerFrame} ms), ${stages.framesDecodedPerSecond} frames/s decoded, ${stages.framesDropped} dropped, ${stages.packetsLost} packets lost, ${stages.nacks} NACKs, ${stages.plis} PLIs, ${stages.freezes} freezes. The rest is capture, the network and SFU, and rendering.`,
    ...resumeLines,
    '',
    `**Sharer encoding cost and layer rates** (no viewer; CPU of all the sharer browser's processes, capture included, in % of one core; "encode ms per s" is the encoder's own \`totalEncodeTime\`; the fake screen is Chromium's nearly still test pattern, like a desktop):`,
    '',
    encodingTable(result.encoding),
  ];
}

const machine = `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
const shareLabel = SHARE_LAYERS.map((layer) => layer.label).join(' and ');
const markdown = [
  `Measured ${new Date().toISOString()} on ${machine}. Load average ${loadAverageAtStart} at start${waitedForQuietSeconds > 0 ? `, ${loadAverageAfterWait} after waiting ${waitedForQuietSeconds} s for a quieter machine` : ''}; the machine is shared, so each window lists its load average and the CPU other processes used meanwhile.`,
  '',
  ...(fanout.length === 0
    ? []
    : [
        '#### Fan-out on one worker',
        '',
        `One synthetic VP8 simulcast sharer (${shareLabel}, ${SHARE_FPS} fps; packets of up to 1200 bytes, frame sizes varying ±50 %, key frames on request, sender reports every second) sends to N receive-only viewers, PlainTransports with ${VIEWER_SRTP} as browsers negotiate, all asking for the same layer; ${seconds} s per window. Loss is counted three ways: packets the sharer sent that the producer did not receive, packets the producer received on the layer that the consumers did not forward, and packets sent on the layer that did not reach the viewers' sockets. Added latency is sharer send time to receipt, through the SFU, on loopback, measured on 3 clear-RTP viewers.`,
        '',
        fanoutTable(),
        '',
        ...capacityLines(),
        '',
      ]),
  ...(browser ? browserSection(browser) : []),
  '',
].join('\n');

fs.mkdirSync(resultsDir, { recursive: true });
fs.writeFileSync(
  path.join(resultsDir, 'screen.json'),
  `${JSON.stringify(
    {
      measuredAt: new Date().toISOString(),
      machine,
      quick,
      loadAverageAtStart,
      waitedForQuietSeconds,
      loadAverageAfterWait,
      fanout: {
        share: { layers: SHARE_LAYERS, fps: SHARE_FPS, viewerSrtp: VIEWER_SRTP },
        seconds,
        results: fanout,
        viewersPerCore: { top: viewersPerCore(1), low: viewersPerCore(0) },
      },
      browser,
    },
    null,
    2,
  )}\n`,
);
fs.writeFileSync(path.join(resultsDir, 'screen.md'), markdown);
console.log(`\n${markdown}`);
console.log(`written to ${path.relative(process.cwd(), resultsDir)}/screen.{json,md}`);
if (!quick && !fanoutOnly && !browserOnly) await replaceReadmeSection('screen', markdown);
