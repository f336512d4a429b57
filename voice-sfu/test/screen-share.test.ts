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
import { vp8SimulcastRtpParameters } from './support/rtp';

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
      rtpParameters: vp8SimulcastRtpParameters(layers),
      source,
    });
  return { channel, peer, sink, transport, share };
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
});
