import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureChannel } from '../api/test/support/accounts';
import { startTestApi, TestSignalingClient, type TestApi } from '../api/test/support/server';
import { joinOnSocket } from '../api/test/support/voice-faults';
import { hearthState, inboundAudio, launchChromium } from './support/browser';
import { queueBytesFor, UdpImpairmentRelay } from './support/impairment';
import { speakPlainTone } from './support/plain-microphone';
import { framesDecodedIn } from './support/screen-tiles';
import { encodeVp8File, shareSimulcastVp8 } from './support/simulcast-share';
import { freeRelayedRtcPorts } from './support/voice-nodes';
import { eventually } from './support/wait';

const webDistDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../web/dist');
const CHANNEL = 'rough';
// The voice node binds its media port here and announces the relay's address, on the same port:
// the listener's page reaches the node only through the relay. The speaker and the sharer send
// from this process on plain transports, around the relay.
const NODE_IP = '127.0.0.1';
const RELAY_IP = '127.0.0.2';
const RUN_SECONDS = 300;
// Opus from the speaker: one 20 ms frame per packet.
const AUDIO_PACKETS_PER_SECOND = 50;

let api: TestApi;
let relay: UdpImpairmentRelay;
let browser: Browser;
let context: BrowserContext;
let listener: Page;
let speakerId: string;
let workDir: string;
const cleanup: Array<() => unknown> = [];

async function joinAs(name: string): Promise<string> {
  const client = await TestSignalingClient.connect(api.baseUrl, name, { channel: CHANNEL });
  cleanup.push(() => client.close());
  return (await joinOnSocket(client, CHANNEL)).peerId;
}

beforeAll(async () => {
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-congested-'));
  const rtcBasePort = await freeRelayedRtcPorts(NODE_IP, RELAY_IP);
  api = await startTestApi({
    api: { webDistDir, guestGrants: 'join,speak,screen-share' },
    voice: { numWorkers: 1, rtcBasePort, listenIp: NODE_IP, announcedAddress: RELAY_IP },
  });
  relay = await UdpImpairmentRelay.start({
    target: { host: NODE_IP, port: rtcBasePort },
    listenHost: RELAY_IP,
    listenPort: rtcBasePort,
    seed: 23,
  });
  await ensureChannel(api.baseUrl, CHANNEL);
  // A two-layer screen share sent from files: 640x360 at 300 kbit/s and 1280x720 at 1 Mbit/s.
  const low = path.join(workDir, 'low.ivf');
  const top = path.join(workDir, 'top.ivf');
  await encodeVp8File(low, { width: 640, height: 360, seconds: 4, bitrate: '300k' });
  await encodeVp8File(top, { width: 1280, height: 720, seconds: 4, bitrate: '1M' });
  await shareSimulcastVp8(api, CHANNEL, await joinAs('Sue'), cleanup, {
    layers: [low, top],
    seconds: RUN_SECONDS,
  });
  speakerId = await joinAs('Al');
  await speakPlainTone(api, CHANNEL, speakerId, cleanup, RUN_SECONDS);

  browser = await launchChromium();
  context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  listener = await context.newPage();
  await listener.goto(`${api.baseUrl}/voice/${CHANNEL}?name=Ben&autojoin=1`);
  await eventually(
    async () => (await speakerCounters()).packetsReceived > AUDIO_PACKETS_PER_SECOND,
    30_000,
    'the listener to hear the speaker',
  );
}, 120_000);

afterAll(async () => {
  await context?.close();
  await browser?.close();
  for (const stop of cleanup.reverse()) await stop();
  await relay?.close();
  await api?.close();
  if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
});

// The listener's counters of the speaker's audio.
async function speakerCounters() {
  const streams = (await inboundAudio(listener)).filter((s) => s.peerId === speakerId);
  const sum = (key: 'packetsReceived' | 'packetsLost' | 'nackCount') =>
    streams.reduce((total, stream) => total + stream[key], 0);
  return {
    packetsReceived: sum('packetsReceived'),
    packetsLost: sum('packetsLost'),
    nackCount: sum('nackCount'),
    samples: streams.reduce((total, stream) => total + stream.totalSamplesReceived, 0),
    concealed: streams.reduce((total, stream) => total + stream.audibleConcealedSamples, 0),
  };
}

/** What the listener heard of the speaker over `ms`: packets, loss, NACKs and concealment. */
async function listenFor(ms: number) {
  const before = await speakerCounters();
  await new Promise((resolve) => setTimeout(resolve, ms));
  const after = await speakerCounters();
  const received = after.packetsReceived - before.packetsReceived;
  const lost = Math.max(0, after.packetsLost - before.packetsLost);
  const samples = after.samples - before.samples;
  return {
    received,
    lostPercent: (100 * lost) / Math.max(1, received + lost),
    nacks: after.nackCount - before.nackCount,
    concealedPercent: (100 * (after.concealed - before.concealed)) / Math.max(1, samples),
  };
}

// The simulcast layer the node forwards to the listener, null while it forwards none.
async function screenLayer(): Promise<number | null | undefined> {
  return (await hearthState(listener))?.screens[0]?.spatialLayer;
}

describe('a listener on a bad downlink', () => {
  it('20 % loss on the way to the listener: its NACKs have the node resend the audio, and most of the loss never reaches the ear', async () => {
    const downstreamBefore = relay.stats().downstream;
    relay.set({ downstream: { lossPercent: 20 } });
    const heard = await listenFor(10_000);
    relay.set({ downstream: { lossPercent: 0 } });
    const downstream = relay.stats().downstream;
    const dropped = downstream.dropped.random - downstreamBefore.dropped.random;
    const passed = downstream.packetsIn - downstreamBefore.packetsIn;
    // eslint-disable-next-line no-console -- the measurement is this test's report.
    console.log(
      `20 % downlink loss for 10 s: relay dropped ${((100 * dropped) / passed).toFixed(1)} %, ` +
        `listener lost ${heard.lostPercent.toFixed(1)} % of the speaker's packets after ` +
        `${heard.nacks} NACKs, concealed ${heard.concealedPercent.toFixed(1)} %`,
    );
    expect(dropped / passed).toBeGreaterThan(0.15);
    expect(heard.nacks).toBeGreaterThan(20);
    // Without the resends the listener would lose about 20 %.
    expect(heard.lostPercent).toBeLessThan(8);
    expect(heard.concealedPercent).toBeLessThan(10);
    expect(heard.received).toBeGreaterThan(0.9 * AUDIO_PACKETS_PER_SECOND * 10);
  }, 60_000);

  it('a downlink too narrow for both: the node stops the screen share’s video to the listener and the voice goes on clean, and the video comes back once the link widens', async () => {
    await eventually(
      async () => (await framesDecodedIn(listener, 1000)) > 5,
      30_000,
      'the listener to see the share',
    );
    // 200 kbit/s with 150 ms of queue: room for the speaker's Opus, not for the share's 300 kbit/s
    // low layer on top of it.
    relay.set({ downstream: { rateKbps: 200, queueLimitBytes: queueBytesFor(200, 150) } });
    await eventually(
      async () => (await screenLayer()) === null && (await framesDecodedIn(listener, 1000)) === 0,
      40_000,
      'the node to stop forwarding the share to the listener',
    );
    const heard = await listenFor(8000);
    // eslint-disable-next-line no-console -- the measurement is this test's report.
    console.log(
      `200 kbit/s downlink, video stopped: listener received ${heard.received} audio packets in ` +
        `8 s, lost ${heard.lostPercent.toFixed(1)} %, concealed ${heard.concealedPercent.toFixed(1)} %`,
    );
    expect(heard.received).toBeGreaterThan(0.9 * AUDIO_PACKETS_PER_SECOND * 8);
    expect(heard.concealedPercent).toBeLessThan(5);
    expect(await screenLayer()).toBeNull();

    relay.set({ downstream: { rateKbps: null } });
    await eventually(
      async () => (await framesDecodedIn(listener, 1000)) > 5,
      40_000,
      'the share back at the listener',
    );
    expect(await screenLayer()).not.toBeNull();
  }, 120_000);
});
