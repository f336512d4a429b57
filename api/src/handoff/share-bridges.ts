import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import {
  sharePreset,
  type ApiToNodeMessage,
  type BridgeRoute,
  type BridgeSource,
  type NodeInfo,
  type SharePresetId,
  type ShareRouting,
} from '@hearth/protocol';
import type { Logger } from '@hearth/server-common';
import type { ClusterBus } from '../cluster/bus';
import type { ShareAudienceRoute } from '../streams/stream-service';
import type { ShareEvent } from '../voice/share-events';
import {
  decideHandoff,
  type HandoffSettings,
  type ShareCapacity,
  type SpectatorPath,
} from './policy';

/** Bus topic on which a node's report that a bridge closed reaches the instance running it. */
const BRIDGE_CLOSED_TOPIC = 'handoff.bridgeClosed';
/** Bus topic on which a channel's routing change reaches the instance holding its share. */
const ROUTING_CHANGED_TOPIC = 'handoff.routingChanged';
/** Bus topic on which every instance hears each voice node's spectator counts. */
const AUDIENCE_TOPIC = 'handoff.audience';

// What one WebRTC spectator costs a share's voice node: the share's video and audio and the
// sharer's microphone.
const CONSUMERS_PER_SPECTATOR = 3;
// The share's top layer when its preset names no bitrate ("source"), in kbit/s.
const DEFAULT_SHARE_KBPS = 4500;

// The ladder's top rung is 1080p: a share is bridged at most at that size.
const MAX_BRIDGE_HEIGHT = 1080;
const DEFAULT_BRIDGE_FPS = 30;

const bridgeClosedSchema = z.object({ bridgeId: z.uuid(), reason: z.string().max(200) });
const routingChangedSchema = z.object({ channel: z.string().min(1).max(64) });
const audienceSchema = z.object({
  nodeId: z.string().min(1).max(128),
  channel: z.string().min(1).max(64),
  spectators: z.number().int().min(0).max(1_000_000),
});

/** What the bridges need of the rest of the api. */
export interface ShareBridgesDeps {
  /** Sends a message to a node wherever it is connected. */
  sendToNode(nodeId: string, message: ApiToNodeMessage): Promise<void>;
  /** Every node the registry knows. */
  nodes(): Promise<NodeInfo[]>;
  /** A channel's share settings, if the channel exists. */
  channelSettings(
    channel: string,
  ): Promise<{ shareRouting: ShareRouting; maxSharePreset: SharePresetId } | undefined>;
  /** Claims the channel's playback URL for a bridged share (`conflict` when it is live). */
  claimBridge(
    channel: string,
    peerId: string,
    nodes: { voiceNodeId: string; ingestNodeId: string },
  ): Promise<BridgeRoute['grant']>;
  /** Watch pages of the channel, on either path. */
  viewers(channel: string): Promise<number>;
  /** Whether a stream is playable now. */
  isLive(streamId: string): Promise<boolean>;
  /** Sends a bridged share's new spectators, or all, to its stream, or back to WebRTC. */
  routeShareAudience(streamId: string, route: ShareAudienceRoute): Promise<void>;
}

interface Share {
  readonly channel: string;
  readonly peerId: string;
  readonly voiceNodeId: string;
}

interface Bridge {
  readonly share: Share;
  readonly route: BridgeRoute;
}

/**
 * The shares of voice nodes connected to this api instance that run as HLS streams too: a share
 * bridged onto an ingest node. The instance holding a share's voice node decides for it, so one
 * instance acts for each share. A bridge opens when the channel's routing asks for it
 * (`broadcast`) and closes when the share ends, the routing changes back, or a node ends its part.
 */
export class ShareBridges {
  readonly #deps: ShareBridgesDeps;
  readonly #bus: ClusterBus;
  readonly #logger: Logger;
  readonly #srtp: (voiceNodeId: string, ingestNodeId: string) => boolean;
  readonly #settings: HandoffSettings;
  // WebRTC spectators by channel, then voice node, as every node reports them.
  readonly #audience = new Map<string, Map<string, number>>();
  // Where each channel's policy last sent new spectators.
  readonly #paths = new Map<string, SpectatorPath>();
  // Live shares whose voice node is connected here, by channel then peer.
  readonly #shares = new Map<string, Map<string, Share>>();
  // Open bridges, by channel: a channel has one playback URL, so one bridge at most.
  readonly #bridges = new Map<string, Bridge>();
  // One decision at a time per channel.
  readonly #pending = new Map<string, Promise<void>>();
  readonly #unsubscribes: Array<() => Promise<void>> = [];

  constructor(options: {
    deps: ShareBridgesDeps;
    bus: ClusterBus;
    logger: Logger;
    /** Whether a bridge between these nodes is encrypted: between hosts, it must be. */
    srtp: (voiceNodeId: string, ingestNodeId: string) => boolean;
    /** The thresholds of the handoff policy. */
    settings: HandoffSettings;
  }) {
    this.#settings = options.settings;
    this.#deps = options.deps;
    this.#bus = options.bus;
    this.#logger = options.logger.child({ component: 'share-bridges' });
    this.#srtp = options.srtp;
  }

  /** Starts hearing bridge closes and routing changes from every api instance. */
  async start(): Promise<void> {
    this.#unsubscribes.push(
      await this.#bus.subscribe(BRIDGE_CLOSED_TOPIC, (message) => {
        const parsed = bridgeClosedSchema.safeParse(message);
        if (parsed.success) this.#closed(parsed.data.bridgeId, parsed.data.reason);
      }),
      await this.#bus.subscribe(ROUTING_CHANGED_TOPIC, (message) => {
        const parsed = routingChangedSchema.safeParse(message);
        if (parsed.success) this.#decide(parsed.data.channel);
      }),
      await this.#bus.subscribe(AUDIENCE_TOPIC, (message) => {
        const parsed = audienceSchema.safeParse(message);
        if (parsed.success) this.#countAudience(parsed.data);
      }),
    );
  }

  /** Closes every bridge this instance runs and stops hearing the bus. */
  async close(): Promise<void> {
    for (const unsubscribe of this.#unsubscribes.splice(0)) await unsubscribe();
    await Promise.all([...this.#pending.values()]);
    for (const bridge of [...this.#bridges.values()]) await this.#stop(bridge, 'api stopping');
  }

  /** A share of a voice node connected here started or ended. */
  shareChanged(event: ShareEvent, voiceNodeId: string): void {
    const { channel, peerId } = event;
    const shares = this.#shares.get(channel) ?? new Map<string, Share>();
    if (event.event === 'shareStarted') {
      shares.set(peerId, { channel, peerId, voiceNodeId });
      this.#shares.set(channel, shares);
    } else {
      shares.delete(peerId);
      if (shares.size === 0) this.#shares.delete(channel);
    }
    this.#decide(channel);
  }

  /** A voice node reported its spectators of a channel: every instance hears it. */
  async audienceChanged(nodeId: string, channel: string, spectators: number): Promise<void> {
    await this.#bus.publish(AUDIENCE_TOPIC, { nodeId, channel, spectators });
  }

  /**
   * A node is down: its spectators are gone, and a bridge through it is given up. The share's
   * next decision opens a new bridge on another ingest node, under the same playback URL, once
   * the old stream has ended.
   */
  nodeGone(nodeId: string): void {
    for (const [channel, counts] of this.#audience) {
      if (counts.delete(nodeId)) this.#decide(channel);
    }
    for (const bridge of [...this.#bridges.values()]) {
      const { voiceNodeId, ingestNodeId } = bridge.route;
      if (nodeId !== voiceNodeId && nodeId !== ingestNodeId) continue;
      void this.#serially(bridge.share.channel, () => this.#stop(bridge, `node ${nodeId} is down`));
    }
  }

  /** A stream ended: if it was a bridge's (its ffmpeg gave up, its node went), the bridge ends. */
  streamEnded(streamId: string, channel: string): void {
    const bridge = this.#bridges.get(channel);
    if (bridge?.route.grant.streamId === streamId) {
      void this.#serially(channel, () => this.#stop(bridge, 'its stream ended'));
    }
    this.reconsider(channel);
  }

  /** Something the policy reads changed for the channel (its stream, its watch pages). */
  reconsider(channel: string): void {
    if (this.#shares.has(channel) || this.#bridges.has(channel)) this.#decide(channel);
  }

  #countAudience(report: z.infer<typeof audienceSchema>): void {
    const counts = this.#audience.get(report.channel) ?? new Map<string, number>();
    if (report.spectators > 0) counts.set(report.nodeId, report.spectators);
    else counts.delete(report.nodeId);
    if (counts.size > 0) this.#audience.set(report.channel, counts);
    else this.#audience.delete(report.channel);
    this.reconsider(report.channel);
  }

  /** Tells the instance holding the channel's share that its routing changed. */
  async routingChanged(channel: string): Promise<void> {
    await this.#bus.publish(ROUTING_CHANGED_TOPIC, { channel });
  }

  /** A node reported its part of a bridge closed: the instance running the bridge ends it. */
  async nodeClosedBridge(bridgeId: string, reason: string): Promise<void> {
    await this.#bus.publish(BRIDGE_CLOSED_TOPIC, { bridgeId, reason });
  }

  #closed(bridgeId: string, reason: string): void {
    const bridge = [...this.#bridges.values()].find((b) => b.route.bridgeId === bridgeId);
    if (bridge) void this.#serially(bridge.share.channel, () => this.#stop(bridge, reason));
  }

  #decide(channel: string): void {
    void this.#serially(channel, () => this.#apply(channel));
  }

  async #serially(channel: string, step: () => Promise<void>): Promise<void> {
    const previous = this.#pending.get(channel) ?? Promise.resolve();
    const next = previous
      .then(step)
      .catch((error: unknown) => {
        this.#logger.error({ err: error, channel }, 'a share bridge step failed');
      })
      .finally(() => {
        if (this.#pending.get(channel) === next) this.#pending.delete(channel);
      });
    this.#pending.set(channel, next);
    return next;
  }

  // Makes the channel's bridge, and the path of its spectators, what the policy decides.
  async #apply(channel: string): Promise<void> {
    const bridge = this.#bridges.get(channel);
    const shares = this.#shares.get(channel);
    const share = bridge && shares?.has(bridge.share.peerId) ? bridge.share : first(shares);
    if (bridge && bridge.share !== share) await this.#stop(bridge, 'share ended');
    if (!share) {
      this.#paths.delete(channel);
      return;
    }
    const settings = await this.#deps.channelSettings(channel);
    if (!settings) return;
    const open = this.#bridges.get(channel);
    const webrtc = [...(this.#audience.get(channel)?.values() ?? [])].reduce((a, b) => a + b, 0);
    const spectators = Math.max(webrtc, await this.#deps.viewers(channel));
    const voiceNode = (await this.#deps.nodes()).find((node) => node.id === share.voiceNodeId);
    const decision = decideHandoff({
      spectators,
      hlsSpectators: spectators - webrtc,
      capacity: capacityOf(voiceNode),
      consumersPerSpectator: CONSUMERS_PER_SPECTATOR,
      bitratePerSpectatorKbps: shareKbps(settings.maxSharePreset),
      routing: settings.shareRouting,
      bridgeReady: open ? await this.#deps.isLive(open.route.grant.streamId) : false,
      previous: this.#paths.get(channel) ?? 'webrtc',
      settings: this.#settings,
    });
    this.#paths.set(channel, decision.newSpectators);
    if (!decision.bridge) {
      const why =
        settings.shareRouting === 'webrtc' ? 'routing changed' : 'the audience is back on WebRTC';
      if (open) await this.#stop(open, why);
      return;
    }
    if (!open) {
      await this.#open(share, bridgeSource(settings.maxSharePreset));
      return;
    }
    await this.#deps.routeShareAudience(open.route.grant.streamId, {
      toStream: decision.newSpectators === 'hls' || decision.moveWebrtcSpectators,
      moveWebrtc: decision.moveWebrtcSpectators,
    });
  }

  async #open(share: Share, source: BridgeSource): Promise<void> {
    const ingest = leastLoadedIngest(await this.#deps.nodes());
    if (!ingest) {
      this.#logger.warn({ channel: share.channel }, 'no ingest node is up: the share stays WebRTC');
      return;
    }
    const nodes = { voiceNodeId: share.voiceNodeId, ingestNodeId: ingest.id };
    const grant = await this.#deps.claimBridge(share.channel, share.peerId, nodes);
    const route: BridgeRoute = { bridgeId: randomUUID(), ...nodes, grant, source };
    this.#bridges.set(share.channel, { share, route });
    this.#logger.info(
      { channel: share.channel, bridge: route.bridgeId, ingest: ingest.id, stream: grant.streamId },
      'bridging a share onto HLS',
    );
    await this.#deps.sendToNode(share.voiceNodeId, {
      type: 'openBridge',
      route,
      channel: share.channel,
      peerId: share.peerId,
      srtp: this.#srtp(share.voiceNodeId, ingest.id),
    });
  }

  async #stop(bridge: Bridge, reason: string): Promise<void> {
    const { route } = bridge;
    if (this.#bridges.get(bridge.share.channel) !== bridge) return;
    this.#bridges.delete(bridge.share.channel);
    this.#logger.info(
      { channel: bridge.share.channel, bridge: route.bridgeId, reason },
      'bridge closed',
    );
    const close = { type: 'closeBridge', bridgeId: route.bridgeId, reason } as const;
    await Promise.all([
      this.#deps.sendToNode(route.voiceNodeId, close),
      this.#deps.sendToNode(route.ingestNodeId, close),
    ]);
  }
}

/** The size and rate a share is bridged at under a channel's preset cap. */
export function bridgeSource(cap: SharePresetId): BridgeSource {
  const preset = sharePreset(cap);
  const height = Math.min(preset.height ?? MAX_BRIDGE_HEIGHT, MAX_BRIDGE_HEIGHT);
  return {
    width: Math.round((height * 16) / 9 / 2) * 2,
    height,
    fps: preset.frameRate ?? DEFAULT_BRIDGE_FPS,
  };
}

// Room left on a share's voice node; a node the registry does not list as up has none.
function capacityOf(node: NodeInfo | undefined): ShareCapacity {
  if (!node || node.status !== 'up') return { consumersLeft: 0, bitrateLeftKbps: 0, cpu: 1 };
  const { maxConsumers } = node.limits;
  return {
    consumersLeft:
      maxConsumers === undefined ? Number.POSITIVE_INFINITY : maxConsumers - node.load.consumers,
    bitrateLeftKbps: Number.POSITIVE_INFINITY,
    cpu: node.load.cpu,
  };
}

// What a WebRTC spectator of a share costs in bitrate: the top layer of the channel's cap.
function shareKbps(cap: SharePresetId): number {
  const bitrate = sharePreset(cap).maxBitrate;
  return bitrate === null ? DEFAULT_SHARE_KBPS : bitrate / 1000;
}

function first<T>(values: Map<string, T> | undefined): T | undefined {
  return values?.values().next().value;
}

// The up ingest node with the most CPU to spare.
function leastLoadedIngest(nodes: readonly NodeInfo[]): NodeInfo | undefined {
  return nodes
    .filter((node) => node.kind === 'ingest' && node.status === 'up')
    .sort((a, b) => (a.load.cpu ?? 0) - (b.load.cpu ?? 0) || a.id.localeCompare(b.id))[0];
}
