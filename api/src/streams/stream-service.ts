import { randomUUID } from 'node:crypto';
import type {
  ChannelStream,
  IssuedStreamKey,
  LiveStream,
  StreamKeyDetails,
  StreamKeyInfo,
} from '@hearth/protocol';
import { AppError, TypedEmitter, type Logger } from '@hearth/server-common';
import type {
  IngestControlPlane,
  PublishGrant,
  Rendition,
  StreamReport,
} from '@hearth/stream-ingest';
import type { ChannelDirectory } from '../channel-directory';
import type { StreamHistory } from '../db/stream-history';
import {
  generateStreamKey,
  parseStreamKey,
  secretMatches,
  type StreamKeyRecord,
  type StreamKeyStore,
} from './stream-keys';

/** Events of the stream service, forwarded to web clients by the events socket. */
export type StreamServiceEvents = {
  /** A publisher was accepted and its stream is starting. */
  streamStarted: [LiveStream];
  /** The stream's first segments are playable. */
  streamLive: [LiveStream];
  /** The stream ended. */
  streamEnded: [LiveStream];
  /** A channel's viewer count changed. */
  viewerCount: [channel: string, viewers: number];
  /** A key was rotated or revoked; streams using it must end. */
  keyRevoked: [keyId: string];
};

/** Public addresses the service hands out. */
export interface StreamUrls {
  /** RTMP server URL for OBS, e.g. `rtmp://127.0.0.1:1935/live`. */
  rtmpUrl: string;
  /** Base URL of HLS playback through the CDN edge, without a trailing slash. */
  playbackBaseUrl: string;
}

interface StreamEntry {
  stream: LiveStream;
  keyId: string;
}

// How long an ended stream stays listed, so players that poll see "ended" rather than "offline".
const ENDED_STREAM_RETENTION_MS = 60_000;

/**
 * Stream keys, publish authorization, and the registry of live streams with their viewers. It is
 * the control plane the ingest nodes talk to.
 */
export class StreamService implements IngestControlPlane {
  /** Stream lifecycle and viewer events. */
  readonly events: TypedEmitter<StreamServiceEvents>;
  readonly #keys: StreamKeyStore;
  readonly #channels: ChannelDirectory;
  readonly #history: StreamHistory;
  readonly #pendingHistory = new Set<Promise<void>>();
  readonly #urls: StreamUrls;
  readonly #logger: Logger;
  readonly #streams = new Map<string, StreamEntry>();
  readonly #viewers = new Map<string, number>();

  constructor(options: {
    keys: StreamKeyStore;
    channels: ChannelDirectory;
    history: StreamHistory;
    urls: StreamUrls;
    logger: Logger;
  }) {
    this.#keys = options.keys;
    this.#channels = options.channels;
    this.#history = options.history;
    this.#urls = options.urls;
    this.#logger = options.logger.child({ component: 'streams' });
    this.events = new TypedEmitter((error, event) =>
      this.#logger.error({ err: error, event }, 'stream event listener failed'),
    );
  }

  /** The master playlist URL of a channel; it stays the same across its streams. */
  playbackUrl(channel: string): string {
    return `${this.#urls.playbackBaseUrl}/live/${channel}/master.m3u8`;
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
      playbackUrl: this.playbackUrl(channel),
    };
  }

  /** Every key, without secrets. */
  async listKeys(): Promise<StreamKeyInfo[]> {
    return (await this.#keys.list()).map(describeKey);
  }

  /** Accepts a publisher whose key is current and whose channel is not live already. */
  async authorizePublish(streamKey: string, publisher: { ip: string }): Promise<PublishGrant> {
    const parsed = parseStreamKey(streamKey);
    const record = parsed ? await this.#keys.byId(parsed.id) : undefined;
    if (!parsed || !record || !secretMatches(parsed.secret, record.secretHash)) {
      this.#logger.warn({ ip: publisher.ip }, 'publish refused: unknown or revoked stream key');
      throw new AppError('forbidden', 'unknown or revoked stream key');
    }
    if (this.#liveEntry(record.channel)) {
      throw new AppError('conflict', `channel ${record.channel} is already live`);
    }
    // The stream is registered before anything is awaited, so two publishers racing for the same
    // channel cannot both pass the check above.
    const streamId = randomUUID();
    const stream: LiveStream = {
      id: streamId,
      channel: record.channel,
      state: 'starting',
      startedAt: new Date().toISOString(),
      endedAt: null,
      playbackUrl: this.playbackUrl(record.channel),
      viewers: 0,
      renditions: [],
    };
    this.#streams.set(streamId, { stream, keyId: record.id });
    const storagePrefix = `live/${record.channel}`;
    try {
      record.lastUsedAt = new Date();
      await this.#keys.put(record);
      await this.#history.started({
        id: streamId,
        channel: record.channel,
        keyId: record.id,
        publisherIp: publisher.ip,
        storagePrefix,
        startedAt: new Date(stream.startedAt),
      });
    } catch (error) {
      this.#streams.delete(streamId);
      throw error;
    }
    return { streamId, channel: record.channel, keyId: record.id, storagePrefix };
  }

  /** Applies a report from an ingest node. */
  report(report: StreamReport): void {
    const entry = this.#streams.get(report.streamId);
    if (!entry || entry.stream.state === 'ended') return;
    if (report.kind === 'started') {
      entry.stream = { ...entry.stream, renditions: report.renditions.map(describeRendition) };
      this.#record(
        report.streamId,
        this.#history.renditions(report.streamId, entry.stream.renditions),
      );
      this.events.safeEmit('streamStarted', this.#withViewers(entry.stream));
    } else if (report.kind === 'live') {
      entry.stream = { ...entry.stream, state: 'live' };
      this.#record(report.streamId, this.#history.live(report.streamId, new Date()));
      this.events.safeEmit('streamLive', this.#withViewers(entry.stream));
    } else {
      const endedAt = new Date();
      entry.stream = { ...entry.stream, state: 'ended', endedAt: endedAt.toISOString() };
      this.#record(report.streamId, this.#history.ended(report.streamId, endedAt, report.reason));
      this.events.safeEmit('streamEnded', this.#withViewers(entry.stream));
      this.#logger.info({ stream: report.streamId, reason: report.reason }, 'stream ended');
      setTimeout(() => {
        if (this.#streams.get(report.streamId) === entry) this.#streams.delete(report.streamId);
      }, ENDED_STREAM_RETENTION_MS).unref();
    }
  }

  /** Resolves once every stream history write started so far has finished (before closing the db). */
  async settle(): Promise<void> {
    while (this.#pendingHistory.size > 0) await Promise.all(this.#pendingHistory);
  }

  /** Subscribes to key rotations and revocations. */
  onKeyRevoked(listener: (keyId: string) => void): () => void {
    this.events.on('keyRevoked', listener);
    return () => this.events.off('keyRevoked', listener);
  }

  /** Streams that are starting or live. */
  liveStreams(): LiveStream[] {
    return [...this.#streams.values()]
      .filter(({ stream }) => stream.state !== 'ended')
      .map(({ stream }) => this.#withViewers(stream));
  }

  /** A channel's current (or just ended) stream, or offline. */
  channelStream(channel: string): ChannelStream {
    const entries = [...this.#streams.values()].filter(({ stream }) => stream.channel === channel);
    const latest = entries.find(({ stream }) => stream.state !== 'ended') ?? entries.at(-1);
    return {
      channel,
      playbackUrl: this.playbackUrl(channel),
      stream: latest ? this.#withViewers(latest.stream) : null,
    };
  }

  /** Counts one viewer of a channel until the returned function is called. */
  addViewer(channel: string): () => void {
    this.#setViewers(channel, (this.#viewers.get(channel) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#setViewers(channel, (this.#viewers.get(channel) ?? 1) - 1);
    };
  }

  // Ingest reports are fire-and-forget; their history writes are tracked so `settle()` can wait
  // for them, and a failed write is logged rather than disturbing the stream.
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
      playbackUrl: this.playbackUrl(channel),
    };
  }

  async #requireKey(channel: string): Promise<StreamKeyRecord> {
    const record = await this.#keys.byChannel(channel);
    if (!record) throw new AppError('not_found', `channel ${channel} has no stream key`);
    return record;
  }

  #liveEntry(channel: string): StreamEntry | undefined {
    return [...this.#streams.values()].find(
      ({ stream }) => stream.channel === channel && stream.state !== 'ended',
    );
  }

  #setViewers(channel: string, viewers: number): void {
    if (viewers <= 0) this.#viewers.delete(channel);
    else this.#viewers.set(channel, viewers);
    this.events.safeEmit('viewerCount', channel, Math.max(0, viewers));
  }

  #withViewers(stream: LiveStream): LiveStream {
    return { ...stream, viewers: this.#viewers.get(stream.channel) ?? 0 };
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

function describeRendition(rendition: Rendition) {
  return {
    name: rendition.name,
    width: rendition.width,
    height: rendition.height,
    fps: rendition.fps,
    bitrateKbps: rendition.videoBitrateKbps + rendition.audioBitrateKbps,
  };
}
