import fs from 'node:fs';
import path from 'node:path';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import {
  bridgeOfferSchema,
  nodeLoadSchema,
  type BridgeAnswer,
  type BridgeOffer,
  type IngestedStream,
  type NodeLoad,
  type RenditionInfo,
} from '@hearth/protocol';
import { AppError, TypedEmitter, type Logger } from '@hearth/server-common';
import { bridgeLadderSource } from './bridge-input';
import { BridgeReceiver } from './bridge-receiver';
import { rtmpLimits, type IngestConfig } from './config';
import type { IngestControlPlane, PublishGrant } from './control-plane';
import { ProcessCpuMeter } from './cpu-meter';
import type { Rendition } from './hls-types';
import { partPlanOf } from './ffmpeg-args';
import { HlsPublisher } from './hls-publisher';
import { DEFAULT_MAX_BLOCKED_REQUESTS, LiveOrigin, type OriginStream } from './live-origin';
import { renderMasterPlaylist } from './master-playlist';
import { RtmpServer, type PublishRequest } from './rtmp-server';
import type { ObjectStorage } from './storage/object-storage';
import type { UploadKind } from './upload-queue';
import type { SourceInfo } from './ladder';
import { Transcoder, type TranscoderOptions } from './transcoder';

/** Prometheus metrics of an ingest node. */
interface IngestMetrics {
  liveStreams: Gauge;
  refusedPublishes: Counter<'reason'>;
  uploadSeconds: Histogram<'kind'>;
  transcoderRestarts: Counter;
  droppedSegments: Counter;
  originRequests: Counter<'kind'>;
}

// A publisher's metadata (size, frame rate) arrives just after it starts publishing; without it
// within this time, the ladder is chosen from a conservative guess.
const VIDEO_INFO_WAIT_MS = 3000;
const FALLBACK_SOURCE = { width: 1280, height: 720, fps: 30 };

/** One stream being transcoded and uploaded: an RTMP publish or a share bridge. */
class LiveRun {
  readonly grant: PublishGrant;
  /** Cuts the source off: disconnects the publisher, or closes a bridge's receiver. */
  readonly closeSource: () => void;
  readonly transcoder: Transcoder;
  readonly publisher: HlsPublisher;
  /** Its live playlists, parts and recent segments on this node's origin. */
  readonly origin: OriginStream;
  /** Last speed ffmpeg reported, 1 = real time. */
  speed: number | undefined;
  #ending: Promise<void> | undefined;

  constructor(options: {
    grant: PublishGrant;
    closeSource: () => void;
    transcoder: Transcoder;
    publisher: HlsPublisher;
    origin: OriginStream;
  }) {
    this.grant = options.grant;
    this.closeSource = options.closeSource;
    this.transcoder = options.transcoder;
    this.publisher = options.publisher;
    this.origin = options.origin;
  }

  /** Stops the transcoder; resolves once ffmpeg has written its last segments. */
  stopTranscoder(): Promise<void> {
    this.#ending ??= this.transcoder.stop();
    return this.#ending;
  }
}

/** Events of an ingest node, for dashboards and benchmarks. */
export type IngestNodeEvents = {
  /** One object reached storage. */
  uploaded: [{ channel: string; kind: UploadKind; ms: number }];
  /** ffmpeg reported its speed (1 = real time). */
  speed: [{ channel: string; speed: number }];
  /** ffmpeg fell behind and was restarted with cheaper settings. */
  adapted: [{ channel: string; reason: string }];
};

/**
 * An ingest node: RTMP in, one ffmpeg ladder per stream, segments and playlists out to object
 * storage. The control plane decides who may publish; this node reports what runs.
 */
export class IngestNode {
  /** The RTMP server. */
  readonly rtmp: RtmpServer;
  /** Upload and speed events. */
  readonly events: TypedEmitter<IngestNodeEvents>;
  /** The LL-HLS origin of this node's streams, for its HTTP server. */
  readonly origin: LiveOrigin;
  readonly #config: IngestConfig;
  readonly #controlPlane: IngestControlPlane;
  readonly #storage: ObjectStorage;
  readonly #logger: Logger;
  readonly #metrics: IngestMetrics;
  readonly #runs = new Map<string, LiveRun>();
  // Ended streams whose last uploads are still draining (during an S3 outage, say).
  readonly #draining = new Set<LiveRun>();
  // Publishers accepted but still waiting for their metadata, by session id.
  readonly #pending = new Map<string, { keyId: string; request: PublishRequest }>();
  readonly #revokedWhilePending = new Set<string>();
  readonly #stopRevocations: () => void;
  readonly #cpu = new ProcessCpuMeter();
  #stopping = false;

  private constructor(options: {
    config: IngestConfig;
    controlPlane: IngestControlPlane;
    storage: ObjectStorage;
    logger: Logger;
    registry: Registry;
    rtmp: RtmpServer;
  }) {
    this.#config = options.config;
    this.#controlPlane = options.controlPlane;
    this.#storage = options.storage;
    this.#logger = options.logger;
    this.rtmp = options.rtmp;
    this.events = new TypedEmitter((error, event) =>
      this.#logger.error({ err: error, event }, 'ingest listener failed'),
    );
    this.origin = new LiveOrigin(
      {
        maxBlockedRequests: DEFAULT_MAX_BLOCKED_REQUESTS,
        windowSegments: this.#config.liveWindowSegments,
        onRequest: (kind) => this.#metrics.originRequests.inc({ kind }),
        edgeSecret: this.#config.edgeSecret,
      },
      this.#logger,
    );
    this.#metrics = registerIngestMetrics(options.registry, {
      liveStreams: () => this.#runs.size,
      slowestSpeed: () => this.#slowestSpeed(),
      uploadBacklogBytes: () => this.#uploadBacklogBytes(),
    });
    this.rtmp.events.on('publish', (request) => {
      this.#onPublish(request).catch((error: unknown) => {
        this.#logger.error({ err: error, session: request.id }, 'publish handling failed');
        request.close();
      });
    });
    this.rtmp.events.on('duplicatePublish', () =>
      this.#metrics.refusedPublishes.inc({ reason: 'duplicate' }),
    );
    this.#stopRevocations = this.#controlPlane.onKeyRevoked((keyId) => this.#onKeyRevoked(keyId));
  }

  /** Starts the RTMP server and returns a node ready for publishers. */
  static async start(options: {
    config: IngestConfig;
    controlPlane: IngestControlPlane;
    storage: ObjectStorage;
    logger: Logger;
    registry: Registry;
  }): Promise<IngestNode> {
    const { config } = options;
    const logger = options.logger.child({ component: 'ingest' });
    const rtmp = await RtmpServer.start({
      host: config.rtmpHost,
      port: config.rtmpPort,
      rtmps:
        config.rtmpsCertPath && config.rtmpsKeyPath
          ? { port: config.rtmpsPort, certPath: config.rtmpsCertPath, keyPath: config.rtmpsKeyPath }
          : undefined,
      logger,
      limits: rtmpLimits(config),
      registry: options.registry,
    });
    return new IngestNode({ ...options, logger, rtmp });
  }

  /** Streams being ingested, by stream id. */
  get liveStreamIds(): string[] {
    return [...this.#runs.values()].map((run) => run.grant.streamId);
  }

  /** Every stream being ingested, as the node replays them to the api after registering. */
  streams(): IngestedStream[] {
    return [...this.#runs.values()].map((run) => ({
      grant: run.grant,
      state: run.publisher.live ? 'live' : 'starting',
      renditions: run.transcoder.renditions.map(describeRendition),
    }));
  }

  /**
   * The node's load since the previous call: CPU of this process and its ffmpeg processes as a
   * share of the machine, streams, the slowest transcode speed, and bytes waiting for upload.
   */
  load(): NodeLoad {
    const runs = [...this.#runs.values()];
    const pids = runs.flatMap((run) =>
      run.transcoder.pid === undefined ? [] : [run.transcoder.pid],
    );
    return nodeLoadSchema.parse({
      cpu: this.#cpu.sample(pids),
      streams: runs.length,
      transcodeSpeed: this.#slowestSpeed(),
      uploadBacklogBytes: this.#uploadBacklogBytes(),
    });
  }

  // Bytes of segments of the live streams waiting for upload.
  #uploadBacklogBytes(): number {
    return [...this.#runs.values()].reduce((sum, run) => sum + run.publisher.backlogBytes, 0);
  }

  /** Ends every stream cleanly, then stops the RTMP server. */
  // The slowest speed ffmpeg reported among the live streams; 0 without streams.
  #slowestSpeed(): number {
    const speeds = [...this.#runs.values()].flatMap((run) =>
      run.speed === undefined ? [] : [run.speed],
    );
    return speeds.length > 0 ? Math.min(...speeds) : 0;
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    this.#stopRevocations();
    await Promise.all([...this.#runs.values()].map((run) => this.#end(run, 'node shutting down')));
    // Streams that were ending already (a bridge closed just before) finish too: their ffmpeg
    // exits and their uploads drain before the node does.
    await Promise.all(
      [...this.#draining].map(async (run) => {
        await run.stopTranscoder().catch(() => undefined);
        await run.publisher.end().catch(() => undefined);
      }),
    );
    await this.rtmp.stop();
  }

  async #onPublish(request: PublishRequest): Promise<void> {
    const log = this.#logger.child({ session: request.id, ip: request.ip });
    if (this.#stopping) {
      request.close();
      return;
    }
    if (request.app !== this.#config.app) {
      log.warn({ app: request.app }, 'publish refused: unknown application');
      this.#metrics.refusedPublishes.inc({ reason: 'app' });
      request.close();
      return;
    }
    let grant: PublishGrant;
    try {
      grant = await this.#controlPlane.authorizePublish(request.streamKey, { ip: request.ip });
    } catch (error) {
      const reason = error instanceof AppError ? error.code : 'internal';
      if (!(error instanceof AppError)) log.error({ err: error }, 'publish authorization failed');
      else log.warn({ reason }, 'publish refused');
      this.#metrics.refusedPublishes.inc({ reason });
      request.close();
      return;
    }
    // The publisher may now send media; it was held back while its key was checked.
    request.accept();
    const streamLog = log.child({ stream: grant.streamId, channel: grant.channel });
    const ended = (reason: string) =>
      this.#controlPlane.report({ kind: 'ended', streamId: grant.streamId, reason });
    // While the publisher's metadata arrives, a rotation of its key must still end it.
    this.#pending.set(request.id, { keyId: grant.keyId, request });
    let source: { width: number; height: number; fps: number } | undefined;
    try {
      source = await waitForVideoInfo(request);
    } finally {
      this.#pending.delete(request.id);
    }
    let closed = false;
    request.onClosed(() => {
      closed = true;
    });
    if (closed || this.#stopping || this.#revokedWhilePending.delete(request.id)) {
      request.close();
      ended(closed ? 'publisher left' : 'stream key revoked or node stopping');
      return;
    }
    if (!source) streamLog.warn('publisher sent no video metadata; assuming 720p30');
    let run: LiveRun;
    try {
      run = this.#startRun({
        grant,
        input: { subscribe: (sink) => request.subscribe(sink) },
        closeSource: () => request.close(),
        source: source ?? FALLBACK_SOURCE,
        passthrough: this.#config.passthrough,
        log: streamLog,
      });
    } catch (error) {
      streamLog.error({ err: error }, 'stream could not start');
      request.close();
      ended('stream could not start');
      return;
    }
    request.onClosed(() => void this.#end(run, 'publisher disconnected'));
  }

  /**
   * Starts transcoding a screen share that a voice node sends as RTP (`offer`, from
   * `sourceAddress`) under `grant`, into the same ladder and storage layout as an RTMP stream, no
   * rung above `source` (the channel's cap) nor above the share's capture the offer reports. Resolves with where the voice node must send; the stream runs until
   * `stopBridge`. ffmpeg restarts if it dies, on the same ports.
   */
  async startBridge(options: {
    grant: PublishGrant;
    offer: BridgeOffer;
    sourceAddress: string;
    source: SourceInfo;
  }): Promise<BridgeAnswer> {
    const { grant } = options;
    if (this.#stopping) throw new AppError('unavailable', 'the ingest node is stopping');
    if (this.#runs.has(grant.streamId)) {
      throw new AppError('conflict', `stream ${grant.streamId} already runs here`);
    }
    const offer = bridgeOfferSchema.parse(options.offer);
    const source = bridgeLadderSource(options.source, offer.capture);
    const log = this.#logger.child({
      stream: grant.streamId,
      channel: grant.channel,
      bridge: true,
    });
    const receiver = await BridgeReceiver.open({
      offer,
      host: this.#config.bridgeHost,
      sourceAddress: options.sourceAddress,
      range: this.#config.bridgePorts,
      logger: log,
    });
    try {
      const run = this.#startRun({
        grant,
        input: receiver.feed,
        closeSource: () => receiver.close(),
        source,
        // A share is VP8: there is no H.264 rung to copy.
        passthrough: false,
        log,
      });
      // A new ffmpeg, or one that could not decode, waits for a key frame: ask for it now.
      run.transcoder.events.on('restarted', () => receiver.requestKeyFrame('ffmpeg restarted'));
      run.transcoder.events.on('inputDamaged', () => receiver.requestKeyFrame('decode error'));
    } catch (error) {
      receiver.close();
      throw error;
    }
    return receiver.answer;
  }

  /** Ends a bridged stream: ffmpeg writes its last segments, the playlists get ENDLIST. */
  async stopBridge(streamId: string, reason: string): Promise<void> {
    const run = this.#runs.get(streamId);
    if (run) await this.#end(run, reason);
  }

  #startRun(options: {
    grant: PublishGrant;
    input: TranscoderOptions['input'];
    closeSource: () => void;
    source: SourceInfo;
    passthrough: boolean;
    log: Logger;
  }): LiveRun {
    const { grant, source, log, closeSource } = options;
    const workDir = path.join(this.#config.workDir, grant.streamId);
    fs.mkdirSync(workDir, { recursive: true });
    const transcoder = new Transcoder({
      input: options.input,
      workDir,
      source,
      segmentSeconds: this.#config.segmentSeconds,
      passthrough: options.passthrough,
      logger: log,
    });
    const renditions = transcoder.renditions;
    const publisher = new HlsPublisher({
      storage: this.#storage,
      prefix: grant.storagePrefix,
      streamId: grant.streamId,
      renditions,
      masterPlaylist: renderMasterPlaylist(renditions),
      liveWindowSegments: this.#config.liveWindowSegments,
      retainSegments: this.#config.retainSegments,
      keepVod: this.#config.keepVod,
      maxBacklogBytes: this.#config.spoolMaxBytes,
      deleteLocalFiles: true,
      logger: log,
    });
    const origin = this.origin.open(grant.storagePrefix, {
      streamId: grant.streamId,
      masterPlaylist: renderMasterPlaylist(renditions),
      segmentSeconds: this.#config.segmentSeconds,
      renditions: renditions.map((rendition) => ({
        name: rendition.name,
        partTargetSec: partPlanOf(rendition).partTargetSec,
      })),
    });
    const run = new LiveRun({ grant, closeSource, transcoder, publisher, origin });
    this.#runs.set(grant.streamId, run);
    // An earlier stream of the channel still draining must not overwrite this one's playlists.
    for (const earlier of this.#draining) {
      if (earlier.grant.channel === grant.channel) earlier.publisher.yieldLivePlaylists();
    }
    publisher.events.on('dropped', () => this.#metrics.droppedSegments.inc());
    transcoder.events.on('init', ({ rendition, run: ffmpegRun, bytes }) => {
      publisher.addInit(rendition, ffmpegRun, bytes);
      origin.setInit(rendition, ffmpegRun, bytes);
    });
    transcoder.events.on('part', ({ rendition, part, discontinuity }) =>
      origin.addPart(rendition, part, discontinuity),
    );
    transcoder.events.on('segment', (segment) => {
      origin.finishSegment(segment.rendition, {
        msn: segment.sequence,
        durationSec: segment.durationSec,
        programDateTime: segment.programDateTime,
      });
      publisher.addSegment(segment);
    });
    transcoder.events.on('speed', (speed) => {
      run.speed = speed;
      this.events.safeEmit('speed', { channel: grant.channel, speed });
    });
    transcoder.events.on('restarted', () => this.#metrics.transcoderRestarts.inc());
    transcoder.events.on('adapted', ({ reason }) => {
      this.events.safeEmit('adapted', { channel: grant.channel, reason });
      if (transcoder.renditions.length !== renditions.length) {
        publisher.replaceMasterPlaylist(renderMasterPlaylist(transcoder.renditions));
        origin.replaceMasterPlaylist(renderMasterPlaylist(transcoder.renditions));
        const kept = new Set(transcoder.renditions.map((rendition) => rendition.name));
        origin.end(renditions.map((r) => r.name).filter((name) => !kept.has(name)));
      }
    });
    transcoder.events.on('failed', (error) => {
      log.error({ err: error }, 'transcoder gave up; ending the stream');
      closeSource();
      void this.#end(run, 'transcoder failed');
    });
    publisher.events.on('uploaded', ({ kind, ms }) => {
      this.#metrics.uploadSeconds.observe({ kind }, ms / 1000);
      this.events.safeEmit('uploaded', { channel: grant.channel, kind, ms });
    });
    publisher.events.on('live', () =>
      this.#controlPlane.report({ kind: 'live', streamId: grant.streamId }),
    );
    this.#controlPlane.report({
      kind: 'started',
      streamId: grant.streamId,
      renditions: renditions.map(describeRendition),
    });
    transcoder.start().catch((error: unknown) => {
      // A publisher that left before ffmpeg encoded anything stops the transcoder on purpose.
      if (transcoder.state !== 'failed') return;
      log.error({ err: error }, 'ffmpeg could not start; ending the stream');
      closeSource();
      void this.#end(run, 'transcoder could not start');
    });
    log.info({ renditions: renditions.map((rendition) => rendition.name) }, 'stream started');
    return run;
  }

  // The stream ends for the streamer (and the api) once ffmpeg has stopped: a republish is
  // accepted at once, even while its last uploads wait for storage, which drain in the background.
  async #end(run: LiveRun, reason: string): Promise<void> {
    const streamId = run.grant.streamId;
    if (!this.#runs.has(streamId) || this.#draining.has(run)) return;
    this.#draining.add(run);
    try {
      await run.stopTranscoder();
    } catch (error) {
      this.#logger.error({ err: error, stream: streamId }, 'transcoder did not stop cleanly');
    } finally {
      run.closeSource();
    }
    this.#runs.delete(streamId);
    run.origin.end();
    this.#controlPlane.report({ kind: 'ended', streamId, reason });
    try {
      await run.publisher.end();
    } catch (error) {
      this.#logger.error({ err: error, stream: streamId }, 'stream did not end cleanly');
    } finally {
      // Storage holds the final playlists now; the edge reads them there.
      run.origin.close();
      this.#draining.delete(run);
      fs.rmSync(path.join(this.#config.workDir, streamId), { recursive: true, force: true });
    }
  }

  #onKeyRevoked(keyId: string): void {
    for (const [sessionId, pending] of this.#pending) {
      if (pending.keyId !== keyId) continue;
      this.#revokedWhilePending.add(sessionId);
      pending.request.close();
    }
    for (const run of this.#runs.values()) {
      if (run.grant.keyId !== keyId) continue;
      this.#logger.info({ stream: run.grant.streamId }, 'stream key revoked; ending its stream');
      run.closeSource();
      void this.#end(run, 'stream key revoked');
    }
  }
}

/** A rendition as players and dashboards see it. */
export function describeRendition(rendition: Rendition): RenditionInfo {
  return {
    name: rendition.name,
    width: rendition.width,
    height: rendition.height,
    fps: rendition.fps,
    bitrateKbps: rendition.videoBitrateKbps + rendition.audioBitrateKbps,
  };
}

async function waitForVideoInfo(
  request: PublishRequest,
): Promise<{ width: number; height: number; fps: number } | undefined> {
  const deadline = Date.now() + VIDEO_INFO_WAIT_MS;
  for (;;) {
    const info = request.videoInfo();
    if (info.width > 0 && info.height > 0 && info.fps > 0) return info;
    if (Date.now() > deadline) return undefined;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function registerIngestMetrics(
  registry: Registry,
  read: {
    liveStreams: () => number;
    slowestSpeed: () => number;
    uploadBacklogBytes: () => number;
  },
): IngestMetrics {
  const registers = [registry];
  // One series per node, not per channel: channel names are not for whoever reads /metrics, and
  // a label per stream would grow without bound.
  new Gauge({
    name: 'ingest_transcode_speed_min_ratio',
    help: 'ffmpeg speed (1 = real time) of the slowest live stream on this node; 0 without streams',
    registers,
    collect() {
      this.set(read.slowestSpeed());
    },
  });
  new Gauge({
    name: 'ingest_upload_backlog_bytes',
    help: 'Bytes of segments of the live streams on this node waiting for upload to storage',
    registers,
    collect() {
      this.set(read.uploadBacklogBytes());
    },
  });
  return {
    liveStreams: new Gauge({
      name: 'ingest_live_streams',
      help: 'Streams being transcoded on this node',
      registers,
      collect() {
        this.set(read.liveStreams());
      },
    }),
    refusedPublishes: new Counter({
      name: 'ingest_refused_publishes_total',
      help: 'Publish attempts refused, by reason',
      labelNames: ['reason'],
      registers,
    }),
    uploadSeconds: new Histogram({
      name: 'ingest_upload_seconds',
      help: 'Time to upload one object to storage',
      labelNames: ['kind'],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5],
      registers,
    }),
    droppedSegments: new Counter({
      name: 'ingest_dropped_segments_total',
      help: 'Segments dropped from a full upload spool during a storage outage',
      registers,
    }),
    originRequests: new Counter({
      name: 'ingest_origin_requests_total',
      help: 'Requests the LL-HLS origin answered for a live stream, by what they asked for',
      labelNames: ['kind'],
      registers,
    }),
    transcoderRestarts: new Counter({
      name: 'ingest_transcoder_restarts_total',
      help: 'ffmpeg processes restarted after dying mid-stream',
      registers,
    }),
  };
}
