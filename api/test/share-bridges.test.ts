import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import {
  nodeInfoSchema,
  type ApiToNodeMessage,
  type NodeInfo,
  type SharePresetId,
  type ShareRouting,
} from '@hearth/protocol';
import { AppError, createLogger } from '@hearth/server-common';
import { InMemoryClusterBus, RedisClusterBus, type ClusterBus } from '../src/cluster/bus';
import { ShareBridges, bridgeSource } from '../src/handoff/share-bridges';
import { sleep, waitUntil } from './nodes/helpers';
import { startRedis } from './support/redis';

const logger = createLogger('test', { level: 'silent' });

function node(id: string, kind: 'voice' | 'ingest', cpu: number, status = 'up'): NodeInfo {
  return nodeInfoSchema.parse({
    id,
    kind,
    signalingUrl: `wss://${id}.example/ws`,
    limits: {},
    load: { cpu },
    status,
    lastHeartbeatAt: new Date().toISOString(),
    registeredAt: new Date().toISOString(),
  });
}

let cleanup: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const step of cleanup.reverse()) await step();
  cleanup = [];
});

/** What the api around ShareBridges knows and did, shared by the instances of one test. */
function emptyWorld() {
  return {
    // What reached each node, and through which api instance.
    sent: [] as Array<{ nodeId: string; message: ApiToNodeMessage; via: string }>,
    // The channel's watch pages, the streams that are live, and where the audience was sent.
    world: {
      viewers: 0,
      live: new Set<string>(),
      routed: [] as Array<[string, boolean, boolean]>,
    },
    settings: new Map<string, { shareRouting: ShareRouting; maxSharePreset: SharePresetId }>([
      ['lobby', { shareRouting: 'auto', maxSharePreset: '1080p60' }],
    ]),
    claims: [] as string[],
  };
}

/** ShareBridges on fakes of the api around it; `sent` is what reached each node. */
async function setUp(
  options: {
    nodes?: NodeInfo[];
    claimRefused?: boolean;
    bus?: ClusterBus;
    instance?: string;
    shared?: ReturnType<typeof emptyWorld>;
  } = {},
) {
  const shared = options.shared ?? emptyWorld();
  const { sent, world, settings, claims } = shared;
  const via = options.instance ?? 'api-1';
  const bridges = new ShareBridges({
    deps: {
      sendToNode: async (nodeId, message) => {
        sent.push({ nodeId, message, via });
      },
      nodes: async () =>
        options.nodes ?? [
          node('voice-1', 'voice', 0.1),
          node('ingest-busy', 'ingest', 0.7),
          node('ingest-idle', 'ingest', 0.2),
          node('ingest-down', 'ingest', 0, 'down'),
        ],
      channelSettings: async (channel) => settings.get(channel),
      claimBridge: async (channel, peerId) => {
        if (options.claimRefused)
          throw new AppError('conflict', `channel ${channel} is already live`);
        claims.push(`${channel}/${peerId}`);
        return {
          streamId: randomUUID(),
          channel,
          keyId: `share:${peerId}`,
          storagePrefix: `live/${channel}`,
        };
      },
      viewers: async () => world.viewers,
      isLive: async (streamId) => world.live.has(streamId),
      routeShareAudience: async (streamId, { toStream, moveWebrtc }) => {
        world.routed.push([streamId, toStream, moveWebrtc]);
      },
    },
    bus: options.bus ?? new InMemoryClusterBus(logger),
    logger,
    srtp: () => true,
    settings: { viewers: 10, prewarm: 0.5, release: 0.6 },
  });
  await bridges.start();
  cleanup.push(() => bridges.close());
  const route = async (channel: string, routing: ShareRouting) => {
    settings.set(channel, { ...settings.get(channel)!, shareRouting: routing });
    await bridges.routingChanged(channel);
  };
  return { bridges, sent, claims, route, world, shared };
}

const openedRoute = (message: ApiToNodeMessage) =>
  (message as Extract<ApiToNodeMessage, { type: 'openBridge' }>).route;

const share = (event: 'shareStarted' | 'shareEnded', peerId: string) => ({
  event,
  channel: 'lobby',
  peerId,
  displayName: 'Sue',
});

describe('ShareBridges', () => {
  it('opens a bridge on the least loaded ingest node when a channel routed to broadcast has a share, and closes both ends when the share ends', async () => {
    const { bridges, sent, claims, route } = await setUp();
    const sue = randomUUID();
    bridges.shareChanged(share('shareStarted', sue), 'voice-1');
    await route('lobby', 'broadcast');
    await waitUntil(() => sent.length === 1, 'openBridge');
    const [opened] = sent;
    expect(opened).toMatchObject({
      nodeId: 'voice-1',
      message: {
        type: 'openBridge',
        channel: 'lobby',
        peerId: sue,
        srtp: true,
        route: {
          voiceNodeId: 'voice-1',
          ingestNodeId: 'ingest-idle',
          source: { width: 1920, height: 1080, fps: 60 },
          grant: { channel: 'lobby', keyId: `share:${sue}` },
        },
      },
    });
    expect(claims).toEqual([`lobby/${sue}`]);
    const { route: opening } = opened!.message as Extract<ApiToNodeMessage, { type: 'openBridge' }>;

    bridges.shareChanged(share('shareEnded', sue), 'voice-1');
    await waitUntil(() => sent.length === 3, 'closeBridge to both nodes');
    expect(sent.slice(1).map(({ nodeId, message }) => [nodeId, message])).toEqual([
      ['voice-1', { type: 'closeBridge', bridgeId: opening.bridgeId, reason: 'share ended' }],
      ['ingest-idle', { type: 'closeBridge', bridgeId: opening.bridgeId, reason: 'share ended' }],
    ]);
  });

  it('closes the bridge when the routing goes back, and when a node reports its part closed', async () => {
    const { bridges, sent, route } = await setUp();
    bridges.shareChanged(share('shareStarted', randomUUID()), 'voice-1');
    await route('lobby', 'broadcast');
    await waitUntil(() => sent.length === 1, 'openBridge');
    await route('lobby', 'webrtc');
    await waitUntil(() => sent.length === 3, 'the close');
    expect(sent.slice(1).map(({ message }) => message)).toMatchObject([
      { type: 'closeBridge', reason: 'routing changed' },
      { type: 'closeBridge', reason: 'routing changed' },
    ]);

    await route('lobby', 'broadcast');
    await waitUntil(() => sent.length === 4, 'a new bridge');
    const reopened = sent[3]!.message as Extract<ApiToNodeMessage, { type: 'openBridge' }>;
    await bridges.nodeClosedBridge(reopened.route.bridgeId, 'ffmpeg could not start');
    await waitUntil(() => sent.length === 6, 'the close after the node gave up');
    expect(sent.slice(4).map(({ message }) => message)).toMatchObject([
      { type: 'closeBridge', bridgeId: reopened.route.bridgeId, reason: 'ffmpeg could not start' },
      { type: 'closeBridge', bridgeId: reopened.route.bridgeId, reason: 'ffmpeg could not start' },
    ]);
  });

  it('opens nothing without an up ingest node, nor when the channel is live already, nor for auto routing', async () => {
    for (const options of [
      { nodes: [node('voice-1', 'voice', 0), node('ingest-down', 'ingest', 0, 'down')] },
      { claimRefused: true },
    ]) {
      const { bridges, sent, route } = await setUp(options);
      bridges.shareChanged(share('shareStarted', randomUUID()), 'voice-1');
      await route('lobby', 'broadcast');
      await route('lobby', 'broadcast');
      expect(sent).toEqual([]);
      await bridges.close();
    }
    const { bridges: auto, sent } = await setUp();
    auto.shareChanged(share('shareStarted', randomUUID()), 'voice-1');
    await auto.routingChanged('lobby');
    expect(sent).toEqual([]);
  });

  it('auto routing: the bridge warms up at the pre-warm fraction, spectators go to HLS at the threshold once it is live, and come back below the release fraction', async () => {
    const { bridges, sent, world } = await setUp();
    bridges.shareChanged(share('shareStarted', randomUUID()), 'voice-1');
    // 4 watch pages, all on WebRTC (reported by the voice node): below the pre-warm (5).
    await bridges.audienceChanged('voice-1', 'lobby', 4);
    world.viewers = 4;
    bridges.reconsider('lobby');
    await sleep(50);
    expect(sent).toEqual([]);

    world.viewers = 5;
    await bridges.audienceChanged('voice-1', 'lobby', 5);
    await waitUntil(() => sent.length === 1, 'the bridge warming up');
    const route = openedRoute(sent[0]!.message);
    expect(route.ingestNodeId).toBe('ingest-idle');
    // Live, but below the threshold: spectators stay on WebRTC.
    world.live.add(route.grant.streamId);
    bridges.reconsider('lobby');
    await waitUntil(() => world.routed.length === 1, 'a decision');
    expect(world.routed).toEqual([[route.grant.streamId, false, false]]);

    world.viewers = 10;
    await bridges.audienceChanged('voice-1', 'lobby', 10);
    await waitUntil(() => world.routed.length === 2, 'the handoff');
    expect(world.routed[1]).toEqual([route.grant.streamId, true, false]);

    // Hysteresis: at 7 of 10 (above the release fraction, 6) HLS stays; at 5 it is released.
    world.viewers = 7;
    bridges.reconsider('lobby');
    await waitUntil(() => world.routed.length === 3, 'a decision');
    expect(world.routed[2]).toEqual([route.grant.streamId, true, false]);
    world.viewers = 5;
    await bridges.audienceChanged('voice-1', 'lobby', 5);
    await waitUntil(() => world.routed.length === 4, 'the release');
    expect(world.routed[3]).toEqual([route.grant.streamId, false, false]);
    // Below the pre-warm with nobody on HLS: the bridge closes.
    world.viewers = 2;
    await bridges.audienceChanged('voice-1', 'lobby', 2);
    await waitUntil(() => sent.length === 3, 'the bridge closed');
    expect(sent.slice(1).map(({ message }) => message)).toMatchObject([
      { type: 'closeBridge', reason: 'the audience is back on WebRTC' },
      { type: 'closeBridge', reason: 'the audience is back on WebRTC' },
    ]);
  });

  it('auto routing: a voice node that goes down takes its spectators with it', async () => {
    const { bridges, sent, world } = await setUp();
    bridges.shareChanged(share('shareStarted', randomUUID()), 'voice-1');
    await bridges.audienceChanged('voice-2', 'lobby', 6);
    await waitUntil(() => sent.length === 1, 'the bridge warming up');
    world.viewers = 0;
    bridges.nodeGone('voice-2');
    await waitUntil(() => sent.length === 3, 'the bridge closed');
  });

  it('an ingest node that dies takes its bridge down, and a new one opens on another ingest node once the old stream ended', async () => {
    const nodes = [
      node('voice-1', 'voice', 0.1),
      node('ingest-a', 'ingest', 0.1),
      node('ingest-b', 'ingest', 0.5),
    ];
    const { bridges, sent, route } = await setUp({ nodes });
    bridges.shareChanged(share('shareStarted', randomUUID()), 'voice-1');
    await route('lobby', 'broadcast');
    await waitUntil(() => sent.length === 1, 'the first bridge');
    const first = openedRoute(sent[0]!.message);
    expect(first.ingestNodeId).toBe('ingest-a');

    nodes[1] = node('ingest-a', 'ingest', 0.1, 'down');
    bridges.nodeGone('ingest-a');
    await waitUntil(() => sent.length >= 3, 'the close');
    expect(sent[1]!.message).toMatchObject({
      type: 'closeBridge',
      reason: 'node ingest-a is down',
    });
    // The api ends the gone node's stream; then the share is bridged again elsewhere.
    bridges.streamEnded(first.grant.streamId, 'lobby');
    await waitUntil(
      () => sent.some(({ message }, i) => i > 0 && message.type === 'openBridge'),
      'a new bridge',
    );
    const second = openedRoute(
      sent.find(({ message }, i) => i > 0 && message.type === 'openBridge')!.message,
    );
    expect(second.ingestNodeId).toBe('ingest-b');
    expect(second.grant.channel).toBe('lobby');
    expect(second.bridgeId).not.toBe(first.bridgeId);
  });

  it('two api instances on one Redis: spectators and a routing change reported at either reach the instance holding the share, which alone opens the bridge', async () => {
    const redis = await startRedis();
    cleanup.push(() => redis.stop());
    const busOf = () => {
      const bus = new RedisClusterBus({ url: redis.url, logger });
      cleanup.push(() => bus.close());
      return bus;
    };
    const one = await setUp({ bus: busOf(), instance: 'api-1' });
    const two = await setUp({ bus: busOf(), instance: 'api-2', shared: one.shared });
    // The sharer's voice node is connected to api-1; an edge node with spectators to api-2.
    one.bridges.shareChanged(share('shareStarted', randomUUID()), 'voice-1');
    one.world.viewers = 5;
    await two.bridges.audienceChanged('voice-2', 'lobby', 5);
    await waitUntil(() => one.sent.length === 1, 'the bridge warming up');
    expect(one.sent[0]).toMatchObject({ via: 'api-1', message: { type: 'openBridge' } });
    const route = openedRoute(one.sent[0]!.message);

    // Live; a moderator at api-2 routes the channel to broadcast: api-1 moves everyone.
    one.world.live.add(route.grant.streamId);
    await two.route('lobby', 'broadcast');
    await waitUntil(
      () => one.world.routed.some(([, , moveWebrtc]) => moveWebrtc),
      'everyone moved',
    );
    expect(one.world.routed.at(-1)).toEqual([route.grant.streamId, true, true]);
    // Back to WebRTC only, again from api-2: api-1 closes both ends of its bridge.
    await two.route('lobby', 'webrtc');
    await waitUntil(() => one.sent.length === 3, 'the bridge closed');
    expect(one.sent.map(({ message, via }) => [message.type, via])).toEqual([
      ['openBridge', 'api-1'],
      ['closeBridge', 'api-1'],
      ['closeBridge', 'api-1'],
    ]);
    expect(one.claims).toHaveLength(1);
  });

  it('bridges at the channel cap, at most 1080p, 16:9', () => {
    expect(bridgeSource('720p30')).toEqual({ width: 1280, height: 720, fps: 30 });
    expect(bridgeSource('2160p30')).toEqual({ width: 1920, height: 1080, fps: 30 });
    expect(bridgeSource('source')).toEqual({ width: 1920, height: 1080, fps: 30 });
  });
});
