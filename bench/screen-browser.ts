// Screen sharing in Chromium through the real platform (api, voice node, web app): the time from
// clicking Share to the first frame a viewer decodes, what the sharer's encoder costs and sends
// per simulcast layer at 1080p30 and 2160p30, and the glass-to-glass delay of a 1080p30 share of
// game-like content, read from timestamps drawn into the shared frames; and how fast the top
// layer the server switched off at the sharer comes back when a viewer needs it again.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as mediasoup from 'mediasoup';
import type { types } from 'mediasoup';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { ensureChannel } from '../api/test/support/sessions';
import { startTestApi, type TestApi } from '../api/test/support/server';
import { hearthState, launchChromium } from '../e2e/support/browser';
import { shareLayers } from '../e2e/support/screen-tiles';
import { eventually } from '../e2e/support/wait';
import { childProcesses, foreignCpuMeter, loadAverage, treeCpuSeconds } from './screen-proc';
import { percentile, round } from './stats';

const webDistDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../web/dist');
const CHANNEL = 'screen-bench';
// A window this small gets a tile that asks for the low layer; 1280x720 asks for the top one.
const SMALL_WINDOW = { width: 480, height: 400 };
const LARGE_WINDOW = { width: 1280, height: 720 };

/** p50 / p95 / max of a list of samples (and the samples, when few). */
export interface Distribution {
  count: number;
  samples?: number[];
  p50: number;
  p95: number;
  max: number;
}

/** One simulcast layer the sharer sent during a measured window, from its `outbound-rtp` stats. */
export interface LayerRate {
  /** `r0` (low) or `r1` (top). */
  rid: string | null;
  /** Size of the last encoded frame. */
  width: number;
  height: number;
  /** Frames encoded per second. */
  framesPerSecond: number;
  /** RTP payload bytes sent per second. */
  payloadBytesPerSecond: number;
  /** RTP header bytes (with extensions) sent per second. */
  headerBytesPerSecond: number;
  /** RTP packets sent per second. */
  packetsPerSecond: number;
  /** Milliseconds the encoder spent per second of video (`totalEncodeTime`). */
  encodeMsPerSecond: number;
  /** Why the encoder held back, as the browser reports it (`none`, `cpu`, `bandwidth`). */
  qualityLimitationReason: string;
  /** The encoder the browser chose. */
  encoderImplementation: string;
}

/** What sharing one preset cost the sharer's browser, and what it sent. */
export interface EncodingResult {
  /** What was shared. */
  content: ShareContent;
  /** The web client's preset (capture size and frame rate). */
  preset: string;
  /** The 1-minute load average just before the window. */
  loadAverageBefore: number;
  /** CPU used meanwhile by processes other than the benchmark's, in cores. */
  foreignCpuCores: number;
  /** CPU of every process of the sharer's browser while sharing, in percent of one core. */
  sharerCpuPercent: number;
  /** The same page joined with its microphone but not sharing. */
  idleCpuPercent: number;
  /** Each layer, lowest first. */
  layers: LayerRate[];
}

/**
 * Where a frame's time goes, from the browsers' own counters over the window: the sharer's top
 * layer and the viewer's received stream. The rest of the glass-to-glass delay is capture, the
 * network and the SFU, and rendering.
 */
export interface DelayStages {
  /** The sharer's encoder, per frame of the top layer. */
  encodeMsPerFrame: number;
  /** The sharer's pacer, per packet of the top layer (`totalPacketSendDelay`). */
  pacerMsPerPacket: number;
  /** The viewer's jitter buffer, per frame (`jitterBufferDelay`). */
  jitterBufferMsPerFrame: number;
  /** The viewer, from a frame's first packet to the frame decoded (`totalProcessingDelay`). */
  receiveToDecodedMsPerFrame: number;
  /** The viewer's decoder, per frame. */
  decodeMsPerFrame: number;
  /** Frames the viewer decoded per second, and dropped in the window. */
  framesDecodedPerSecond: number;
  framesDropped: number;
  /** RTP packets the viewer lost, NACKs and PLIs it sent, and its freezes, in the window. */
  packetsLost: number;
  nacks: number;
  plis: number;
  freezes: number;
}

/** What the SFU forwarded to a viewer at one moment. */
export interface ForwardedSample {
  /** The simulcast layer and its temporal layer, or null while none. */
  spatialLayer: number | null;
  temporalLayer: number | null;
  /** The viewer transport's bandwidth estimate, in kbit/s. */
  availableKbps: number;
}

/** Glass-to-glass delay of a 1080p30 share. */
export interface GlassToGlassResult {
  /** The 1-minute load average just before the window. */
  loadAverageBefore: number;
  /** CPU used meanwhile by processes other than the benchmark's, in cores. */
  foreignCpuCores: number;
  /** Milliseconds from drawing a frame at the sharer to the viewer presenting it. */
  delayMs: Distribution;
  /** The same, for the frames of each width the viewer presented (1920 top, 960 low layer). */
  delayMsByWidth: Record<string, Distribution>;
  /** Frames the viewer presented and read a timestamp from, per second. */
  framesPerSecond: number;
  /** Size of the last frame the viewer decoded. */
  width: number;
  height: number;
  /** Presented frames whose drawn timestamp could not be read. */
  unreadableFrames: number;
  /** Where the time goes. */
  stages: DelayStages;
  /**
   * Milliseconds from clicking Share until the SFU forwarded the viewer the whole top layer
   * (every temporal layer) to stay.
   */
  topLayerAfterMs: number;
  /** What the SFU forwarded to the viewer in the window, sampled once a second. */
  forwarded: ForwardedSample[];
  /** What the sharer sent of this content, per layer. */
  layers: LayerRate[];
}

/**
 * How fast a top layer the server had switched off at the sharer comes back when a viewer needs
 * it again: one viewer in a small window (its tile asks for the low layer) until the sharer's top
 * layer stops sending, then the window grows to 1280x720.
 */
export interface LayerResumeResult {
  /** The voice node's VOICE_SHARE_LAYER_IDLE_MS. */
  idleMs: number;
  /** Repetitions measured, and those whose top layer did not come back within the limit. */
  repetitions: number;
  timedOut: number;
  /** Milliseconds from shrinking the window until the sharer's top layer stopped growing. */
  stopAfterShrinkMs: Distribution;
  /** Milliseconds from growing the window until the sharer's top layer `bytesSent` grew again. */
  sharerResumeMs: Distribution;
  /** Milliseconds from growing the window until the viewer presented a 1920-pixel-wide frame. */
  viewerTopFrameMs: Distribution;
  /** Milliseconds from growing the window until the SFU forwarded the viewer the top layer. */
  sfuForwardMs?: Distribution;
  /** How often the readings were polled, in milliseconds. */
  pollMs: number;
}

/** Results of the Chromium part of bench:screen. */
export interface BrowserResult {
  /** Milliseconds from clicking Share (1080p30) to the first frame a watching viewer decodes. */
  shareToFirstFrameMs: Distribution;
  /** The resolutions of those first frames, e.g. `960x540: 10`. */
  firstFrameSizes: Record<string, number>;
  /** Sharer encoding cost and layer rates per preset. */
  encoding: EncodingResult[];
  /** Glass-to-glass delay at 1080p30. */
  glassToGlass: GlassToGlassResult;
  /** Top layer resume after the server switched it off at the sharer. */
  layerResume?: LayerResumeResult;
}

// In every page: keeps the page's RTCPeerConnections so the benchmark can read their video
// statistics, and clicks Share with the click's time on the page's clock.
const PAGE_HOOK = String.raw`(() => {
  const Native = window.RTCPeerConnection;
  const connections = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      connections.push(this);
    }
  };
  const videoStats = async (type, pick) => {
    const entries = [];
    for (const connection of connections) {
      if (connection.connectionState === 'closed') continue;
      (await connection.getStats()).forEach((s) => {
        if (s.type === type && s.kind === 'video') entries.push(pick(s));
      });
    }
    return entries;
  };
  window.__screenBench = Object.assign(window.__screenBench || {}, {
    outboundVideo: () => videoStats('outbound-rtp', (s) => ({
      ssrc: s.ssrc, rid: s.rid ?? null, bytesSent: s.bytesSent ?? 0,
      headerBytesSent: s.headerBytesSent ?? 0, packetsSent: s.packetsSent ?? 0,
      framesEncoded: s.framesEncoded ?? 0, totalEncodeTime: s.totalEncodeTime ?? 0,
      totalPacketSendDelay: s.totalPacketSendDelay ?? 0,
      frameWidth: s.frameWidth ?? 0, frameHeight: s.frameHeight ?? 0,
      qualityLimitationReason: s.qualityLimitationReason ?? '',
      encoderImplementation: s.encoderImplementation ?? '',
    })),
    inboundVideo: () => videoStats('inbound-rtp', (s) => ({
      ssrc: s.ssrc, framesDecoded: s.framesDecoded ?? 0, framesDropped: s.framesDropped ?? 0,
      totalDecodeTime: s.totalDecodeTime ?? 0, totalProcessingDelay: s.totalProcessingDelay ?? 0,
      jitterBufferDelay: s.jitterBufferDelay ?? 0,
      jitterBufferEmittedCount: s.jitterBufferEmittedCount ?? 0,
      packetsReceived: s.packetsReceived ?? 0, packetsLost: s.packetsLost ?? 0,
      nackCount: s.nackCount ?? 0, pliCount: s.pliCount ?? 0, freezeCount: s.freezeCount ?? 0,
    })),
    clickShare() {
      const button = document.querySelector('[data-testid="share-start"]');
      const at = performance.timeOrigin + performance.now();
      button.click();
      return at;
    },
  });
})();`;

// The timestamp grid drawn into the game-like share and read back at the viewer: 40 bits of the
// drawing time in milliseconds and an 8-bit checksum, one bit per 40-pixel black or white cell
// (20 pixels in the low layer), on a plain gray field so compression keeps the cells clean.
const GRID = { x: 40, y: 40, cell: 40, columns: 8, rows: 6, width: 1920, height: 1080 };

// In a game sharer's page: getDisplayMedia returns a canvas at the size and frame rate asked for
// that moves like game footage (a textured landscape scrolling under a drifting sky, with
// sprites crossing it, so every frame differs almost everywhere), with the drawing time of each
// frame in the grid. Drawing stops when the app stops the track.
const GAME_CAPTURE = String.raw`(() => {
  const G = ${JSON.stringify(GRID)};
  const texture = (size, cells, seed) => {
    // Smooth blobs: a few random cells stretched over the tile, like a game's ground texture.
    const small = document.createElement('canvas');
    small.width = small.height = cells;
    const smallContext = small.getContext('2d');
    const image = smallContext.createImageData(cells, cells);
    let state = seed;
    for (let i = 0; i < image.data.length; i += 4) {
      state = (state * 1103515245 + 12345) % 2147483648;
      const value = state % 256;
      image.data[i] = 60 + (value >> 1);
      image.data[i + 1] = 90 + (value >> 2);
      image.data[i + 2] = 40 + (value >> 2);
      image.data[i + 3] = 255;
    }
    smallContext.putImageData(image, 0, 0);
    const tile = document.createElement('canvas');
    tile.width = tile.height = size;
    tile.getContext('2d').drawImage(small, 0, 0, size, size);
    return tile;
  };
  navigator.mediaDevices.getDisplayMedia = async (constraints) => {
    const video = (constraints && constraints.video) || {};
    const height = (video.height && video.height.ideal) || G.height;
    const width = Math.round((height * 16) / 9);
    const fps = (video.frameRate && video.frameRate.ideal) || 30;
    // Everything is laid out for 1920x1080 and scaled, the grid included.
    const k = height / G.height;
    const canvas = document.createElement('canvas');
    canvas.width = width;
    canvas.height = height;
    const context = canvas.getContext('2d');
    const ground = context.createPattern(texture(512, 48, 7), 'repeat');
    const rocks = context.createPattern(texture(128, 24, 99), 'repeat');
    let frame = 0;
    const draw = () => {
      frame++;
      context.setTransform(k, 0, 0, k, 0, 0);
      const sky = context.createLinearGradient(0, 0, 0, G.height * 0.45);
      sky.addColorStop(0, 'hsl(' + ((200 + frame * 0.5) % 360) + ', 60%, 35%)');
      sky.addColorStop(1, 'hsl(' + ((230 + frame * 0.5) % 360) + ', 50%, 75%)');
      context.fillStyle = sky;
      context.fillRect(0, 0, G.width, G.height * 0.45);
      context.save();
      context.translate(-((frame * 14) % 512), -((frame * 3) % 512));
      context.fillStyle = ground;
      context.fillRect(0, G.height * 0.45, G.width + 512, G.height * 0.55 + 512);
      context.restore();
      for (let i = 0; i < 10; i++) {
        const x = ((frame * (6 + i * 3) + i * 211) % (G.width + 200)) - 200;
        const y = G.height * 0.3 + ((i * 97 + frame * (i % 3)) % (G.height * 0.6));
        context.save();
        context.translate(x, y);
        context.fillStyle = rocks;
        context.fillRect(0, 0, 180, 120);
        context.restore();
      }
      context.fillStyle = '#ffffff';
      context.font = '32px sans-serif';
      context.fillText('frame ' + frame, G.width - 300, 60);
      const bits = G.columns * G.rows;
      context.fillStyle = '#808080';
      context.fillRect(G.x - G.cell, G.y - G.cell, (G.columns + 2) * G.cell, (G.rows + 2) * G.cell);
      const stamp = Math.round(performance.timeOrigin + performance.now()) % 2 ** 40;
      let checksum = 0;
      for (let byte = 0; byte < 5; byte++) checksum += Math.floor(stamp / 2 ** (8 * byte)) % 256;
      for (let bit = 0; bit < bits; bit++) {
        const one = bit < 40
          ? Math.floor(stamp / 2 ** bit) % 2
          : Math.floor((checksum % 256) / 2 ** (bit - 40)) % 2;
        context.fillStyle = one ? '#ffffff' : '#000000';
        context.fillRect(G.x + (bit % G.columns) * G.cell, G.y + Math.floor(bit / G.columns) * G.cell, G.cell, G.cell);
      }
    };
    draw();
    const timer = setInterval(draw, 1000 / fps);
    const stream = canvas.captureStream(fps);
    const track = stream.getVideoTracks()[0];
    const stop = track.stop.bind(track);
    track.stop = () => {
      clearInterval(timer);
      stop();
    };
    return stream;
  };
})();`;

// In the viewer page: follows every frame each <video> presents (requestVideoFrameCallback),
// notes the first one after the benchmark arms it, and while stamping reads the timestamp grid
// of each frame and keeps the delay to the time the frame is expected on screen.
const VIEWER_HOOK = String.raw`(() => {
  const G = ${JSON.stringify(GRID)};
  const reader = document.createElement('canvas');
  reader.width = G.columns * G.cell;
  reader.height = G.rows * G.cell;
  const readerContext = reader.getContext('2d', { willReadFrequently: true });
  const state = {
    armed: false, firstFrame: null, stamping: false, delays: [], widths: [], unreadable: 0,
    width: 0, height: 0, wantWidth: 0, widthFrame: null,
  };
  const readStamp = (video) => {
    const scale = video.videoWidth / G.width;
    readerContext.drawImage(video, G.x * scale, G.y * scale, reader.width * scale,
      reader.height * scale, 0, 0, reader.width, reader.height);
    const pixels = readerContext.getImageData(0, 0, reader.width, reader.height).data;
    let stamp = 0;
    let checksum = 0;
    for (let bit = 0; bit < G.columns * G.rows; bit++) {
      const x = (bit % G.columns) * G.cell + G.cell / 2;
      const y = Math.floor(bit / G.columns) * G.cell + G.cell / 2;
      const one = pixels[(y * reader.width + x) * 4] > 128 ? 1 : 0;
      if (bit < 40) stamp += one * 2 ** bit;
      else checksum += one * 2 ** (bit - 40);
    }
    let sum = 0;
    for (let byte = 0; byte < 5; byte++) sum += Math.floor(stamp / 2 ** (8 * byte)) % 256;
    return sum % 256 === checksum ? stamp : null;
  };
  const onFrame = (video, metadata) => {
    const shownAt = performance.timeOrigin + metadata.expectedDisplayTime;
    if (state.armed && !state.firstFrame) {
      state.firstFrame = { at: shownAt, width: metadata.width, height: metadata.height };
    }
    if (state.wantWidth && !state.widthFrame && metadata.width === state.wantWidth) {
      state.widthFrame = { at: shownAt };
    }
    if (!state.stamping) return;
    state.width = metadata.width;
    state.height = metadata.height;
    const stamp = readStamp(video);
    if (stamp === null) {
      state.unreadable++;
      return;
    }
    const drawnAt = shownAt - ((shownAt - stamp) % 2 ** 40);
    state.delays.push(shownAt - drawnAt);
    state.widths.push(metadata.width);
  };
  const followed = new WeakSet();
  const follow = (video) => {
    if (followed.has(video)) return;
    followed.add(video);
    const loop = (_now, metadata) => {
      onFrame(video, metadata);
      video.requestVideoFrameCallback(loop);
    };
    video.requestVideoFrameCallback(loop);
  };
  new MutationObserver(() => document.querySelectorAll('video').forEach(follow)).observe(document, {
    childList: true,
    subtree: true,
  });
  window.__screenBench = Object.assign(window.__screenBench || {}, {
    arm() {
      state.armed = true;
      state.firstFrame = null;
    },
    firstFrame: () => state.firstFrame,
    // Notes the first frame presented at width pixels wide from now on; returns the page's time.
    armWidth(width) {
      state.wantWidth = width;
      state.widthFrame = null;
      return performance.timeOrigin + performance.now();
    },
    widthFrame: () => state.widthFrame,
    stamp(on) {
      state.stamping = on;
      state.delays = [];
      state.widths = [];
      state.unreadable = 0;
    },
    stamps: () => ({ delays: state.delays, widths: state.widths, unreadable: state.unreadable, width: state.width, height: state.height }),
  });
})();`;

// What PAGE_HOOK's outboundVideo() returns per layer.
interface OutboundVideo {
  ssrc: number;
  rid: string | null;
  bytesSent: number;
  headerBytesSent: number;
  packetsSent: number;
  framesEncoded: number;
  totalEncodeTime: number;
  totalPacketSendDelay: number;
  frameWidth: number;
  frameHeight: number;
  qualityLimitationReason: string;
  encoderImplementation: string;
}

function evaluate<T>(page: Page, expression: string): Promise<T> {
  return page.evaluate(expression) as Promise<T>;
}

function outboundVideo(page: Page): Promise<OutboundVideo[]> {
  return evaluate(page, 'window.__screenBench.outboundVideo()');
}

// What PAGE_HOOK's inboundVideo() returns per received video stream.
interface InboundVideo {
  ssrc: number;
  framesDecoded: number;
  framesDropped: number;
  totalDecodeTime: number;
  totalProcessingDelay: number;
  jitterBufferDelay: number;
  jitterBufferEmittedCount: number;
  packetsReceived: number;
  packetsLost: number;
  nackCount: number;
  pliCount: number;
  freezeCount: number;
}

function inboundVideo(page: Page): Promise<InboundVideo[]> {
  return evaluate(page, 'window.__screenBench.inboundVideo()');
}

// The layers sent between two readings, lowest first.
function layerRates(
  before: OutboundVideo[],
  after: OutboundVideo[],
  elapsedSeconds: number,
): LayerRate[] {
  const rate = (value: number) => round(value / elapsedSeconds);
  return after
    .flatMap((layer) => {
      const earlier = before.find((candidate) => candidate.ssrc === layer.ssrc);
      if (!earlier) return [];
      return [
        {
          rid: layer.rid,
          width: layer.frameWidth,
          height: layer.frameHeight,
          framesPerSecond: rate(layer.framesEncoded - earlier.framesEncoded),
          payloadBytesPerSecond: Math.round((layer.bytesSent - earlier.bytesSent) / elapsedSeconds),
          headerBytesPerSecond: Math.round(
            (layer.headerBytesSent - earlier.headerBytesSent) / elapsedSeconds,
          ),
          packetsPerSecond: rate(layer.packetsSent - earlier.packetsSent),
          encodeMsPerSecond: rate((layer.totalEncodeTime - earlier.totalEncodeTime) * 1000),
          qualityLimitationReason: layer.qualityLimitationReason,
          encoderImplementation: layer.encoderImplementation,
        },
      ];
    })
    .sort((a, b) => (a.rid ?? '').localeCompare(b.rid ?? ''));
}

// The stages of the delay between two readings of both ends' counters.
function delayStages(
  sentBefore: OutboundVideo[],
  sentAfter: OutboundVideo[],
  receivedBefore: InboundVideo[],
  receivedAfter: InboundVideo[],
  elapsedSeconds: number,
): DelayStages {
  const top = sentAfter.reduce((a, b) => (b.frameWidth > a.frameWidth ? b : a));
  const topBefore = sentBefore.find((layer) => layer.ssrc === top.ssrc) ?? top;
  // The viewer receives one stream per share; the share's is the one that grew most.
  const delta = receivedAfter
    .map((stream) => {
      const earlier = receivedBefore.find((candidate) => candidate.ssrc === stream.ssrc);
      const minus = (key: keyof InboundVideo) => stream[key] - (earlier?.[key] ?? 0);
      return {
        framesDecoded: minus('framesDecoded'),
        framesDropped: minus('framesDropped'),
        totalDecodeTime: minus('totalDecodeTime'),
        totalProcessingDelay: minus('totalProcessingDelay'),
        jitterBufferDelay: minus('jitterBufferDelay'),
        jitterBufferEmittedCount: minus('jitterBufferEmittedCount'),
        packetsLost: minus('packetsLost'),
        nackCount: minus('nackCount'),
        pliCount: minus('pliCount'),
        freezeCount: minus('freezeCount'),
      };
    })
    .reduce((a, b) => (b.framesDecoded > a.framesDecoded ? b : a));
  const perFrame = (seconds: number, frames: number) => round((seconds * 1000) / frames, 2);
  return {
    encodeMsPerFrame: perFrame(
      top.totalEncodeTime - topBefore.totalEncodeTime,
      top.framesEncoded - topBefore.framesEncoded,
    ),
    pacerMsPerPacket: perFrame(
      top.totalPacketSendDelay - topBefore.totalPacketSendDelay,
      top.packetsSent - topBefore.packetsSent,
    ),
    jitterBufferMsPerFrame: perFrame(delta.jitterBufferDelay, delta.jitterBufferEmittedCount),
    receiveToDecodedMsPerFrame: perFrame(delta.totalProcessingDelay, delta.framesDecoded),
    decodeMsPerFrame: perFrame(delta.totalDecodeTime, delta.framesDecoded),
    framesDecodedPerSecond: round(delta.framesDecoded / elapsedSeconds),
    framesDropped: delta.framesDropped,
    packetsLost: delta.packetsLost,
    nacks: delta.nackCount,
    plis: delta.pliCount,
    freezes: delta.freezeCount,
  };
}

function distribution(samples: number[]): Distribution {
  return {
    count: samples.length,
    samples: samples.length <= 50 ? samples.map((value) => round(value)) : undefined,
    p50: round(percentile(samples, 50)),
    p95: round(percentile(samples, 95)),
    max: round(Math.max(...samples)),
  };
}

// Launches Chromium and finds its main process among this process's children.
async function launchTracked(): Promise<{ browser: Browser; pid: number }> {
  const before = childProcesses('chromium');
  // The fake capture devices deliver 30 frames per second, as the presets ask, not 20.
  const browser = await launchChromium({ fakeDeviceFps: 30 });
  const pid = [...childProcesses('chromium')].find((candidate) => !before.has(candidate));
  if (pid === undefined) throw new Error('cannot find the Chromium process just launched');
  return { browser, pid };
}

async function openVoicePage(
  browser: Browser,
  api: TestApi,
  name: string,
  initScripts: string[],
  viewport = LARGE_WINDOW,
): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport });
  for (const content of initScripts) await context.addInitScript({ content });
  const page = await context.newPage();
  await page.goto(`${api.baseUrl}/voice/${CHANNEL}?name=${name}&autojoin=1`);
  await eventually(
    async () => (await hearthState(page))?.connection === 'connected',
    20_000,
    `${name} to join`,
  );
  return { context, page };
}

async function startShare(page: Page, preset: string): Promise<number> {
  await page.getByTestId('share-preset').selectOption(preset);
  const clickedAt = await evaluate<number>(page, 'window.__screenBench.clickShare()');
  await eventually(
    async () => (await hearthState(page))?.sharing === 'live',
    20_000,
    'the share to go live',
  );
  return clickedAt;
}

async function stopShare(page: Page): Promise<void> {
  await page.getByTestId('share-stop').click();
  await eventually(
    async () => (await hearthState(page))?.sharing === 'off',
    10_000,
    'the share to stop',
  );
}

// Resolves once both layers are encoded and the top one at `width` pixels.
async function expectLayers(page: Page, width: number): Promise<void> {
  await eventually(
    async () => {
      const layers = await outboundVideo(page);
      return layers.length >= 2 && layers.some((layer) => layer.frameWidth === width);
    },
    30_000,
    `both layers with the top one ${width} pixels wide`,
  );
}

/**
 * Follows the simulcast consumers that the platform's mediasoup workers create, so that the
 * benchmark can say which layers a viewer received and under what bandwidth estimate.
 */
class SimulcastConsumerWatch {
  readonly #consumers: { consumer: types.Consumer; transport: types.Transport }[] = [];
  readonly #onWorker = (worker: types.Worker) =>
    worker.observer.on('newrouter', (router) =>
      router.observer.on('newtransport', (transport) =>
        transport.observer.on('newconsumer', (consumer) => {
          if (consumer.type === 'simulcast') this.#consumers.push({ consumer, transport });
        }),
      ),
    );

  constructor() {
    mediasoup.observer.on('newworker', this.#onWorker);
  }

  /** The newest simulcast consumer still open, with its transport. */
  latest(): { consumer: types.Consumer; transport: types.Transport } | undefined {
    return this.#consumers.filter(({ consumer }) => !consumer.closed).at(-1);
  }

  /** Stops following new workers. */
  close(): void {
    mediasoup.observer.off('newworker', this.#onWorker);
  }
}

/** Runs the Chromium measurements; `quick` shortens the windows and takes fewer samples. */
export async function runBrowserBenchmarks(
  quick: boolean,
  parts: { encoding?: boolean; firstFrame?: boolean; layerResume?: boolean } = {},
): Promise<BrowserResult> {
  const windowSeconds = quick ? 4 : 10;
  const repeats = quick ? 5 : 20;
  // Nobody watches while the encoder is measured, so layers stay on however long nobody wants
  // them (the server would otherwise switch the top one off at the sharer).
  const watch = new SimulcastConsumerWatch();
  const api = await startTestApi({
    api: { webDistDir, guestGrants: 'join,speak,screen-share' },
    voice: { numWorkers: 2, shareLayerIdleMs: 600_000 },
  });
  const sharer = await launchTracked();
  const viewerBrowser = await launchChromium();
  try {
    await ensureChannel(api.baseUrl, CHANNEL);
    const encoding: EncodingResult[] = [];
    if (parts.encoding !== false) {
      const p1080 = { preset: '1080p30', width: 1920 };
      const p2160 = { preset: '2160p30', width: 3840 };
      encoding.push(
        ...(await measureEncoding(sharer, api, 'fake screen', [p1080, p2160], windowSeconds)),
        // A 3840x2160 canvas cannot be drawn 30 times a second in software here, so the game
        // content is measured at 1080p30 only.
        ...(await measureEncoding(sharer, api, 'game', [p1080], windowSeconds)),
      );
    }

    const { context: viewerContext, page: viewer } = await openVoicePage(
      viewerBrowser,
      api,
      'Viewer',
      [PAGE_HOOK, VIEWER_HOOK],
    );
    const { context: sharerContext, page: sharerPage } = await openVoicePage(
      sharer.browser,
      api,
      'Sharer',
      [PAGE_HOOK],
    );
    const firstFrames: number[] = [];
    const firstFrameSizes: Record<string, number> = {};
    for (let index = 0; index < (parts.firstFrame === false ? 0 : repeats); index++) {
      await evaluate(viewer, 'window.__screenBench.arm()');
      const clickedAt = await startShare(sharerPage, '1080p30');
      let first: { at: number; width: number; height: number } | null = null;
      await eventually(
        async () => {
          first = await evaluate(viewer, 'window.__screenBench.firstFrame()');
          return first !== null;
        },
        20_000,
        'the first frame at the viewer',
      );
      const frame = first! as { at: number; width: number; height: number };
      firstFrames.push(frame.at - clickedAt);
      const size = `${frame.width}x${frame.height}`;
      firstFrameSizes[size] = (firstFrameSizes[size] ?? 0) + 1;
      await stopShare(sharerPage);
      await eventually(
        async () => (await hearthState(viewer))?.screens.length === 0,
        10_000,
        'the tile to go',
      );
      await new Promise((resolve) => setTimeout(resolve, 700));
    }
    await sharerContext.close();

    const glassToGlass = await measureGlassToGlass(
      sharer.browser,
      api,
      viewer,
      watch,
      windowSeconds + 5,
    );
    await viewerContext.close();
    const layerResume =
      parts.layerResume === false
        ? undefined
        : await measureLayerResume(sharer.browser, viewerBrowser, quick ? 3 : 5, watch);
    return {
      shareToFirstFrameMs: distribution(firstFrames.length > 0 ? firstFrames : [Number.NaN]),
      firstFrameSizes,
      encoding,
      glassToGlass,
      layerResume,
    };
  } finally {
    await sharer.browser.close();
    await viewerBrowser.close();
    await api.close();
    watch.close();
  }
}

/** What a sharer shares in the encoding measurements. */
export type ShareContent = 'fake screen' | 'game';

// The sharer alone in the channel: its browser's CPU joined without sharing, then sharing each
// preset, of Chromium's fake screen capture (a nearly still test pattern, as a desktop mostly
// is) or of the game-like canvas.
async function measureEncoding(
  sharer: { browser: Browser; pid: number },
  api: TestApi,
  content: ShareContent,
  presets: readonly { preset: string; width: number }[],
  windowSeconds: number,
): Promise<EncodingResult[]> {
  const { context, page } = await openVoicePage(
    sharer.browser,
    api,
    'Encoder',
    content === 'game' ? [PAGE_HOOK, GAME_CAPTURE] : [PAGE_HOOK],
  );
  const cpuPercentOver = async (seconds: number) => {
    const before = treeCpuSeconds(sharer.pid);
    const started = performance.now();
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    return ((treeCpuSeconds(sharer.pid) - before) / ((performance.now() - started) / 1000)) * 100;
  };
  await new Promise((resolve) => setTimeout(resolve, 3000));
  const idleCpuPercent = round(await cpuPercentOver(Math.min(6, windowSeconds)));
  const results: EncodingResult[] = [];
  for (const { preset, width } of presets) {
    await startShare(page, preset);
    await expectLayers(page, width);
    // Bandwidth estimation ramps the top layer up to its bitrate.
    await new Promise((resolve) => setTimeout(resolve, 6000));
    const loadAverageBefore = round(loadAverage(), 2);
    const before = await outboundVideo(page);
    const foreignCpu = foreignCpuMeter();
    const started = performance.now();
    const sharerCpuPercent = round(await cpuPercentOver(windowSeconds));
    const foreignCpuCores = round(foreignCpu(), 2);
    const after = await outboundVideo(page);
    const layers = layerRates(before, after, (performance.now() - started) / 1000);
    results.push({
      content,
      preset,
      loadAverageBefore,
      foreignCpuCores,
      sharerCpuPercent,
      idleCpuPercent,
      layers,
    });
    await stopShare(page);
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
  await context.close();
  return results;
}

// A sharer whose screen is the game-like canvas, watched by `viewer` in a large tile.
async function measureGlassToGlass(
  browser: Browser,
  api: TestApi,
  viewer: Page,
  watch: SimulcastConsumerWatch,
  windowSeconds: number,
): Promise<GlassToGlassResult> {
  const { context, page } = await openVoicePage(browser, api, 'Gamer', [PAGE_HOOK, GAME_CAPTURE]);
  try {
    const sharedAt = await startShare(page, '1080p30');
    await expectLayers(page, GRID.width);
    await evaluate(viewer, 'window.__screenBench.stamp(true)');
    // The viewer's tile asks for the top layer. Its bandwidth estimate starts low, so the SFU
    // may give it the top layer, take it back as the layer's bitrate grows, and give it again
    // once the estimate allows; the window starts after 3 s of the whole top layer.
    let heldSince: number | undefined;
    await eventually(
      async () => {
        const latest = watch.latest();
        const layers = latest?.consumer.currentLayers;
        const top =
          layers?.spatialLayer === 1 &&
          layers.temporalLayer === latest!.consumer.preferredLayers?.temporalLayer;
        heldSince = top ? (heldSince ?? Date.now()) : undefined;
        return heldSince !== undefined && Date.now() - heldSince >= 3000;
      },
      90_000,
      'the SFU to forward the whole top layer to the viewer for 3 s',
    );
    const topLayerAfterMs = Math.round(heldSince! - sharedAt);
    const loadAverageBefore = round(loadAverage(), 2);
    const before = await outboundVideo(page);
    const received = await inboundVideo(viewer);
    await evaluate(viewer, 'window.__screenBench.stamp(true)');
    const foreignCpu = foreignCpuMeter();
    const started = performance.now();
    // Once a second, the layers the SFU forwards to the viewer and its bandwidth estimate.
    const forwarded: ForwardedSample[] = [];
    while (performance.now() - started < windowSeconds * 1000) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const latest = watch.latest();
      if (!latest) continue;
      const [transportStats] = await latest.transport.getStats();
      forwarded.push({
        spatialLayer: latest.consumer.currentLayers?.spatialLayer ?? null,
        temporalLayer: latest.consumer.currentLayers?.temporalLayer ?? null,
        availableKbps: Math.round((transportStats?.availableOutgoingBitrate ?? 0) / 1000),
      });
    }
    const foreignCpuCores = round(foreignCpu(), 2);
    const stamps = await evaluate<{
      delays: number[];
      widths: number[];
      unreadable: number;
      width: number;
      height: number;
    }>(viewer, 'window.__screenBench.stamps()');
    const elapsedSeconds = (performance.now() - started) / 1000;
    const after = await outboundVideo(page);
    const receivedAfter = await inboundVideo(viewer);
    await evaluate(viewer, 'window.__screenBench.stamp(false)');
    await stopShare(page);
    return {
      loadAverageBefore,
      foreignCpuCores,
      delayMs: distribution(stamps.delays),
      delayMsByWidth: Object.fromEntries(
        [...new Set(stamps.widths)].map((width) => [
          width,
          distribution(stamps.delays.filter((_, index) => stamps.widths[index] === width)),
        ]),
      ),
      framesPerSecond: round(stamps.delays.length / elapsedSeconds),
      width: stamps.width,
      height: stamps.height,
      unreadableFrames: stamps.unreadable,
      stages: delayStages(before, after, received, receivedAfter, elapsedSeconds),
      topLayerAfterMs,
      forwarded,
      layers: layerRates(before, after, elapsedSeconds),
    };
  } finally {
    await context.close();
  }
}

// The voice node's default VOICE_SHARE_LAYER_IDLE_MS, which the layer resume measurement keeps.
const LAYER_IDLE_MS = 5000;
const POLL_MS = 50;
// How long a repetition waits for the top layer to come back before counting it as timed out.
const RESUME_LIMIT_MS = 10_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// Bytes the sharer's top layer (rid r1) has sent so far.
async function topLayerBytesSent(sharer: Page): Promise<number> {
  const layers = await shareLayers(sharer);
  return (layers.find((layer) => layer.rid === 'r1') ?? layers[1])?.bytesSent ?? 0;
}

// Polls the sharer's top layer every POLL_MS until its bytesSent has not grown for 1.5 s, and
// returns when it last grew (performance.now()).
async function topLayerStopped(sharer: Page, limitMs: number): Promise<number> {
  const started = performance.now();
  let last = await topLayerBytesSent(sharer);
  let lastGrowth = performance.now();
  while (performance.now() - started < limitMs) {
    await sleep(POLL_MS);
    const bytes = await topLayerBytesSent(sharer);
    if (bytes !== last) {
      last = bytes;
      lastGrowth = performance.now();
    } else if (performance.now() - lastGrowth >= 1500) {
      return lastGrowth;
    }
  }
  throw new Error(`the sharer's top layer still sending after ${limitMs} ms`);
}

/**
 * Top layer resume, on a voice node of its own with VOICE_SHARE_LAYER_IDLE_MS at its default: a
 * viewer in a small window watches a 1080p30 share of the fake screen; once the server has
 * switched the sharer's top layer off, the window grows to 1280x720, and the benchmark polls
 * every 50 ms for the sharer's top layer sending again and notes (requestVideoFrameCallback) the
 * viewer's first presented frame 1920 pixels wide. Then the window shrinks again.
 */
export async function measureLayerResume(
  sharerBrowser: Browser,
  viewerBrowser: Browser,
  repetitions: number,
  watch?: SimulcastConsumerWatch,
): Promise<LayerResumeResult> {
  const api = await startTestApi({
    api: { webDistDir, guestGrants: 'join,speak,screen-share' },
    voice: { numWorkers: 2, shareLayerIdleMs: LAYER_IDLE_MS },
  });
  try {
    await ensureChannel(api.baseUrl, CHANNEL);
    const viewer = await openVoicePage(
      viewerBrowser,
      api,
      'Small',
      [PAGE_HOOK, VIEWER_HOOK],
      SMALL_WINDOW,
    );
    const sharer = await openVoicePage(sharerBrowser, api, 'Sharer', [PAGE_HOOK]);
    await startShare(sharer.page, '1080p30');
    await expectLayers(sharer.page, 1920);
    await eventually(
      async () => (await hearthState(viewer.page))?.screens.length === 1,
      10_000,
      'the tile at the viewer',
    );
    const stops: number[] = [];
    const sharerResumes: number[] = [];
    const viewerFrames: number[] = [];
    const forwards: number[] = [];
    let timedOut = 0;
    let shrunkAt: number | undefined;
    for (let index = 0; index < repetitions; index++) {
      const stoppedAt = await topLayerStopped(sharer.page, LAYER_IDLE_MS + 20_000);
      if (shrunkAt !== undefined) stops.push(stoppedAt - shrunkAt);
      const before = await topLayerBytesSent(sharer.page);
      const armedAt = await evaluate<number>(viewer.page, 'window.__screenBench.armWidth(1920)');
      const grownAt = performance.now();
      await viewer.page.setViewportSize(LARGE_WINDOW);
      let sharerResume: number | undefined;
      let viewerFrame: number | undefined;
      let forward: number | undefined;
      while (
        (sharerResume === undefined || viewerFrame === undefined) &&
        performance.now() - grownAt < RESUME_LIMIT_MS
      ) {
        if (sharerResume === undefined && (await topLayerBytesSent(sharer.page)) > before) {
          sharerResume = performance.now() - grownAt;
        }
        if (viewerFrame === undefined) {
          const frame = await evaluate<{ at: number } | null>(
            viewer.page,
            'window.__screenBench.widthFrame()',
          );
          if (frame) viewerFrame = frame.at - armedAt;
        }
        if (forward === undefined && watch?.latest()?.consumer.currentLayers?.spatialLayer === 1) {
          forward = performance.now() - grownAt;
        }
        await sleep(POLL_MS);
      }
      if (forward !== undefined) forwards.push(forward);
      console.log(
        `layer resume ${index + 1}: sharer ${sharerResume?.toFixed(0)} ms, SFU ${forward?.toFixed(0)} ms, viewer 1920 frame ${viewerFrame?.toFixed(0)} ms`,
      );
      if (sharerResume === undefined || viewerFrame === undefined) timedOut++;
      if (sharerResume !== undefined) sharerResumes.push(sharerResume);
      if (viewerFrame !== undefined) viewerFrames.push(viewerFrame);
      // Back to the small window: after LAYER_IDLE_MS nobody wants the top layer again.
      await sleep(1000);
      await viewer.page.setViewportSize(SMALL_WINDOW);
      shrunkAt = performance.now();
      await evaluate(viewer.page, 'window.__screenBench.armWidth(0)');
    }
    await stopShare(sharer.page);
    await sharer.context.close();
    await viewer.context.close();
    const orNaN = (samples: number[]) => distribution(samples.length > 0 ? samples : [Number.NaN]);
    return {
      idleMs: LAYER_IDLE_MS,
      repetitions,
      timedOut,
      stopAfterShrinkMs: orNaN(stops),
      sharerResumeMs: orNaN(sharerResumes),
      viewerTopFrameMs: orNaN(viewerFrames),
      sfuForwardMs: watch ? orNaN(forwards) : undefined,
      pollMs: POLL_MS,
    };
  } finally {
    await api.close();
  }
}
