import { afterEach, describe, expect, it, vi } from 'vitest';
import type { ClientStats } from '@hearth/protocol';
import { voiceConfig } from '../src/config';
import { OpusAdaptation } from '../src/opus-adaptation';
import { VoiceNode } from '../src/voice-node';
import { RecordingSink, quietLogger, testIdentity, waitFor } from './support/plain-peers';
import { bindUdp, buildOpusPacket, nowMicros, opusProducerRtpParameters } from './support/rtp';

let node: VoiceNode | undefined;
const cleanups: (() => void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
  await node?.close();
  node = undefined;
});

// What a client on a clean line reports over 5 s: 250 packets, none lost, 40 ms round trip.
const CLEAN: ClientStats = {
  windowMs: 5000,
  packetsReceived: 250,
  packetsLost: 0,
  jitterMs: 4,
  jitterBufferDelayMs: 40,
  concealedRatio: 0,
  rttMs: 40,
  outboundKbps: 32,
};

async function startChannel() {
  node = await VoiceNode.start(voiceConfig({ numWorkers: 1, rtcBasePort: 0 }), quietLogger);
  const join = async (name: string) => {
    const sink = new RecordingSink();
    const joined = await node!.channels.join(
      'room',
      testIdentity(name, ['join', 'speak']),
      node!.routerRtpCapabilities,
      sink,
      { autoResume: true },
    );
    return { ...joined, sink };
  };
  return { ada: await join('Ada'), bo: await join('Bo') };
}

type Joined = Awaited<ReturnType<typeof startChannel>>['ada'];

// A microphone of `joined` sending Opus-like RTP every 20 ms, one packet in `lossEvery` lost on
// its way to the SFU, until the test ends.
async function speakWithLoss(joined: Joined, ssrc: number, lossEvery: number): Promise<void> {
  const transport = await joined.channel.createPlainTransport(joined.peer.id, 'send');
  await joined.channel.produce(joined.peer.id, {
    transportId: transport.id,
    kind: 'audio',
    rtpParameters: opusProducerRtpParameters(ssrc),
    source: 'microphone',
  });
  const socket = await bindUdp();
  cleanups.push(() => socket.close());
  let sequence = 1;
  const sender = setInterval(() => {
    sequence += sequence % lossEvery === 0 ? 2 : 1;
    const packet = buildOpusPacket({ ssrc, sequence, levelDbov: 20, sentAtMicros: nowMicros() });
    socket.send(packet, transport.tuple.localPort, '127.0.0.1');
  }, 20);
  cleanups.push(() => clearInterval(sender));
}

const qualitiesOf = (sink: RecordingSink, peerId: string) =>
  sink
    .of('participantUpdated')
    .filter(({ participant }) => participant.id === peerId)
    .map(({ participant }) => participant.quality);

describe('link quality', () => {
  it('a report judges the link: the channel hears each change of level once, worse at once, better after two better reports', async () => {
    const { ada, bo } = await startChannel();
    await ada.channel.reportStats(ada.peer.id, CLEAN);
    await ada.channel.reportStats(ada.peer.id, CLEAN);
    // 15 % inbound loss: poor at once.
    await ada.channel.reportStats(ada.peer.id, { ...CLEAN, packetsReceived: 212, packetsLost: 38 });
    // One clean window is not a recovery; the second is.
    await ada.channel.reportStats(ada.peer.id, CLEAN);
    expect(qualitiesOf(bo.sink, ada.peer.id)).toEqual(['good', 'poor']);
    await ada.channel.reportStats(ada.peer.id, CLEAN);
    expect(qualitiesOf(bo.sink, ada.peer.id)).toEqual(['good', 'poor', 'good']);
    // 350 ms round trip: fair.
    await ada.channel.reportStats(ada.peer.id, { ...CLEAN, rttMs: 350 });
    expect(qualitiesOf(bo.sink, ada.peer.id)).toEqual(['good', 'poor', 'good', 'fair']);
    expect(ada.channel.participants().find((p) => p.id === ada.peer.id)?.quality).toBe('fair');
    // Bo never reported: no level on his view.
    expect(ada.channel.participants().find((p) => p.id === bo.peer.id)?.quality).toBeUndefined();

    // Loss repaired by NACKs, but 12 % of what Ada hears made up all the same: poor.
    await ada.channel.reportStats(ada.peer.id, { ...CLEAN, concealedRatio: 0.12 });
    expect(qualitiesOf(bo.sink, ada.peer.id).at(-1)).toBe('poor');
    await ada.channel.reportStats(ada.peer.id, { ...CLEAN, rttMs: 350, concealedRatio: 0.01 });
    await ada.channel.reportStats(ada.peer.id, { ...CLEAN, rttMs: 350, concealedRatio: 0.01 });
    expect(qualitiesOf(bo.sink, ada.peer.id).at(-1)).toBe('fair');

    const [link, ...others] = ada.channel.links();
    expect(others).toEqual([]);
    expect(link).toMatchObject({
      peerId: ada.peer.id,
      displayName: 'Ada',
      quality: 'fair',
      lossPercent: 0,
      concealedPercent: 1,
      jitterMs: 4,
      rttMs: 350,
      outboundKbps: 32,
    });
  });

  it('loss mediasoup sees on the way in counts, although the client hears everything', async () => {
    const { ada, bo } = await startChannel();
    // Ada's microphone loses one packet in four on its way to the SFU.
    await speakWithLoss(ada, 5001, 4);
    // mediasoup computes the fraction lost when it sends its receiver report (up to 5 s for audio).
    await waitFor(
      async () => ((await ada.channel.reportStats(ada.peer.id, CLEAN))?.lossPercent ?? 0) > 10,
      15_000,
      'mediasoup to see the loss',
    );
    expect(qualitiesOf(bo.sink, ada.peer.id).at(-1)).toBe('poor');
  }, 20_000);
});

describe('the sfu_node_* gauges', () => {
  const read = async (name: string) =>
    (await node!.registry.getSingleMetric(name)!.get()).values[0]?.value;

  it('report connections, memory and CPU in percent, and health 0 while a dead worker is replaced', async () => {
    const { ada } = await startChannel();
    await ada.channel.createPlainTransport(ada.peer.id, 'send');
    expect(await read('sfu_node_connections')).toBeGreaterThanOrEqual(1);
    const memory = await read('sfu_node_memory_percent');
    expect(memory).toBeGreaterThan(0);
    expect(memory).toBeLessThan(100);
    await read('sfu_node_cpu_percent');
    const cpu = await read('sfu_node_cpu_percent');
    expect(cpu).toBeGreaterThanOrEqual(0);
    expect(cpu).toBeLessThanOrEqual(100);
    expect(await read('sfu_node_health')).toBe(1);

    const healthWhenDied = new Promise<number | undefined>((resolve) =>
      node!.pool.events.once('workerDied', () => resolve(read('sfu_node_health'))),
    );
    const replaced = new Promise((resolve) => node!.pool.events.once('workerReplaced', resolve));
    process.kill(node!.pool.slot(0).worker.pid, 'SIGKILL');
    expect(await healthWhenDied).toBe(0);
    await replaced;
    expect(await read('sfu_node_health')).toBe(1);
  });
});

describe('Opus bitrate adaptation', () => {
  it('steps down one level above 10 % loss, at most once per 5 s, and up after 10 s below 2 %', () => {
    const opus = new OpusAdaptation();
    expect(opus.maxBitrateKbps).toBe(64);
    // seconds since start, loss in percent, the new level if it changes
    const timeline: Array<[number, number, number | undefined]> = [
      [0, 0, undefined],
      [2, 15, 32],
      [4, 15, undefined],
      [7, 15, 16],
      [12, 20, undefined],
      // Recovery: clean from 14 s; up at 24 s, and again 10 s of clean later.
      [14, 1, undefined],
      [20, 1, undefined],
      [24, 1, 32],
      [30, 5, undefined],
      [36, 1, undefined],
      [46, 1, 64],
      [60, 0, undefined],
    ];
    for (const [second, loss, level] of timeline) {
      expect([second, opus.update(loss, second * 1000)]).toEqual([second, level]);
    }
  });

  it('the node tells a speaker whose audio loses packets on its way in to lower its microphone bitrate, and not one who only hears loss', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const { ada, bo } = await startChannel();
      // Ada's microphone loses one packet in four on its way in; Bo's loses none, but he hears
      // Ada's loss.
      await speakWithLoss(ada, 5002, 4);
      await speakWithLoss(bo, 5003, 1_000_000);
      const hearsLoss = { ...CLEAN, packetsReceived: 200, packetsLost: 50 };
      await waitFor(
        async () => {
          await ada.channel.reportStats(ada.peer.id, CLEAN);
          await bo.channel.reportStats(bo.peer.id, hearsLoss);
          return ada.sink.of('audioBitrate').length === 1;
        },
        15_000,
        "mediasoup to see Ada's loss",
      );
      vi.setSystemTime(Date.now() + 5000);
      await ada.channel.reportStats(ada.peer.id, CLEAN);
      await bo.channel.reportStats(bo.peer.id, hearsLoss);
      expect(ada.sink.of('audioBitrate')).toEqual([{ maxBitrateKbps: 32 }, { maxBitrateKbps: 16 }]);
      expect(bo.sink.of('audioBitrate')).toEqual([]);
    } finally {
      vi.useRealTimers();
    }
  }, 20_000);
});
