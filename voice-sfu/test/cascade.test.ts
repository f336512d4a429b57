import { afterEach, describe, expect, it } from 'vitest';
import type { CascadeMessage } from '@hearth/protocol';
import { createLogger } from '@hearth/server-common';
import { Cascade, VoiceNode, voiceConfig } from '../src';
import {
  RecordingSink,
  joinPlainListener,
  joinPlainSpeaker,
  quietLogger,
  testIdentity,
  waitFor,
  type PlainListener,
  type PlainSpeaker,
} from './support/plain-peers';
import { vp8SimulcastRtpParameters } from './support/rtp';

// Three nodes in one process, each with its own worker. What the api does between them, relaying
// cascade messages, is replaced here by direct asynchronous delivery; the multi-process e2e test
// runs the real relay.
interface TestNode {
  id: string;
  node: VoiceNode;
  cascade: Cascade;
}

let nodes: TestNode[] = [];
const peers: (PlainSpeaker | PlainListener)[] = [];
const relayed: { from: string; to: string; message: CascadeMessage }[] = [];
// Nodes that crashed: the relay drops what is sent to them, as the api does for a node gone.
const dead = new Set<string>();

async function startNodes(
  ids: string[],
  config: Parameters<typeof voiceConfig>[0] = {},
): Promise<Map<string, TestNode>> {
  const byId = new Map<string, TestNode>();
  for (const id of ids) {
    const node = await VoiceNode.start(
      voiceConfig({ numWorkers: 1, rtcBasePort: 0, workerLogLevel: 'none', ...config }),
      quietLogger,
    );
    const cascade = new Cascade({
      nodeId: id,
      channels: node.channels,
      logger: process.env.CASCADE_DEBUG ? createLogger(id, { level: 'debug' }) : quietLogger,
      send: (to, message) => {
        relayed.push({ from: id, to, message });
        setImmediate(() => {
          if (!dead.has(to) && !dead.has(id)) byId.get(to)?.cascade.receive(id, message);
        });
      },
    });
    byId.set(id, { id, node, cascade });
  }
  nodes = [...byId.values()];
  return byId;
}

afterEach(() => {
  for (const peer of peers.splice(0)) {
    if ('sender' in peer) peer.sender.close();
    else peer.receiver.close();
  }
  for (const { node } of nodes) node.close();
  nodes = [];
  relayed.length = 0;
  dead.clear();
});

function pipeProducer(node: TestNode, channel: string, producerId: string) {
  return node.node.channels
    .get(channel)
    ?.producers()
    .find((producer) => producer.id === producerId);
}

/** Joins Sue on `node`, a member who shares a two-layer screen with SSRCs from `ssrc` on. */
async function shareFrom(node: TestNode, ssrc: number) {
  const sink = new RecordingSink();
  const { channel, peer } = await node.node.channels.join(
    'room',
    testIdentity('Sue', ['join', 'speak', 'screen-share'], { guest: false, rank: 1 }),
    node.node.routerRtpCapabilities,
    sink,
    { autoResume: true },
  );
  const transport = await channel.createPlainTransport(peer.id, 'send');
  const share = await channel.produce(peer.id, {
    transportId: transport.id,
    kind: 'video',
    source: 'screen',
    rtpParameters: vp8SimulcastRtpParameters([
      { ssrc, maxBitrate: 500_000 },
      { ssrc: ssrc + 1, maxBitrate: 3_000_000 },
    ]),
  });
  return { peer, share, sink };
}

describe('cascade across nodes', () => {
  it('pipes speakers on every node to listeners on every node, through the core', async () => {
    const byId = await startNodes(['core', 'edge-b', 'edge-c']);
    const [core, edgeB, edgeC] = ['core', 'edge-b', 'edge-c'].map((id) => byId.get(id)!);
    for (const { cascade } of [core!, edgeB!, edgeC!]) cascade.setCore('room', 'core');

    const speakerOnCore = await joinPlainSpeaker(core!.node, 'room', 'Ada', 1111);
    const speakerOnB = await joinPlainSpeaker(edgeB!.node, 'room', 'Bo', 2222);
    const listenerOnC = await joinPlainListener(edgeC!.node, 'room', 'Cy');
    const listenerOnCore = await joinPlainListener(core!.node, 'room', 'Di');
    peers.push(speakerOnCore, speakerOnB, listenerOnC, listenerOnCore);

    // The roster spans the nodes: C sees both speakers and the core's listener.
    await waitFor(
      () => listenerOnC.channel.participants().length === 4,
      5000,
      'the roster on edge C',
    );
    expect(
      listenerOnC.channel
        .participants()
        .map((participant) => participant.displayName)
        .sort(),
    ).toEqual(['Ada', 'Bo', 'Cy', 'Di']);
    expect(edgeB!.cascade.links()).toEqual([
      expect.objectContaining({ channel: 'room', remoteNodeId: 'core', toCore: true }),
    ]);
    expect(
      core!.cascade
        .links()
        .map((link) => link.remoteNodeId)
        .sort(),
    ).toEqual(['edge-b', 'edge-c']);
    // Edges talk only to the core, never to each other.
    expect(relayed.some(({ from, to }) => from.startsWith('edge') && to.startsWith('edge'))).toBe(
      false,
    );

    await waitFor(
      () => pipeProducer(edgeC!, 'room', speakerOnB.producer.id) !== undefined,
      5000,
      "B's producer on C",
    );
    await Promise.all([speakerOnCore.sender.sendFor(50), speakerOnB.sender.sendFor(50)]);
    await waitFor(
      () =>
        (listenerOnC.receiver.packetsBySsrc.size === 2 && listenerOnC.receiver.total >= 60) ||
        false,
      5000,
      'audio from both speakers on edge C',
    );
    expect(listenerOnCore.receiver.total).toBeGreaterThan(30);
  }, 60_000);

  it('mirrors pause, resume and close of a producer across the pipe', async () => {
    const byId = await startNodes(['core', 'edge']);
    const [core, edge] = [byId.get('core')!, byId.get('edge')!];
    core.cascade.setCore('room', 'core');
    edge.cascade.setCore('room', 'core');
    const speaker = await joinPlainSpeaker(edge.node, 'room', 'Bo', 3333);
    const listener = await joinPlainListener(core.node, 'room', 'Di');
    peers.push(speaker, listener);
    await waitFor(() => pipeProducer(core, 'room', speaker.producer.id) !== undefined);

    await speaker.channel.setProducerPaused(speaker.peerId, speaker.producer.id, true);
    await waitFor(() => pipeProducer(core, 'room', speaker.producer.id)!.paused, 5000, 'pause');
    // The mute shows in the core's roster too.
    await waitFor(
      () =>
        core.node.channels
          .get('room')!
          .participants()
          .find((p) => p.id === speaker.peerId)?.muted === true,
      5000,
      'the muted flag',
    );
    await speaker.channel.setProducerPaused(speaker.peerId, speaker.producer.id, false);
    await waitFor(() => !pipeProducer(core, 'room', speaker.producer.id)!.paused, 5000, 'resume');

    speaker.channel.closeProducer(speaker.peerId, speaker.producer.id);
    await waitFor(
      () => pipeProducer(core, 'room', speaker.producer.id) === undefined,
      5000,
      'close',
    );
    await waitFor(() => listener.sink.of('consumerClosed').length === 1, 5000, 'consumerClosed');
  }, 30_000);

  it('forwards a moderator mute to the node serving the participant', async () => {
    const byId = await startNodes(['core', 'edge']);
    const [core, edge] = [byId.get('core')!, byId.get('edge')!];
    core.cascade.setCore('room', 'core');
    edge.cascade.setCore('room', 'core');
    const speaker = await joinPlainSpeaker(edge.node, 'room', 'Bo', 4444);
    const moderator = await joinPlainListener(core.node, 'room', 'Mo');
    peers.push(speaker, moderator);
    await waitFor(() => moderator.channel.participants().length === 2, 5000, 'the roster');

    await moderator.channel.setServerMuted(moderator.peerId, speaker.peerId, true);
    await waitFor(() => speaker.producer.paused, 5000, 'the remote mute');
    expect(speaker.channel.participants().find((p) => p.id === speaker.peerId)?.serverMuted).toBe(
      true,
    );
  }, 30_000);

  it('when the core node dies, the edges link to the new core and media flows again', async () => {
    const byId = await startNodes(['core', 'edge-b', 'edge-c']);
    const [core, edgeB, edgeC] = ['core', 'edge-b', 'edge-c'].map((id) => byId.get(id)!);
    for (const { cascade } of [core!, edgeB!, edgeC!]) cascade.setCore('room', 'core');
    const speakerOnB = await joinPlainSpeaker(edgeB!.node, 'room', 'Bo', 6666);
    const listenerOnC = await joinPlainListener(edgeC!.node, 'room', 'Cy');
    peers.push(speakerOnB, listenerOnC);
    await waitFor(() => pipeProducer(edgeC!, 'room', speakerOnB.producer.id) !== undefined);

    // The core crashes. The api marks it down and makes edge-b the core: every node hears both.
    dead.add('core');
    core!.node.close();
    for (const edge of [edgeB!, edgeC!]) edge.cascade.nodeDown('core');
    await waitFor(() => pipeProducer(edgeC!, 'room', speakerOnB.producer.id) === undefined);
    for (const edge of [edgeB!, edgeC!]) edge.cascade.setCore('room', 'edge-b');

    await waitFor(
      () => pipeProducer(edgeC!, 'room', speakerOnB.producer.id) !== undefined,
      5000,
      "B's producer on C through the new core",
    );
    expect(edgeC!.cascade.links()).toEqual([
      expect.objectContaining({ remoteNodeId: 'edge-b', toCore: true }),
    ]);
    expect(edgeB!.cascade.links()).toEqual([
      expect.objectContaining({ remoteNodeId: 'edge-c', toCore: false }),
    ]);
    await waitFor(
      () => listenerOnC.channel.participants().some((p) => p.id === speakerOnB.peerId),
      5000,
      'Bo in the roster again',
    );
    const before = listenerOnC.receiver.total;
    await speakerOnB.sender.sendFor(25);
    await waitFor(() => listenerOnC.receiver.total >= before + 15, 5000, 'audio from B on C');
  }, 30_000);

  it('drops what came from a node that went down, and an emptied edge leaves the channel', async () => {
    const byId = await startNodes(['core', 'edge-b', 'edge-c']);
    const [core, edgeB, edgeC] = ['core', 'edge-b', 'edge-c'].map((id) => byId.get(id)!);
    for (const { cascade } of [core!, edgeB!, edgeC!]) cascade.setCore('room', 'core');
    const speakerOnB = await joinPlainSpeaker(edgeB!.node, 'room', 'Bo', 5555);
    const listenerOnC = await joinPlainListener(edgeC!.node, 'room', 'Cy');
    peers.push(speakerOnB, listenerOnC);
    await waitFor(() => pipeProducer(edgeC!, 'room', speakerOnB.producer.id) !== undefined);

    // B stops answering: the core drops its link, and C hears that B's participant and producer
    // are gone.
    core!.cascade.nodeDown('edge-b');
    await waitFor(
      () => listenerOnC.channel.participants().every((p) => p.id !== speakerOnB.peerId),
      5000,
      "B's participant leaving C's roster",
    );
    await waitFor(() => pipeProducer(edgeC!, 'room', speakerOnB.producer.id) === undefined);
    expect(core!.cascade.links().map((link) => link.remoteNodeId)).toEqual(['edge-c']);

    // C's last participant leaves: C closes its part and the core, now empty, closes too.
    listenerOnC.channel.leave(listenerOnC.peerId);
    await waitFor(() => edgeC!.node.channels.get('room') === undefined, 5000, 'C closing');
    await waitFor(() => core!.node.channels.get('room') === undefined, 5000, 'the core closing');
    expect(core!.cascade.links()).toEqual([]);
  }, 30_000);

  it('pipes a simulcast screen share from its node to listeners on the others', async () => {
    const byId = await startNodes(['core', 'edge-b', 'edge-c']);
    const [core, edgeB, edgeC] = ['core', 'edge-b', 'edge-c'].map((id) => byId.get(id)!);
    for (const { cascade } of [core!, edgeB!, edgeC!]) cascade.setCore('room', 'core');
    const listenerOnCore = await joinPlainListener(core!.node, 'room', 'Di');
    const listenerOnC = await joinPlainListener(edgeC!.node, 'room', 'Cy');
    peers.push(listenerOnCore, listenerOnC);

    const { peer, share } = await shareFrom(edgeB!, 3001);
    for (const listener of [listenerOnCore, listenerOnC]) {
      await waitFor(
        () => listener.sink.of('newConsumer').some((c) => c.producerId === share.id),
        10_000,
        'the share to reach a listener on another node',
      );
      const consumed = listener.sink.of('newConsumer').find((c) => c.producerId === share.id)!;
      expect(consumed).toMatchObject({ kind: 'video', source: 'screen', peerId: peer.id });
    }
    // On the core the share is a piped producer that keeps its source.
    const piped = pipeProducer(core!, 'room', share.id);
    expect(piped?.kind).toBe('video');
    expect(piped?.appData.source).toBe('screen');
  });

  it("carries viewers' layer wishes back to the sharer's node, and a moderator's stop to the sharer", async () => {
    const byId = await startNodes(['core', 'edge-b', 'edge-c'], { shareLayerIdleMs: 300 });
    const [core, edgeB, edgeC] = ['core', 'edge-b', 'edge-c'].map((id) => byId.get(id)!);
    for (const { cascade } of [core!, edgeB!, edgeC!]) cascade.setCore('room', 'core');
    const viewers = [
      await joinPlainListener(core!.node, 'room', 'Di'),
      await joinPlainListener(edgeC!.node, 'room', 'Cy'),
    ];
    peers.push(...viewers);
    const { peer, share, sink: sueSink } = await shareFrom(edgeB!, 3101);
    const consumerOf = (viewer: PlainListener) =>
      viewer.sink.of('newConsumer').find((c) => c.producerId === share.id)?.consumerId;
    for (const viewer of viewers) {
      await waitFor(() => consumerOf(viewer) !== undefined, 10_000, 'the share to reach a viewer');
    }
    const prefer = (viewer: PlainListener, spatialLayer: number) =>
      viewer.channel.setConsumerPreferredLayers(viewer.peerId, consumerOf(viewer)!, {
        spatialLayer,
      });
    const told = () => sueSink.of('shareLayers').map((notice) => notice.activeLayers);

    // Only the viewer two links away still wants the top layer: it stays on.
    await prefer(viewers[0]!, 0);
    await new Promise((resolve) => setTimeout(resolve, 800));
    expect(told()).toEqual([]);
    // No viewer anywhere wants it: the sharer's node switches it off after the idle time.
    await prefer(viewers[1]!, 0);
    await waitFor(() => told().length === 1, 3000, 'the top layer to be switched off');
    expect(told()).toEqual([1]);
    // A viewer on another node wanting it again brings it back without the idle delay.
    const asked = Date.now();
    await prefer(viewers[1]!, 1);
    await waitFor(() => told().length === 2, 1000, 'the top layer to come back');
    expect(told()).toEqual([1, 2]);
    expect(Date.now() - asked).toBeLessThan(1000);
    expect(relayed.some(({ message }) => message.type === 'shareWish')).toBe(true);

    // A moderator on the core stops the share of a participant on edge B.
    viewers[0]!.channel.stopShare(viewers[0]!.peerId, peer.id);
    await waitFor(() => sueSink.of('shareStopped').length === 1, 5000, 'the sharer to hear it');
    expect(sueSink.of('shareStopped')[0]).toEqual({
      producerIds: [share.id],
      message: 'Di stopped your screen share',
    });
    for (const viewer of viewers) {
      await waitFor(
        () => viewer.sink.of('consumerClosed').some((c) => c.consumerId === consumerOf(viewer)),
        5000,
        'the share to end at every viewer',
      );
    }
  });
});
