import { afterEach, describe, expect, it } from 'vitest';
import { voiceConfig } from '../src/config';
import { VoiceNode } from '../src/voice-node';
import {
  RecordingSink,
  joinPlainListener,
  quietLogger,
  testIdentity,
  waitFor,
} from './support/plain-peers';
import { opusProducerRtpParameters, vp8SimulcastRtpParameters } from './support/rtp';

let node: VoiceNode | undefined;

afterEach(() => {
  node?.close();
  node = undefined;
});

async function startNode(overrides: Parameters<typeof voiceConfig>[0] = {}): Promise<VoiceNode> {
  node = await VoiceNode.start(
    voiceConfig({ numWorkers: 2, rtcBasePort: 0, ...overrides }),
    quietLogger,
  );
  return node;
}

function totals(voice: VoiceNode) {
  return voice.pool.loads().reduce(
    (sum, load) => ({
      producers: sum.producers + load.producers,
      consumers: sum.consumers + load.consumers,
    }),
    { producers: 0, consumers: 0 },
  );
}

const LAYERS = [
  { ssrc: 2001, maxBitrate: 600_000 },
  { ssrc: 2002, maxBitrate: 4_000_000 },
];

/** Joins a peer with these grants and opens its send transport. */
async function joinSender(
  voice: VoiceNode,
  name: string,
  grants: Parameters<typeof testIdentity>[1],
) {
  const sink = new RecordingSink();
  const { channel, peer } = await voice.channels.join(
    'room',
    testIdentity(name, grants, { guest: false, rank: 1 }),
    voice.routerRtpCapabilities,
    sink,
    { autoResume: true },
  );
  const transport = await channel.createPlainTransport(peer.id, 'send');
  const share = (source: 'screen' | 'screen-audio' = 'screen', layers = LAYERS) =>
    channel.produce(peer.id, {
      transportId: transport.id,
      kind: source === 'screen' ? 'video' : 'audio',
      rtpParameters:
        source === 'screen'
          ? vp8SimulcastRtpParameters(layers)
          : opusProducerRtpParameters(layers[0]!.ssrc + 100),
      source,
    });
  const speak = (ssrc: number) =>
    channel.produce(peer.id, {
      transportId: transport.id,
      kind: 'audio',
      rtpParameters: opusProducerRtpParameters(ssrc),
      source: 'microphone',
    });
  return { channel, peer, sink, transport, share, speak };
}

/** Joins a receive-only spectator of the channel's shares. */
function joinSpectator(voice: VoiceNode, name: string) {
  return joinPlainListener(voice, 'room', name, {
    identity: testIdentity(name, ['join'], { spectator: true }),
  });
}

/** Sources a listener consumes now, each as `<peer name>:<source>`. */
function consumed(listener: { sink: RecordingSink }, names: Map<string, string>): string[] {
  const closed = new Set(listener.sink.of('consumerClosed').map((notice) => notice.consumerId));
  return listener.sink
    .of('newConsumer')
    .filter((notice) => !closed.has(notice.consumerId))
    .map((notice) => `${names.get(notice.peerId)}:${notice.source}`)
    .sort();
}

describe('screen shares in a voice channel', () => {
  it('need the screen-share grant; a share reaches every listener as a video consumer marked as a screen', async () => {
    const voice = await startNode();
    const listeners = [
      await joinPlainListener(voice, 'room', 'Lis'),
      await joinPlainListener(voice, 'room', 'Len'),
    ];
    const speaker = await joinSender(voice, 'Sam', ['join', 'speak']);
    await expect(speaker.share()).rejects.toMatchObject({
      code: 'forbidden',
      message: 'missing the "screen-share" grant for this channel',
    });
    const sharer = await joinSender(voice, 'Sue', ['join', 'speak', 'screen-share']);
    const producer = await sharer.share();
    expect(producer.kind).toBe('video');
    expect(producer.type).toBe('simulcast');
    for (const listener of listeners) {
      await waitFor(
        () => listener.sink.of('newConsumer').length > 0,
        5000,
        'the share to reach a listener',
      );
      expect(listener.sink.of('newConsumer')[0]).toMatchObject({
        producerId: producer.id,
        peerId: sharer.peer.id,
        kind: 'video',
        source: 'screen',
      });
    }
    const consumed = listeners[0]!.sink.of('newConsumer')[0]!;
    expect(consumed.rtpParameters.codecs[0]?.mimeType).toBe('video/VP8');
  });

  it('one share per participant, share audio only with a share, and the channel cap', async () => {
    const voice = await startNode({ maxSharesPerChannel: 1 });
    await joinPlainListener(voice, 'room', 'Lis');
    const sue = await joinSender(voice, 'Sue', ['join', 'speak', 'screen-share']);
    await expect(sue.share('screen-audio')).rejects.toMatchObject({ code: 'bad_request' });
    await sue.share();
    await expect(sue.share()).rejects.toMatchObject({ code: 'conflict' });
    const sid = await joinSender(voice, 'Sid', ['join', 'speak', 'screen-share']);
    await expect(sid.share()).rejects.toMatchObject({
      code: 'conflict',
      message: 'the channel holds 1 screen shares already',
    });
  });

  it('stopping a share, or the sharer leaving, closes its consumers everywhere', async () => {
    const voice = await startNode();
    const listener = await joinPlainListener(voice, 'room', 'Lis');
    const sue = await joinSender(voice, 'Sue', ['join', 'speak', 'screen-share']);
    const producer = await sue.share();
    await waitFor(() => totals(voice).consumers >= 1, 5000, 'the listener to consume the share');
    sue.channel.closeProducer(sue.peer.id, producer.id);
    await waitFor(
      () => listener.sink.of('consumerClosed').length > 0,
      5000,
      'the consumer to close',
    );
    await waitFor(() => totals(voice).consumers === 0, 5000, 'no consumer left');
    await sue.share();
    await waitFor(() => totals(voice).consumers >= 1, 5000, 'the new share to be consumed');
    sue.channel.leave(sue.peer.id);
    await waitFor(
      () => totals(voice).consumers === 0 && totals(voice).producers === 0,
      5000,
      'every object of the share to go',
    );
  });

  it('layers no viewer wants are switched off at the sharer after the idle time, and back at once when wanted', async () => {
    const voice = await startNode({ shareLayerIdleMs: 300 });
    const viewers = [
      await joinPlainListener(voice, 'room', 'Lis'),
      await joinPlainListener(voice, 'room', 'Len'),
    ];
    const sue = await joinSender(voice, 'Sue', ['join', 'speak', 'screen-share']);
    const producer = await sue.share();
    const consumers: { viewer: (typeof viewers)[number]; id: string }[] = [];
    for (const viewer of viewers) {
      await waitFor(() => viewer.sink.of('newConsumer').length > 0, 5000, 'a consumer');
      consumers.push({ viewer, id: viewer.sink.of('newConsumer')[0]!.consumerId });
    }
    const told = () => sue.sink.of('shareLayers').map((notice) => notice.activeLayers);
    const prefer = (index: number, spatialLayer: number) =>
      sue.channel.setConsumerPreferredLayers(
        consumers[index]!.viewer.peerId,
        consumers[index]!.id,
        {
          spatialLayer,
        },
      );

    // One viewer still wants the top layer: nothing changes.
    await prefer(0, 0);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(told()).toEqual([]);
    // Both want the low layer only: after the idle time the sharer drops the top one.
    await prefer(1, 0);
    expect(told()).toEqual([]);
    await waitFor(() => told().length === 1, 2000, 'the top layer to be switched off');
    expect(told()).toEqual([1]);
    // A viewer wanting the top again brings it back at once, not after a delay.
    await prefer(1, 1);
    expect(told()).toEqual([1, 2]);
    // A hidden tab pauses its consumer, which then wants nothing.
    await prefer(1, 0);
    await sue.channel.setConsumerPaused(consumers[0]!.viewer.peerId, consumers[0]!.id, true);
    await waitFor(() => told().length === 3, 2000, 'the top layer to go again');
    await sue.channel.setConsumerPaused(consumers[0]!.viewer.peerId, consumers[0]!.id, false);
    await prefer(0, 1);
    expect(told()).toEqual([1, 2, 1, 2]);
    await expect(
      sue.channel.setConsumerPreferredLayers(viewers[0]!.peerId, 'no-such-consumer', {
        spatialLayer: 0,
      }),
    ).rejects.toMatchObject({ code: 'not_found' });
    expect(producer.closed).toBe(false);
  });

  it("spectators receive the shares and the sharers' microphones only, are in no roster and cannot send", async () => {
    const voice = await startNode();
    const sam = await joinSender(voice, 'Sam', ['join', 'speak']);
    await sam.speak(4001);
    const sue = await joinSender(voice, 'Sue', ['join', 'speak', 'screen-share']);
    await sue.speak(4002);
    const spectator = await joinSpectator(voice, 'Spec');
    const names = new Map([
      [sam.peer.id, 'Sam'],
      [sue.peer.id, 'Sue'],
    ]);
    // Nothing is shared yet: a spectator hears no one.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(consumed(spectator, names)).toEqual([]);
    expect(
      sue.channel
        .participants()
        .map((p) => p.displayName)
        .sort(),
    ).toEqual(['Sam', 'Sue']);
    expect(sam.sink.of('participantJoined').map((n) => n.participant.displayName)).toEqual(['Sue']);
    await expect(sue.channel.createPlainTransport(spectator.peerId, 'send')).rejects.toMatchObject({
      code: 'forbidden',
      message: 'spectators only receive',
    });

    const video = await sue.share();
    await sue.share('screen-audio');
    await waitFor(
      () => consumed(spectator, names).length === 3,
      5000,
      'the spectator to receive the share',
    );
    expect(consumed(spectator, names)).toEqual([
      'Sue:microphone',
      'Sue:screen',
      'Sue:screen-audio',
    ]);
    // Channel mates see who shares.
    expect(sue.channel.participants().find((p) => p.id === sue.peer.id)?.sharing).toBe(true);
    expect(
      sam.sink
        .of('participantUpdated')
        .some((n) => n.participant.id === sue.peer.id && n.participant.sharing),
    ).toBe(true);

    // The share ends: its audio goes with it, and the spectator stops hearing the sharer.
    sue.channel.closeProducer(sue.peer.id, video.id);
    await waitFor(
      () => consumed(spectator, names).length === 0,
      5000,
      'the spectator to lose the share and the microphone',
    );
    expect([...sue.peer.producers.values()].map((p) => p.appData.source)).toEqual(['microphone']);
    expect(sue.channel.participants().find((p) => p.id === sue.peer.id)?.sharing).toBe(false);
    // The spectator stays, waiting for the next share: Sam, Sue and it.
    expect(sue.channel.peerCount).toBe(3);
  });

  it('a moderator who outranks the sharer stops its share; the sharer hears why and every object goes', async () => {
    const voice = await startNode();
    const sue = await joinSender(voice, 'Sue', ['join', 'speak', 'screen-share']);
    const viewer = await joinPlainListener(voice, 'room', 'Mo');
    const member = await joinSender(voice, 'Max', ['join', 'speak']);
    const spectator = await joinSpectator(voice, 'Spec');
    const video = await sue.share();
    const audio = await sue.share('screen-audio');
    // Video and audio of the share, at the viewer, the member and the spectator.
    await waitFor(() => totals(voice).consumers === 6, 5000, 'the share to reach everyone');

    expect(() => sue.channel.stopShare(member.peer.id, sue.peer.id)).toThrow(
      'missing the "moderate" grant for this channel',
    );
    const pat = await joinSender(voice, 'Pat', ['join', 'moderate']);
    expect(() => sue.channel.stopShare(pat.peer.id, viewer.peerId)).toThrow(
      'you cannot stop the share of someone of your rank or above',
    );
    expect(() => sue.channel.stopShare(viewer.peerId, 'nobody')).toThrow('no participant nobody');
    expect(() => sue.channel.stopShare(viewer.peerId, spectator.peerId)).toThrow(
      `no participant ${spectator.peerId}`,
    );

    sue.channel.stopShare(viewer.peerId, sue.peer.id);
    expect(sue.sink.of('shareStopped')).toEqual([
      { producerIds: [video.id, audio.id], message: 'Mo stopped your screen share' },
    ]);
    await waitFor(
      () => totals(voice).consumers === 0 && totals(voice).producers === 0,
      5000,
      'every object of the share to go',
    );
    for (const listener of [viewer, spectator]) {
      expect(listener.sink.of('consumerClosed').length).toBeGreaterThan(0);
    }
    // Stopping one's own share when none is left changes nothing.
    sue.channel.stopShare(sue.peer.id, sue.peer.id);
    expect(sue.sink.of('shareStopped')).toHaveLength(1);
  });

  it("a share may send no more than the channel's preset cap allows", async () => {
    const voice = await startNode();
    const sink = new RecordingSink();
    const { channel, peer } = await voice.channels.join(
      'room',
      testIdentity('Cap', ['join', 'screen-share'], { maxSharePreset: '1080p30' }),
      voice.routerRtpCapabilities,
      sink,
    );
    const transport = await channel.createPlainTransport(peer.id, 'send');
    const share = (top: number) =>
      channel.produce(peer.id, {
        transportId: transport.id,
        kind: 'video',
        source: 'screen',
        rtpParameters: vp8SimulcastRtpParameters([
          { ssrc: 5001, maxBitrate: 600_000 },
          { ssrc: 5002, maxBitrate: top },
        ]),
      });
    await expect(share(9_000_000)).rejects.toMatchObject({
      code: 'forbidden',
      message:
        'this channel allows screen shares up to 1080p 30 fps (5.7 Mbit/s for all layers); pick a lighter preset',
    });
    await expect(share(4_500_000)).resolves.toMatchObject({ kind: 'video' });
  });
});
