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
});
