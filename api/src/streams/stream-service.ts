import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import {
  liveStreamSchema,
  type ChannelStream,
  type IngestedStream,
  type IssuedStreamKey,
  type LiveStream,
  type PublishGrant,
  type StreamKeyDetails,
  type StreamKeyInfo,
  type StreamReport,
} from '@hearth/protocol';
import { PRIVATE_KEY_PREFIX, signedChannelPath, storagePrefixOf } from '@hearth/cdn-config';
import { AppError, TypedEmitter, type Logger } from '@hearth/server-common';
import type { ChannelDirectory, ChannelRecord } from '../channel-directory';
import type { ClusterBus } from '../cluster/bus';
import type { StreamHistory } from '../db/stream-history';
import type { LiveStreamStore, StreamRecord } from './live-stream-store';
import {
  generateStreamKey,
  parseStreamKey,
  secretMatches,
  type StreamKeyRecord,
  type StreamKeyStore,
} from './stream-keys';

/** Events of the stream service, forwarded to web clients by the events socket. */

// The key id a bridged share's stream is recorded with, before the sharer's peer id.
const BRIDGE_KEY_PREFIX = 'share:';
export type StreamServiceEvents = {
  /** A publisher was accepted and its stream is starting. */
  streamStarted: [LiveStream];
  /** The stream's first segments are playable. */
  streamLive: [LiveStream];
  /** The stream ended. */
  streamEnded: [LiveStream];
  /** A channel's viewer count changed. */
  viewerCount: [channel: string, viewers: number];
  /**
   * Streams using this key must end: it was rotated or revoked through this instance, or its
   * channel turned private or public while live.
   */
  keyRevoked: [keyId: string];
};

/** Public addresses the service hands out. */
export interface StreamUrls {
  /** RTMP server URL for OBS, e.g. `rtmp://127.0.0.1:1935/live`. */
  rtmpUrl: string;
  /** Base URL of HLS playback through the CDN edge, without a trailing slash. */
  playbackBaseUrl: string;
}

// A private channel's playback URL is signed for 6 hours: a whole evening of watching without a
// reload, and a leaked URL stops working the same night. The expiry is rounded up to the next
// 10 minutes, so everyone asking within those minutes gets the same URL.
/** Shortest lifetime of a private channel's signed playback URL, in seconds. */
export const PRIVATE_PLAYBACK_TTL_SECONDS = 6 * 3600;
const PRIVATE_PLAYBACK_EXPIRY_STEP_SECONDS = 600;

/** The channel's name and whether it is private: what its playback URL depends on. */
export type PlaybackChannel = Pick<ChannelRecord, 'name' | 'private'>;

/** Bus topic on which every api instance hears of stream changes, to tell its web clients. */
const STREAM_EVENTS_TOPIC = 'streams.events';

const streamEventSchema = z.discriminatedUnion('event', [
  z.object({
    event: z.enum(['streamStarted', 'streamLive', 'streamEnded']),
    stream: liveStreamSchema,
  }),
  z.object({
    event: z.literal('viewerCount'),
    channel: z.string(),
    viewers: z.number().int().nonnegative(),
  }),
]);

type StreamEvent = z.infer<typeof streamEventSchema>;

/** Why the api ends the streams of an ingest node that went away. */
export const NODE_GONE_REASON = 'ingest node gone';

/**
 * Stream keys, publish authorization, and the live streams with their viewers, kept in a store
 * every api instance shares. Ingest nodes ask it, through the node hub, whether a key may publish
 * and report what their streams do; every change reaches the web clients of every instance.
 */
/** Where a bridged share's spectators watch, as the handoff policy decides. */
export interface ShareAudienceRoute {
  /** New spectators watch the share's stream. */
  readonly toStream: boolean;
  /** Spectators watching over WebRTC move to the stream too. */
  readonly moveWebrtc: boolean;
}

export class StreamService {
  /** Stream lifecycle and viewer events, as every instance hears them. */
  readonly events: TypedEmitter<StreamServiceEvents>;
  readonly #keys: StreamKeyStore;
  readonly #channels: ChannelDirectory;
  readonly #history: StreamHistory;
  readonly #store: LiveStreamStore;
  readonly #bus: ClusterBus;
  readonly #pendingHistory = new Set<Promise<void>>();
  readonly #urls: StreamUrls;
  readonly #playbackSigningSecret: string | undefined;
  readonly #logger: Logger;
  #unsubscribe: (() => Promise<void>) | undefined;

  constructor(options: {
    keys: StreamKeyStore;
    channels: ChannelDirectory;
    history: StreamHistory;
    store: LiveStreamStore;
    bus: ClusterBus;
    urls: StreamUrls;
    /** Signs private channels' playback paths; the CDN edge holds the same secret. */
    playbackSigningSecret?: string | undefined;
    logger: Logger;
  }) {
    this.#keys = options.keys;
    this.#channels = options.channels;
    this.#history = options.history;
    this.#store = options.store;
    this.#bus = options.bus;
    this.#urls = options.urls;
    this.#playbackSigningSecret = options.playbackSigningSecret;
    this.#logger = options.logger.child({ component: 'streams' });
    this.events = new TypedEmitter((error, event) =>
      this.#logger.error({ err: error, event }, 'stream event listener failed'),
    );
  }

  /** Base URL of HLS playback (the CDN edge), without a trailing slash. */
  get playbackBaseUrl(): string {
    return this.#urls.playbackBaseUrl;
  }

  /** Starts hearing stream changes made through any api instance. */
  async start(): Promise<void> {
    this.#unsubscribe = await this.#bus.subscribe(STREAM_EVENTS_TOPIC, (message) => {
      const parsed = streamEventSchema.safeParse(message);
      if (!parsed.success) {
        this.#logger.error('bad stream event on the bus');
        return;
      }
      const event = parsed.data;
      if (event.event === 'viewerCount') {
        this.events.safeEmit('viewerCount', event.channel, event.viewers);
      } else {
        this.events.safeEmit(event.event, event.stream);
      }
    });
  }

  /** Stops hearing the bus and waits for history writes. */
  async close(): Promise<void> {
    await this.#unsubscribe?.();
    await this.settle();
  }

  /** The master playlist URL of a public channel; it stays the same across its streams. */
  playbackUrl(channel: string): string {
    return `${this.#urls.playbackBaseUrl}/${storagePrefixOf(channel, false)}/master.m3u8`;
  }

  /**
   * The master playlist URL of a channel for someone allowed to watch it: for a private channel,
   * a signed URL valid for at least `PRIVATE_PLAYBACK_TTL_SECONDS`. Without a signing secret it
   * is the private objects' plain URL, which the edge refuses.
   */
  playbackUrlFor(channel: PlaybackChannel, now: Date = new Date()): string {
    if (!channel.private) return this.playbackUrl(channel.name);
    const secret = this.#playbackSigningSecret;
    if (secret === undefined) return this.#unsignedPrivateUrl(channel.name);
    const step = PRIVATE_PLAYBACK_EXPIRY_STEP_SECONDS;
    const earliest = Math.floor(now.getTime() / 1000) + PRIVATE_PLAYBACK_TTL_SECONDS;
    const expiresAtSeconds = Math.ceil(earliest / step) * step;
    const path = signedChannelPath({ channel: channel.name, expiresAtSeconds, secret });
    return `${this.#urls.playbackBaseUrl}${path}/master.m3u8`;
  }

  /** The stream with the playback URL of `playbackUrlFor`, for someone allowed to watch it. */
  withPlaybackUrl(stream: LiveStream, channel: PlaybackChannel): LiveStream {
    return channel.private ? { ...stream, playbackUrl: this.playbackUrlFor(channel) } : stream;
  }

  // Stored with a private channel's live stream and sent to nobody as is: every answer and event
  // replaces it with a signed URL for those allowed, so a stale copy fails closed at the edge.
  #unsignedPrivateUrl(channel: string): string {
    return `${this.#urls.playbackBaseUrl}/${storagePrefixOf(channel, true)}/master.m3u8`;
  }

  #storedPlaybackUrl(channel: PlaybackChannel): string {
    return channel.private
      ? this.#unsignedPrivateUrl(channel.name)
      : this.playbackUrl(channel.name);
  }

  async #playbackUrlOf(channel: string): Promise<string> {
    const record = await this.#channels.get(channel);
    return this.playbackUrlFor({ name: channel, private: record?.private ?? false });
  }

  /** Issues the channel's first key; `conflict` if it has one (rotate it instead). */
  async createKey(channel: string): Promise<IssuedStreamKey> {
    await this.#channels.ensure(channel);
    if (await this.#keys.byChannel(channel)) {
      throw new AppError('conflict', `channel ${channel} already has a stream key; rotate it`);
    }
    return this.#issue(channel);
  }

  /** Replaces the channel's key; a live stream that used the old key ends. */
  async rotateKey(channel: string): Promise<IssuedStreamKey> {
    const old = await this.#requireKey(channel);
    const issued = await this.#issue(channel);
    this.events.safeEmit('keyRevoked', old.id);
    this.#logger.info({ channel, oldKey: old.id, newKey: issued.key.id }, 'stream key rotated');
    return issued;
  }

  /** Removes the channel's key; a live stream that used it ends. */
  async revokeKey(channel: string): Promise<void> {
    const old = await this.#requireKey(channel);
    await this.#keys.delete(channel);
    this.events.safeEmit('keyRevoked', old.id);
    this.#logger.info({ channel, key: old.id }, 'stream key revoked');
  }

  /** The channel's key without its secret, and the URLs that go with it. */
  async keyDetails(channel: string): Promise<StreamKeyDetails> {
    return {
      key: describeKey(await this.#requireKey(channel)),
      rtmpUrl: this.#urls.rtmpUrl,
      playbackUrl: await this.#playbackUrlOf(channel),
    };
  }

  /**
   * Ends the channel's live stream, if any, without revoking its key: the publisher may connect
   * again at once. Used when a channel turns private or public, since a stream keeps the
   * storage prefix (and so the edge path) it started with.
   */
  async restartLiveStream(channel: string): Promise<void> {
    const record = await this.#store.ofChannel(channel);
    if (!record || record.stream.state === 'ended') return;
    this.events.safeEmit('keyRevoked', record.keyId);
    this.#logger.info({ channel, stream: record.stream.id }, 'stream restarted: privacy changed');
  }

  /** Every key, without secrets. */
  async listKeys(): Promise<StreamKeyInfo[]> {
    return (await this.#keys.list()).map(describeKey);
  }

  /**
   * Accepts a publisher on `nodeId` whose key is current and whose channel is not live already;
   * refuses with `forbidden` (bad key) or `conflict` (live). The key is never logged.
   */
  async authorizePublish(
    streamKey: string,
    publisher: { ip: string; nodeId: string },
  ): Promise<PublishGrant> {
    const parsed = parseStreamKey(streamKey);
    const record = parsed ? await this.#keys.byId(parsed.id) : undefined;
    if (!parsed || !record || !secretMatches(parsed.secret, record.secretHash)) {
      this.#logger.warn({ ip: publisher.ip }, 'publish refused: unknown or revoked stream key');
      throw new AppError('forbidden', 'unknown or revoked stream key');
    }
    return this.#claim(record.channel, record.id, publisher, async (startedAt) => {
      record.lastUsedAt = startedAt;
      await this.#keys.put(record);
    });
  }

  /**
   * Claims the channel for a screen share bridged onto the ingest node `nodeId`: a stream like a
   * published one, under the channel's playback URL, recorded with the key id `share:<peerId>`;
   * refuses with `conflict` when the channel is live already.
   */
  async claimBridge(
    channel: string,
    peerId: string,
    bridge: { voiceNodeId: string; ingestNodeId: string },
  ): Promise<PublishGrant> {
    return this.#claim(channel, `${BRIDGE_KEY_PREFIX}${peerId}`, {
      ip: bridge.voiceNodeId,
      nodeId: bridge.ingestNodeId,
    });
  }

  // Claims a channel for a new stream on an ingest node, atomically across api instances, and
  // records its start (after `claimed`, which a failure of undoes the claim too).
  async #claim(
    channelName: string,
    keyId: string,
    publisher: { ip: string; nodeId: string },
    claimed?: (startedAt: Date) => Promise<void>,
  ): Promise<PublishGrant> {
    const streamId = randomUUID();
    // Privacy is read once per stream: the prefix decides which edge path serves it, so a
    // channel made private while live stays on the public prefix until its next stream.
    const channel: PlaybackChannel = {
      name: channelName,
      private: (await this.#channels.get(channelName))?.private ?? false,
    };
    const storagePrefix = storagePrefixOf(channel.name, channel.private);
    if (channel.private && this.#playbackSigningSecret === undefined) {
      this.#logger.warn(
        { channel: channel.name },
        'a private channel went live but no playback signing secret is set: nobody can watch it',
      );
    }
    const startedAt = new Date();
    // The claim is atomic in the shared store: of two publishers racing for one channel, on any
    // nodes and through any api instances, one wins.
    const won = await this.#store.claim({
      stream: {
        id: streamId,
        channel: channelName,
        state: 'starting',
        startedAt: startedAt.toISOString(),
        endedAt: null,
        playbackUrl: this.#storedPlaybackUrl(channel),
        renditions: [],
      },
      keyId,
      nodeId: publisher.nodeId,
      seenAt: startedAt.toISOString(),
    });
    if (!won) throw new AppError('conflict', `channel ${channelName} is already live`);
    try {
      await claimed?.(startedAt);
      await this.#history.started({
        id: streamId,
        channel: channelName,
        keyId,
        publisherIp: publisher.ip,
        storagePrefix,
        startedAt,
        nodeId: publisher.nodeId,
      });
    } catch (error) {
      await this.#store.end(streamId, new Date());
      throw error;
    }
    return { streamId, channel: channelName, keyId, storagePrefix };
  }

  /**
   * Sends a bridged share's new spectators to its stream, or back to WebRTC, and with
   * `moveWebrtc` those watching over WebRTC too, as the handoff policy decides. Watch pages hear
   * `streamLive` again when that changes, and read the status.
   */
  async routeShareAudience(streamId: string, route: ShareAudienceRoute): Promise<void> {
    const record = await this.#store.get(streamId);
    const moveWebrtc = route.toStream && route.moveWebrtc;
    if (
      !record ||
      (record.shareAudience === route.toStream && (record.moveWebrtc ?? false) === moveWebrtc)
    ) {
      return;
    }
    const next = await this.#store.update(streamId, {
      shareAudience: route.toStream,
      moveWebrtc,
    });
    if (next?.stream.state === 'live') await this.#announce('streamLive', next);
  }

  /** Whether a stream is playable now. */
  async isLive(streamId: string): Promise<boolean> {
    return (await this.#store.get(streamId))?.stream.state === 'live';
  }

  /** Applies a report from the ingest node `nodeId`; reports on other nodes' streams are ignored. */
  async report(nodeId: string, report: StreamReport): Promise<void> {
    const record = await this.#store.get(report.streamId);
    if (!record || record.nodeId !== nodeId) return;
    if (report.kind === 'started') {
      const next = await this.#store.update(report.streamId, { renditions: report.renditions });
      if (!next) return;
      this.#record(report.streamId, this.#history.renditions(report.streamId, report.renditions));
      await this.#announce('streamStarted', next);
    } else if (report.kind === 'live') {
      const next = await this.#store.update(report.streamId, { state: 'live' });
      if (!next) return;
      this.#record(report.streamId, this.#history.live(report.streamId, new Date()));
      await this.#announce('streamLive', next);
    } else {
      await this.#end(record, report.reason);
    }
  }

  /**
   * Takes what a node that just registered runs as the truth: its streams are live again (after
   * an api restart, or a mark-down that ended them), and its other streams end.
   */
  async replay(nodeId: string, streams: readonly IngestedStream[]): Promise<void> {
    const seenAt = new Date().toISOString();
    const replayed = new Set(streams.map(({ grant }) => grant.streamId));
    for (const record of await this.#store.live()) {
      if (record.nodeId === nodeId && !replayed.has(record.stream.id)) {
        await this.#end(record, 'not running on its node after it registered');
      }
    }
    for (const { grant, state, renditions } of streams) {
      const known = await this.#store.get(grant.streamId);
      if (known && known.stream.state !== 'ended') {
        // Vouched for now: a "node gone" decided before this replay must not end it.
        await this.#store.update(grant.streamId, { seenAt });
        continue;
      }
      const claimed = await this.#store.claim({
        stream: {
          id: grant.streamId,
          channel: grant.channel,
          state,
          startedAt: known?.stream.startedAt ?? new Date().toISOString(),
          endedAt: null,
          playbackUrl: this.#storedPlaybackUrl({
            name: grant.channel,
            private: grant.storagePrefix.startsWith(`${PRIVATE_KEY_PREFIX}/`),
          }),
          renditions,
        },
        keyId: grant.keyId,
        nodeId,
        seenAt,
      });
      if (!claimed) {
        this.#logger.warn({ node: nodeId, stream: grant.streamId }, 'replayed stream conflicts');
        continue;
      }
      this.#record(grant.streamId, this.#history.reopen(grant.streamId));
      const record = await this.#store.get(grant.streamId);
      if (record) await this.#announce(state === 'live' ? 'streamLive' : 'streamStarted', record);
    }
    const closed = await this.#history.closeNode(
      nodeId,
      new Date(),
      'not running on its node after it registered',
      [...replayed],
    );
    if (closed > 0) this.#logger.warn({ node: nodeId, streams: closed }, 'closed stale streams');
  }

  /**
   * Ends the streams of an ingest node that went away at `since` (its connection dropped, or it
   * was marked down), except those it vouched for since: it came back and replayed them, maybe
   * through another api instance.
   */
  async nodeGone(nodeId: string, since: Date): Promise<void> {
    const kept: string[] = [];
    for (const record of await this.#store.live()) {
      if (record.nodeId !== nodeId) continue;
      if (Date.parse(record.seenAt) >= since.getTime()) kept.push(record.stream.id);
      else await this.#end(record, NODE_GONE_REASON, since);
    }
    await this.#history.closeNode(nodeId, new Date(), NODE_GONE_REASON, kept);
  }

  /**
   * Ends the history rows left open by nodes not in `upNodes` (nodes that died while no api
   * instance watched them); resolves with how many it ended.
   */
  async closeStreamsOfGoneNodes(upNodes: ReadonlySet<string>): Promise<number> {
    let closed = 0;
    for (const nodeId of await this.#history.nodesWithOpenStreams()) {
      if (nodeId !== null && upNodes.has(nodeId)) continue;
      closed += await this.#history.closeNode(nodeId, new Date(), NODE_GONE_REASON);
    }
    return closed;
  }

  /** Resolves once every stream history write started so far has finished (before closing the db). */
  async settle(): Promise<void> {
    while (this.#pendingHistory.size > 0) await Promise.all(this.#pendingHistory);
  }

  /** Streams that are starting or live, on every node. */
  async liveStreams(): Promise<LiveStream[]> {
    const records = await this.#store.live();
    const viewers = await this.#store.viewers(records.map(({ stream }) => stream.channel));
    return records.map(({ stream }) => ({ ...stream, viewers: viewers.get(stream.channel) ?? 0 }));
  }

  /**
   * A channel's current (or just ended) stream, or offline, for someone allowed to watch it;
   * a private channel's URLs are signed (`playbackUrlFor`). Given a name, the channel is looked
   * up; one that does not exist is public.
   */
  async channelStream(
    channelOrName: PlaybackChannel | string,
  ): Promise<
    Omit<ChannelStream, 'share'> & { broadcastShare: string | undefined; moveWebrtc: boolean }
  > {
    const channel =
      typeof channelOrName === 'string'
        ? {
            name: channelOrName,
            private: (await this.#channels.get(channelOrName))?.private ?? false,
          }
        : channelOrName;
    const record = await this.#store.ofChannel(channel.name);
    const bridged =
      record !== undefined &&
      record.keyId.startsWith(BRIDGE_KEY_PREFIX) &&
      record.stream.state === 'live' &&
      record.shareAudience === true;
    return {
      channel: channel.name,
      playbackUrl: this.playbackUrlFor(channel),
      stream: record ? this.withPlaybackUrl(await this.#withViewers(record), channel) : null,
      broadcastShare: bridged ? record.keyId.slice(BRIDGE_KEY_PREFIX.length) : undefined,
      moveWebrtc: bridged && record.moveWebrtc === true,
    };
  }

  /** The ingest node running the channel's stream, while one runs. */
  async liveNodeOf(channel: string): Promise<string | undefined> {
    const record = await this.#store.ofChannel(channel);
    return record && record.stream.state !== 'ended' ? record.nodeId : undefined;
  }

  /** How many people watch a channel right now, live or not. */
  async viewers(channel: string): Promise<number> {
    return (await this.#store.viewers([channel])).get(channel) ?? 0;
  }

  /** Counts one viewer of a channel until the returned function is called. */
  addViewer(channel: string): () => void {
    this.#changeViewers(channel, 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#changeViewers(channel, -1);
    };
  }

  #changeViewers(channel: string, delta: number): void {
    this.#store
      .addViewers(channel, delta)
      .then((viewers) =>
        this.#bus.publish(STREAM_EVENTS_TOPIC, { event: 'viewerCount', channel, viewers }),
      )
      .catch((error: unknown) => {
        this.#logger.warn({ err: error, channel }, 'viewer count not updated');
      });
  }

  async #end(record: StreamRecord, reason: string, seenBefore?: Date): Promise<void> {
    const endedAt = new Date();
    const ended = await this.#store.end(record.stream.id, endedAt, seenBefore);
    if (!ended) return;
    this.#record(record.stream.id, this.#history.ended(record.stream.id, endedAt, reason));
    this.#logger.info({ stream: record.stream.id, reason }, 'stream ended');
    await this.#announce('streamEnded', ended);
  }

  async #announce(
    event: Exclude<StreamEvent['event'], 'viewerCount'>,
    record: StreamRecord,
  ): Promise<void> {
    const stream = await this.#withViewers(record);
    await this.#bus.publish(STREAM_EVENTS_TOPIC, { event, stream }).catch((error: unknown) => {
      this.#logger.warn({ err: error, stream: stream.id }, 'stream event not published');
    });
  }

  async #withViewers(record: StreamRecord): Promise<LiveStream> {
    const viewers = await this.#store.viewers([record.stream.channel]);
    return { ...record.stream, viewers: viewers.get(record.stream.channel) ?? 0 };
  }

  // History writes run in the background and are tracked so `settle()` can wait for them; a
  // failed write is logged rather than disturbing the stream.
  #record(streamId: string, write: Promise<void>): void {
    const tracked = write
      .catch((error: unknown) =>
        this.#logger.error({ err: error, stream: streamId }, 'stream history write failed'),
      )
      .finally(() => this.#pendingHistory.delete(tracked));
    this.#pendingHistory.add(tracked);
  }

  async #issue(channel: string): Promise<IssuedStreamKey> {
    const generated = generateStreamKey();
    const record: StreamKeyRecord = {
      id: generated.id,
      channel,
      secretHash: generated.secretHash,
      createdAt: new Date(),
      lastUsedAt: null,
    };
    await this.#keys.put(record);
    return {
      key: describeKey(record),
      streamKey: generated.text,
      rtmpUrl: this.#urls.rtmpUrl,
      playbackUrl: await this.#playbackUrlOf(channel),
    };
  }

  async #requireKey(channel: string): Promise<StreamKeyRecord> {
    const record = await this.#keys.byChannel(channel);
    if (!record) throw new AppError('not_found', `channel ${channel} has no stream key`);
    return record;
  }
}

function describeKey(record: StreamKeyRecord): StreamKeyInfo {
  return {
    id: record.id,
    channel: record.channel,
    createdAt: record.createdAt.toISOString(),
    lastUsedAt: record.lastUsedAt?.toISOString() ?? null,
  };
}
