import { afterEach, describe, expect, it } from 'vitest';
import { AppError } from '@hearth/server-common';
import { voiceConfig } from '../src/config';
import { VoiceNode } from '../src/voice-node';
import {
  RecordingSink,
  joinPlainListener,
  joinPlainSpeaker,
  quietLogger,
  testIdentity,
  waitFor,
  type PlainListener,
} from './support/plain-peers';
import { opusProducerRtpParameters } from './support/rtp';

let node: VoiceNode | undefined;

async function startNode(overrides: Parameters<typeof voiceConfig>[0] = {}): Promise<VoiceNode> {
  node = await VoiceNode.start(
    voiceConfig({ numWorkers: 1, rtcBasePort: 0, audioLevelIntervalMs: 100, ...overrides }),
    quietLogger,
  );
  return node;
}

function totals(voice: VoiceNode) {
  return voice.pool.loads().reduce(
    (sum, load) => ({
      routers: sum.routers + load.routers,
      transports: sum.transports + load.transports,
      producers: sum.producers + load.producers,
      consumers: sum.consumers + load.consumers,
    }),
    { routers: 0, transports: 0, producers: 0, consumers: 0 },
  );
}

// Asks each worker process itself which routers it still holds.
async function workerRouterIds(voice: VoiceNode): Promise<string[]> {
  const dumps = await Promise.all(voice.pool.slots.map((slot) => slot.worker.dump()));
  return dumps.flatMap((dump) => (dump as { routerIds: string[] }).routerIds);
}

afterEach(() => {
  node?.close();
  node = undefined;
});

describe('channel lifecycle', () => {
  it('join() opens a channel once, even for concurrent first joins', async () => {
    const voice = await startNode();
    const joins = await Promise.all(
      ['a', 'b', 'c', 'd', 'e'].map((name) =>
        voice.channels.join(
          'lobby',
          testIdentity(name),
          voice.routerRtpCapabilities,
          new RecordingSink(),
        ),
      ),
    );
    expect(new Set(joins.map(({ channel }) => channel)).size).toBe(1);
    expect(voice.channels.list()).toHaveLength(1);
    expect(
      joins[0]!.channel
        .participants()
        .map((p) => p.displayName)
        .sort(),
    ).toEqual(['a', 'b', 'c', 'd', 'e']);
    // One core router, and no edge until someone receives.
    expect(await workerRouterIds(voice)).toHaveLength(1);
  });

  it('join() tells existing peers, and leave() tells the rest', async () => {
    const voice = await startNode();
    const aliceSink = new RecordingSink();
    const alice = await voice.channels.join(
      'lobby',
      testIdentity('alice'),
      voice.routerRtpCapabilities,
      aliceSink,
    );
    const bob = await voice.channels.join(
      'lobby',
      testIdentity('bob'),
      voice.routerRtpCapabilities,
      new RecordingSink(),
    );
    expect(aliceSink.of('participantJoined')).toEqual([
      { participant: expect.objectContaining({ id: bob.peer.id, displayName: 'bob' }) },
    ]);
    bob.channel.leave(bob.peer.id);
    expect(aliceSink.of('participantLeft')).toEqual([{ peerId: bob.peer.id }]);
    expect(alice.channel.participants().map((p) => p.id)).toEqual([alice.peer.id]);
  });

  it('the last leave() closes the channel and emits "closed" once', async () => {
    const voice = await startNode();
    const { channel, peer } = await voice.channels.join(
      'lobby',
      testIdentity('alice'),
      voice.routerRtpCapabilities,
      new RecordingSink(),
    );
    let closedEvents = 0;
    channel.events.on('closed', () => closedEvents++);
    channel.leave(peer.id);
    channel.leave(peer.id);
    expect(channel.closed).toBe(true);
    expect(closedEvents).toBe(1);
    expect(voice.channels.get('lobby')).toBeUndefined();
    expect(await workerRouterIds(voice)).toEqual([]);
    const again = await voice.channels.join(
      'lobby',
      testIdentity('bob'),
      voice.routerRtpCapabilities,
      new RecordingSink(),
    );
    expect(again.channel).not.toBe(channel);
    expect(again.channel.closed).toBe(false);
  });

  it('join() without the "join" grant is refused and leaves no channel behind', async () => {
    const voice = await startNode();
    await expect(
      voice.channels.join(
        'lobby',
        testIdentity('eve', ['speak']),
        voice.routerRtpCapabilities,
        new RecordingSink(),
      ),
    ).rejects.toMatchObject({ code: 'forbidden' });
    expect(voice.channels.list()).toEqual([]);
    expect(await workerRouterIds(voice)).toEqual([]);
  });

  it('a request after leave() fails with not_joined', async () => {
    const voice = await startNode();
    const { channel, peer } = await voice.channels.join(
      'lobby',
      testIdentity('a'),
      voice.routerRtpCapabilities,
      new RecordingSink(),
    );
    await voice.channels.join(
      'lobby',
      testIdentity('b'),
      voice.routerRtpCapabilities,
      new RecordingSink(),
    );
    channel.leave(peer.id);
    await expect(channel.createWebRtcTransport(peer.id, 'send')).rejects.toMatchObject({
      code: 'not_joined',
    });
  });

  it('close("deleted") tells every peer the channel is gone', async () => {
    const voice = await startNode();
    const sink = new RecordingSink();
    await voice.channels.join('lobby', testIdentity('a'), voice.routerRtpCapabilities, sink);
    voice.channels.close('lobby');
    expect(sink.of('channelClosed')).toEqual([{ reason: 'deleted' }]);
    expect(voice.channels.list()).toEqual([]);
  });
});

describe('cascade placement', () => {
  it('with 3 workers and maxConsumersPerEdge=2, listeners spread over edges on different workers and each receives every producer', async () => {
    const voice = await startNode({ numWorkers: 3, maxConsumersPerEdge: 2 });
    const speaker = await joinPlainSpeaker(voice, 'big', 'speaker', 1000);
    const listeners: PlainListener[] = [];
    for (const name of ['l1', 'l2', 'l3', 'l4', 'l5', 'l6']) {
      listeners.push(await joinPlainListener(voice, 'big', name));
    }
    await waitFor(
      () => listeners.every((listener) => listener.sink.of('newConsumer').length === 1),
      5000,
      'every listener to get a consumer of the speaker',
    );

    // Two edges on the two other workers fill first; the core's own worker serves last.
    const layout = speaker.channel.layout();
    expect(layout.edges).toHaveLength(3);
    expect(layout.edges.map((edge) => edge.workerIndex).sort()).toEqual([0, 1, 2]);
    expect(layout.edges.slice(0, 2).map((edge) => edge.workerIndex)).not.toContain(
      layout.core.workerIndex,
    );
    for (const edge of layout.edges) {
      expect(edge.consumers).toBe(2);
      expect(edge.peerIds).toHaveLength(2);
    }

    await speaker.sender.sendFor(25);
    await waitFor(
      () => listeners.every((listener) => listener.receiver.total > 15),
      3000,
      'RTP at every listener',
    );
    for (const listener of listeners) {
      expect(listener.sink.of('newConsumer')[0]!.producerId).toBe(speaker.producer.id);
      expect(listener.receiver.packetsBySsrc.size).toBe(1);
      listener.receiver.close();
    }
    speaker.sender.close();
  });

  it('a second speaker reaches listeners on every edge', async () => {
    const voice = await startNode({ numWorkers: 3, maxConsumersPerEdge: 4 });
    const first = await joinPlainSpeaker(voice, 'two', 's1', 1100);
    const listeners: PlainListener[] = [];
    for (const name of ['l1', 'l2', 'l3', 'l4', 'l5']) {
      listeners.push(await joinPlainListener(voice, 'two', name));
    }
    const second = await joinPlainSpeaker(voice, 'two', 's2', 1101);
    await waitFor(() =>
      listeners.every((listener) => listener.sink.of('newConsumer').length === 2),
    );
    expect(new Set(first.channel.layout().edges.map((edge) => edge.workerIndex)).size).toBe(2);
    await Promise.all([first.sender.sendFor(20), second.sender.sendFor(20)]);
    await waitFor(
      () => listeners.every((listener) => listener.receiver.packetsBySsrc.size === 2),
      3000,
      'RTP from both speakers at every listener',
    );
    for (const listener of listeners) listener.receiver.close();
    first.sender.close();
    second.sender.close();
  });

  it('a producer is piped only to edges whose listeners need it, once per edge', async () => {
    const voice = await startNode({ numWorkers: 2, maxConsumersPerEdge: 10 });
    const speaker = await joinPlainSpeaker(voice, 'pipes', 's', 2000);
    // No listener yet: nothing is piped, so only the core's transport and producer exist.
    expect(totals(voice)).toMatchObject({ routers: 1, transports: 1, producers: 1, consumers: 0 });
    const listeners = [
      await joinPlainListener(voice, 'pipes', 'l1'),
      await joinPlainListener(voice, 'pipes', 'l2'),
      await joinPlainListener(voice, 'pipes', 'l3'),
    ];
    await waitFor(() => listeners.every((l) => l.sink.of('newConsumer').length === 1));
    // One edge; one pipe transport pair; the producer once on the edge (pipe producer);
    // one pipe consumer plus three listener consumers.
    expect(totals(voice)).toEqual({
      routers: 2,
      transports: 1 + 2 + 3,
      producers: 2,
      consumers: 4,
    });
    speaker.sender.close();
    for (const listener of listeners) listener.receiver.close();
  });
  it('a producer that appears while receive transports are being created is consumed once by each', async () => {
    const voice = await startNode({ numWorkers: 2 });
    const first = await joinPlainSpeaker(voice, 'race', 'first', 1200);
    const sinks: RecordingSink[] = [];
    const peerIds: string[] = [];
    for (let index = 0; index < 10; index++) {
      const sink = new RecordingSink();
      const { peer } = await voice.channels.join(
        'race',
        testIdentity(`l${index}`),
        voice.routerRtpCapabilities,
        sink,
        {
          autoResume: true,
        },
      );
      sinks.push(sink);
      peerIds.push(peer.id);
    }
    const [second] = await Promise.all([
      joinPlainSpeaker(voice, 'race', 'second', 1201),
      ...peerIds.map((peerId) => first.channel.createPlainTransport(peerId, 'recv')),
    ]);
    await waitFor(() => sinks.every((sink) => sink.of('newConsumer').length >= 2));
    await new Promise((resolve) => setTimeout(resolve, 200));
    for (const sink of sinks) {
      const producers = sink.of('newConsumer').map((notice) => notice.producerId);
      expect(producers.sort()).toEqual([first.producer.id, second.producer.id].sort());
    }
    first.sender.close();
    second.sender.close();
  });
});

describe('cleanup', () => {
  it('leave() closes every object of the peer, and the last leave() returns all counts to zero', async () => {
    const voice = await startNode({ numWorkers: 2, maxConsumersPerEdge: 10 });
    const speakerA = await joinPlainSpeaker(voice, 'clean', 'a', 3000);
    const speakerB = await joinPlainSpeaker(voice, 'clean', 'b', 3001);
    const listener = await joinPlainListener(voice, 'clean', 'l');
    await waitFor(() => listener.sink.of('newConsumer').length === 2);
    const before = totals(voice);

    listener.channel.leave(listener.peerId);
    // The listener's transport and its two consumers go; the edge had only this listener, so the
    // edge router, both pipe transports, the two pipe producers and two pipe consumers go too.
    expect(totals(voice)).toEqual({
      routers: before.routers - 1,
      transports: before.transports - 3,
      producers: before.producers - 2,
      consumers: before.consumers - 4,
    });

    speakerA.channel.leave(speakerA.peerId);
    speakerB.channel.leave(speakerB.peerId);
    expect(totals(voice)).toEqual({ routers: 0, transports: 0, producers: 0, consumers: 0 });
    expect(await workerRouterIds(voice)).toEqual([]);
    expect(voice.channels.list()).toEqual([]);
    speakerA.sender.close();
    speakerB.sender.close();
    listener.receiver.close();
  });

  it("a speaker's leave() closes the listeners' consumers of it and tells them", async () => {
    const voice = await startNode();
    const speaker = await joinPlainSpeaker(voice, 'c2', 's', 3100);
    const listener = await joinPlainListener(voice, 'c2', 'l');
    await waitFor(() => listener.sink.of('newConsumer').length === 1);
    const consumerId = listener.sink.of('newConsumer')[0]!.consumerId;
    speaker.channel.leave(speaker.peerId);
    await waitFor(() => listener.sink.of('consumerClosed').length === 1);
    expect(listener.sink.of('consumerClosed')).toEqual([{ consumerId }]);
    expect(totals(voice).consumers).toBe(0);
    speaker.sender.close();
    listener.receiver.close();
  });
});

describe('controls and observers', () => {
  it('audio levels and the active speaker reach participants', async () => {
    const voice = await startNode();
    const speaker = await joinPlainSpeaker(voice, 'talk', 's', 4000);
    const listener = await joinPlainListener(voice, 'talk', 'l');
    await speaker.sender.sendFor(40, 10);
    await waitFor(() => listener.sink.of('activeSpeaker').length > 0, 3000, 'active speaker');
    expect(listener.sink.of('activeSpeaker').at(-1)).toEqual({ peerId: speaker.peerId });
    const levels = listener.sink.of('audioLevels').flatMap((entry) => entry.levels);
    expect(levels.some((level) => level.peerId === speaker.peerId && level.volume > -20)).toBe(
      true,
    );
    speaker.sender.close();
    listener.receiver.close();
  });

  it('setProducerPaused() mutes, and a server mute blocks unmuting until released', async () => {
    const voice = await startNode();
    const speaker = await joinPlainSpeaker(voice, 'mod', 's', 5000);
    const moderator = await joinPlainListener(voice, 'mod', 'm');
    const channel = speaker.channel;

    await channel.setProducerPaused(speaker.peerId, speaker.producer.id, true);
    expect(speaker.producer.paused).toBe(true);
    expect(moderator.sink.of('participantUpdated').at(-1)?.participant).toMatchObject({
      id: speaker.peerId,
      muted: true,
    });
    await channel.setProducerPaused(speaker.peerId, speaker.producer.id, false);
    expect(speaker.producer.paused).toBe(false);

    await channel.setServerMuted(moderator.peerId, speaker.peerId, true);
    expect(speaker.producer.paused).toBe(true);
    const refused = channel.setProducerPaused(speaker.peerId, speaker.producer.id, false);
    await expect(refused).rejects.toBeInstanceOf(AppError);
    await expect(refused).rejects.toMatchObject({ code: 'server_muted' });
    expect(speaker.producer.paused).toBe(true);

    await channel.setServerMuted(moderator.peerId, speaker.peerId, false);
    await channel.setProducerPaused(speaker.peerId, speaker.producer.id, false);
    expect(speaker.producer.paused).toBe(false);
    speaker.sender.close();
    moderator.receiver.close();
  });

  it('setServerMuted() without the "moderate" grant is refused', async () => {
    const voice = await startNode();
    const speaker = await joinPlainSpeaker(voice, 'mod2', 's', 5100);
    const { peer } = await voice.channels.join(
      'mod2',
      testIdentity('plain', ['join', 'speak']),
      voice.routerRtpCapabilities,
      new RecordingSink(),
    );
    await expect(
      speaker.channel.setServerMuted(peer.id, speaker.peerId, true),
    ).rejects.toMatchObject({
      code: 'forbidden',
    });
    expect(speaker.producer.paused).toBe(false);
    speaker.sender.close();
  });

  it('setServerMuted() acts only on lower ranks; the rank comes from the token, else the grants', async () => {
    const voice = await startNode();
    const join = async (name: string, extra: Parameters<typeof testIdentity>[2] = {}) =>
      (
        await voice.channels.join(
          'ranks',
          testIdentity(name, ['join', 'speak', 'moderate'], extra),
          voice.routerRtpCapabilities,
          new RecordingSink(),
        )
      ).peer;
    // Both hold moderate and no token rank: moderators (2), neither above the other.
    const mo = await join('mo');
    const peerModerator = await join('pm');
    const admin = await join('ad', { guest: false, rank: 3 });
    const channel = voice.channels.get('ranks')!;
    expect(
      channel
        .participants()
        .map(({ displayName, guest, rank }) => [displayName, guest, rank])
        .sort(),
    ).toEqual([
      ['ad', false, 3],
      ['mo', true, 2],
      ['pm', true, 2],
    ]);
    for (const target of [peerModerator, admin]) {
      await expect(channel.setServerMuted(mo.id, target.id, true)).rejects.toMatchObject({
        code: 'forbidden',
        message: 'you cannot mute someone of your rank or above',
      });
      expect(target.serverMuted).toBe(false);
    }
    await channel.setServerMuted(admin.id, mo.id, true);
    expect(mo.serverMuted).toBe(true);
  });

  it('an account whose token says it is server-muted joins muted and cannot unmute', async () => {
    const voice = await startNode();
    const { channel, peer } = await voice.channels.join(
      'held',
      testIdentity('muted', ['join', 'speak'], { guest: false, serverMuted: true }),
      voice.routerRtpCapabilities,
      new RecordingSink(),
    );
    expect(channel.participants()).toEqual([
      expect.objectContaining({ id: peer.id, muted: true, serverMuted: true, rank: 1 }),
    ]);
    const transport = await channel.createPlainTransport(peer.id, 'send');
    const producer = await channel.produce(peer.id, {
      transportId: transport.id,
      kind: 'audio',
      rtpParameters: opusProducerRtpParameters(7000),
    });
    await expect(channel.setProducerPaused(peer.id, producer.id, false)).rejects.toMatchObject({
      code: 'server_muted',
    });
  });

  it('setDeafened() pauses every consumer of the peer and stops its RTP', async () => {
    const voice = await startNode();
    const speaker = await joinPlainSpeaker(voice, 'deaf', 's', 6000);
    const listener = await joinPlainListener(voice, 'deaf', 'l');
    await waitFor(() => listener.sink.of('newConsumer').length === 1);
    await listener.channel.setDeafened(listener.peerId, true);
    const received = listener.receiver.total;
    await speaker.sender.sendFor(15);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(listener.receiver.total).toBe(received);

    await listener.channel.setDeafened(listener.peerId, false);
    await speaker.sender.sendFor(15);
    await waitFor(() => listener.receiver.total > received, 2000, 'RTP after undeafen');
    speaker.sender.close();
    listener.receiver.close();
  });

  it('produce() refuses a second audio track of one peer, even when both requests race', async () => {
    const voice = await startNode();
    const speaker = await joinPlainSpeaker(voice, 'one-mic', 's', 6200);
    await expect(
      speaker.channel.produce(speaker.peerId, {
        transportId: speaker.transport.id,
        kind: 'audio',
        rtpParameters: opusProducerRtpParameters(6201),
      }),
    ).rejects.toMatchObject({ code: 'conflict' });

    const { channel, peer } = await voice.channels.join(
      'one-mic',
      testIdentity('racer'),
      voice.routerRtpCapabilities,
      new RecordingSink(),
    );
    const transport = await channel.createPlainTransport(peer.id, 'send');
    const results = await Promise.allSettled(
      [6300, 6301].map((ssrc) =>
        channel.produce(peer.id, {
          transportId: transport.id,
          kind: 'audio',
          rtpParameters: opusProducerRtpParameters(ssrc),
        }),
      ),
    );
    expect(results.map((result) => result.status).sort()).toEqual(['fulfilled', 'rejected']);
    expect(totals(voice).producers).toBe(2);
    speaker.sender.close();
  });

  it('produce() refuses peers without the grant of what they send: speak, or screen-share for video', async () => {
    const voice = await startNode();
    const { channel, peer } = await voice.channels.join(
      'v',
      testIdentity('listener-only', ['join']),
      voice.routerRtpCapabilities,
      new RecordingSink(),
    );
    const transport = await channel.createPlainTransport(peer.id, 'send');
    await expect(
      channel.produce(peer.id, {
        transportId: transport.id,
        kind: 'audio',
        rtpParameters: { codecs: [] } as never,
      }),
    ).rejects.toMatchObject({ code: 'forbidden' });
    const speaker = await joinPlainSpeaker(voice, 'v', 's', 6100);
    await expect(
      speaker.channel.produce(speaker.peerId, {
        transportId: 'x',
        kind: 'video',
        rtpParameters: { codecs: [] } as never,
      }),
    ).rejects.toMatchObject({
      code: 'forbidden',
      message: 'missing the "screen-share" grant for this channel',
    });
    speaker.sender.close();
  });
});

describe('worker death', () => {
  it('a dead worker is replaced, its channels close and their peers are told to reconnect', async () => {
    const voice = await startNode({ numWorkers: 2 });
    const sink = new RecordingSink();
    const { channel } = await voice.channels.join(
      'w',
      testIdentity('a'),
      voice.routerRtpCapabilities,
      sink,
    );
    const coreWorker = channel.layout().core.workerIndex;
    const replaced = new Promise<number>((resolve) =>
      voice.pool.events.once('workerReplaced', resolve),
    );
    process.kill(voice.pool.slot(coreWorker).worker.pid, 'SIGKILL');

    expect(await replaced).toBe(coreWorker);
    expect(sink.of('reconnect')).toHaveLength(1);
    expect(channel.closed).toBe(true);
    expect(voice.pool.slots).toHaveLength(2);
    const again = await voice.channels.join(
      'w',
      testIdentity('a'),
      voice.routerRtpCapabilities,
      new RecordingSink(),
    );
    expect(again.channel.closed).toBe(false);
  });
});
