import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { edgeSecretSchema } from '@hearth/cdn-config';
import { parseEnvConfig } from '@hearth/server-common';
import { DEFAULT_BRIDGE_PORT_RANGE } from './bridge-input';
import { DEFAULT_RTMP_LIMITS, type RtmpLimits } from './rtmp-guard';

const flag = z
  .enum(['true', 'false', '1', '0'])
  .transform((value) => value === 'true' || value === '1');
const port = z.coerce.number().int().min(0).max(65535);
const bytes = z.coerce.number().int().min(1024).max(0xffffff);
const count = z.coerce.number().int().min(1).max(1_000_000);
const millis = z.coerce.number().int().min(100).max(600_000);

/** Settings of an ingest node. */
export const ingestConfigSchema = z
  .object({
    /** Address the RTMP server binds. */
    rtmpHost: z.string().min(1).default('127.0.0.1'),
    /** Plain RTMP port. */
    rtmpPort: port.default(1935),
    /** RTMPS port; RTMPS is on when a certificate and key are configured. */
    rtmpsPort: port.default(1936),
    /** PEM certificate for RTMPS. */
    rtmpsCertPath: z.string().optional(),
    /** PEM private key for RTMPS. */
    rtmpsKeyPath: z.string().optional(),
    /** Address share bridges are received on: where voice nodes send their RTP. */
    bridgeHost: z.ipv4().default('127.0.0.1'),
    /** UDP ports share bridges are received on, `min-max`: an even RTP port, RTCP on the next. */
    bridgePorts: z
      .string()
      .regex(/^\d+-\d+$/, { error: 'must be min-max, e.g. 40000-40999' })
      .transform((text) => {
        const [min, max] = text.split('-').map(Number) as [number, number];
        return { min: min + (min % 2), max };
      })
      .refine((range) => range.min >= 1024 && range.max <= 65535 && range.max - range.min >= 1, {
        error: 'must hold at least one even port and the next, between 1024 and 65535',
      })
      .default(DEFAULT_BRIDGE_PORT_RANGE),
    /** RTMP application name in OBS's server URL. */
    app: z
      .string()
      .regex(/^[a-zA-Z0-9_-]+$/)
      .default('live'),
    /** HLS segment length in seconds. */
    segmentSeconds: z.coerce.number().int().min(1).max(10).default(2),
    /** Adds a passthrough rung carrying the source video as it is. */
    passthrough: flag.default(false),
    /** Local folder ffmpeg writes into before upload. */
    workDir: z.string().default(path.join(os.tmpdir(), 'hearth-ingest')),
    /** Segments listed in a live media playlist. */
    liveWindowSegments: z.coerce.number().int().min(3).max(60).default(6),
    /** Segments kept in storage per rendition while live; older ones are deleted. */
    retainSegments: z.coerce.number().int().min(6).max(100_000).default(30),
    /** Keeps every segment and publishes a VOD playlist when the stream ends. */
    keepVod: flag.default(false),
    /**
     * Bytes of segments one stream may keep on disk waiting for storage (an S3 outage); past it
     * the oldest waiting segments are dropped and counted. 512 MiB is about 9 minutes of a full
     * 1080p60 ladder.
     */
    spoolMaxBytes: z.coerce
      .number()
      .int()
      .min(16 * 1024 * 1024)
      .default(512 * 1024 * 1024),
    /** Where segments go: an S3-compatible bucket or a local folder. */
    storage: z.enum(['s3', 'local']).default('s3'),
    /** Folder of the local storage provider. */
    localStorageDir: z.string().default(path.join(process.cwd(), '.data', 'hls')),
    /** Largest RTMP message before a publish is authorized, in bytes. */
    rtmpMaxMessageBytesBeforePublish: bytes.default(
      DEFAULT_RTMP_LIMITS.maxMessageBytesBeforePublish,
    ),
    /** Largest RTMP message of an authorized publisher, in bytes (RTMP's own ceiling is 16 MiB). */
    rtmpMaxMessageBytes: bytes.default(DEFAULT_RTMP_LIMITS.maxMessageBytes),
    /** RTMP chunk streams one connection may open. */
    rtmpMaxChunkStreams: z.coerce
      .number()
      .int()
      .min(4)
      .max(1024)
      .default(DEFAULT_RTMP_LIMITS.maxChunkStreams),
    /** RTMP connections open at once. */
    rtmpMaxConnections: count.default(DEFAULT_RTMP_LIMITS.maxConnections),
    /** RTMP connections open at once from one address (a TCP balancer counts as one address). */
    rtmpMaxConnectionsPerAddress: count.default(DEFAULT_RTMP_LIMITS.maxConnectionsPerAddress),
    /** Milliseconds from accept to the end of the RTMP handshake. */
    rtmpHandshakeTimeoutMs: millis.default(DEFAULT_RTMP_LIMITS.handshakeTimeoutMs),
    /** Milliseconds from accept until the publish is authorized. */
    rtmpPublishTimeoutMs: millis.default(DEFAULT_RTMP_LIMITS.publishTimeoutMs),
    /** Milliseconds an RTMP connection may stay silent. */
    rtmpIdleTimeoutMs: millis.default(DEFAULT_RTMP_LIMITS.idleTimeoutMs),
    /**
     * Secret the CDN edge sends its LL-HLS origin requests with (X-Hearth-Edge-Secret). With it,
     * the origin answers only requests carrying it; without it, the origin serves public
     * channels only, and private ones are read from S3 through their signed paths.
     */
    edgeSecret: edgeSecretSchema.optional(),
  })
  .refine(
    (config) => (config.rtmpsCertPath === undefined) === (config.rtmpsKeyPath === undefined),
    {
      message: 'INGEST_RTMPS_CERT and INGEST_RTMPS_KEY go together',
    },
  )
  .refine((config) => config.retainSegments >= config.liveWindowSegments, {
    message: 'INGEST_RETAIN_SEGMENTS must be at least INGEST_LIVE_WINDOW',
  })
  .refine((config) => config.rtmpMaxMessageBytes >= config.rtmpMaxMessageBytesBeforePublish, {
    message:
      'INGEST_RTMP_MAX_MESSAGE_BYTES must be at least INGEST_RTMP_MAX_MESSAGE_BYTES_BEFORE_PUBLISH',
  });

/** Settings of an ingest node. */
export type IngestConfig = z.infer<typeof ingestConfigSchema>;

/** The RTMP server's limits from an ingest config. */
export function rtmpLimits(config: IngestConfig): RtmpLimits {
  return {
    maxMessageBytesBeforePublish: config.rtmpMaxMessageBytesBeforePublish,
    maxMessageBytes: config.rtmpMaxMessageBytes,
    maxChunkStreams: config.rtmpMaxChunkStreams,
    maxConnections: config.rtmpMaxConnections,
    maxConnectionsPerAddress: config.rtmpMaxConnectionsPerAddress,
    handshakeTimeoutMs: config.rtmpHandshakeTimeoutMs,
    publishTimeoutMs: config.rtmpPublishTimeoutMs,
    idleTimeoutMs: config.rtmpIdleTimeoutMs,
  };
}

/** Settings of the S3-compatible storage. */
export const s3ConfigSchema = z.object({
  /** Endpoint URL; unset means AWS itself. */
  endpoint: z.url().optional(),
  /** Region. */
  region: z.string().default('us-east-1'),
  /** Bucket that holds the playlists and segments. */
  bucket: z.string().min(3).default('hearth'),
  /** Access key id. */
  accessKeyId: z.string().optional(),
  /** Secret access key. */
  secretAccessKey: z.string().optional(),
  /** Path-style addressing, which most S3-compatible servers need. */
  forcePathStyle: flag.default(true),
});

/** Settings of the S3-compatible storage. */
export type S3Config = z.infer<typeof s3ConfigSchema>;

/** Reads the ingest settings from `INGEST_*` environment variables. */
export function loadIngestConfig(env: Record<string, string | undefined>): IngestConfig {
  return parseEnvConfig(ingestConfigSchema, env, 'INGEST_', ingestEnvKeys, nodeEnvKeys);
}

const ingestEnvKeys: Record<string, keyof IngestConfig> = {
  INGEST_RTMP_HOST: 'rtmpHost',
  INGEST_BRIDGE_HOST: 'bridgeHost',
  INGEST_BRIDGE_PORTS: 'bridgePorts',
  INGEST_RTMP_PORT: 'rtmpPort',
  INGEST_RTMPS_PORT: 'rtmpsPort',
  INGEST_RTMPS_CERT: 'rtmpsCertPath',
  INGEST_RTMPS_KEY: 'rtmpsKeyPath',
  INGEST_APP: 'app',
  INGEST_SEGMENT_SECONDS: 'segmentSeconds',
  INGEST_PASSTHROUGH: 'passthrough',
  INGEST_WORK_DIR: 'workDir',
  INGEST_LIVE_WINDOW: 'liveWindowSegments',
  INGEST_RETAIN_SEGMENTS: 'retainSegments',
  INGEST_KEEP_VOD: 'keepVod',
  INGEST_SPOOL_MAX_BYTES: 'spoolMaxBytes',
  INGEST_STORAGE: 'storage',
  INGEST_LOCAL_STORAGE_DIR: 'localStorageDir',
  INGEST_RTMP_MAX_MESSAGE_BYTES_BEFORE_PUBLISH: 'rtmpMaxMessageBytesBeforePublish',
  INGEST_RTMP_MAX_MESSAGE_BYTES: 'rtmpMaxMessageBytes',
  INGEST_RTMP_MAX_CHUNK_STREAMS: 'rtmpMaxChunkStreams',
  INGEST_RTMP_MAX_CONNECTIONS: 'rtmpMaxConnections',
  INGEST_RTMP_MAX_CONNECTIONS_PER_ADDRESS: 'rtmpMaxConnectionsPerAddress',
  INGEST_RTMP_HANDSHAKE_TIMEOUT_MS: 'rtmpHandshakeTimeoutMs',
  INGEST_RTMP_PUBLISH_TIMEOUT_MS: 'rtmpPublishTimeoutMs',
  INGEST_RTMP_IDLE_TIMEOUT_MS: 'rtmpIdleTimeoutMs',
  INGEST_EDGE_SECRET: 'edgeSecret',
};

/** Settings of a standalone ingest node process: its link to the api and its own HTTP port. */
export const ingestNodeConfigSchema = z.object({
  /** Id the node registers under; unique in the cluster. */
  nodeId: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,128}$/)
    .default(`ingest-${os.hostname()}`),
  /** Address of the HTTP server for `/health` and `/metrics`. */
  httpHost: z.string().min(1).default('127.0.0.1'),
  /** Port of that HTTP server; 0 picks a free one. */
  httpPort: port.default(4490),
  /** Base URL of the api the node registers with. */
  apiUrl: z.url({ protocol: /^https?$/ }).default('http://127.0.0.1:8080'),
  /** Secret shared with the api: authenticates the node on its control socket. */
  clusterSecret: z.string().min(32),
  /** RTMP URL streamers use for this node (or for the balancer in front of it). */
  publicRtmpUrl: z.url({ protocol: /^rtmps?$/ }).optional(),
  /**
   * Where the CDN edge reaches this node's LL-HLS origin (its HTTP server), as the api tells the
   * edge; by default its HTTP address, unless that is a wildcard one.
   */
  originUrl: z.url({ protocol: /^https?$/ }).optional(),
  /** Streams the node transcodes at once; placement sends no more. */
  maxStreams: z.coerce.number().int().min(1).optional(),
  /** Milliseconds between load reports to the api. */
  heartbeatMs: z.coerce.number().int().min(100).max(10_000).default(1000),
  /** Milliseconds a SIGTERM may take to end the streams before the process exits anyway. */
  stopTimeoutMs: millis.default(20_000),
  /** Log level. */
  logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'silent']).default('info'),
});

/** Settings of a standalone ingest node process. */
export type IngestNodeConfig = z.infer<typeof ingestNodeConfigSchema>;

const nodeEnvKeys: Record<string, keyof IngestNodeConfig> = {
  INGEST_NODE_ID: 'nodeId',
  INGEST_HTTP_HOST: 'httpHost',
  INGEST_HTTP_PORT: 'httpPort',
  INGEST_API_URL: 'apiUrl',
  INGEST_CLUSTER_SECRET: 'clusterSecret',
  INGEST_PUBLIC_RTMP_URL: 'publicRtmpUrl',
  INGEST_ORIGIN_URL: 'originUrl',
  INGEST_MAX_STREAMS: 'maxStreams',
  INGEST_HEARTBEAT_MS: 'heartbeatMs',
  INGEST_STOP_TIMEOUT_MS: 'stopTimeoutMs',
  INGEST_LOG_LEVEL: 'logLevel',
};

/** Reads the standalone process settings from `INGEST_*` environment variables. */
export function loadIngestNodeConfig(env: Record<string, string | undefined>): IngestNodeConfig {
  return parseEnvConfig(ingestNodeConfigSchema, env, 'INGEST_', nodeEnvKeys, ingestEnvKeys);
}

/** Reads the S3 settings from `S3_*` environment variables. */
export function loadS3Config(env: Record<string, string | undefined>): S3Config {
  return parseEnvConfig(s3ConfigSchema, env, 'S3_', {
    S3_ENDPOINT: 'endpoint',
    S3_REGION: 'region',
    S3_BUCKET: 'bucket',
    S3_ACCESS_KEY_ID: 'accessKeyId',
    S3_SECRET_ACCESS_KEY: 'secretAccessKey',
    S3_FORCE_PATH_STYLE: 'forcePathStyle',
  });
}

/** Builds a full ingest config from defaults plus raw overrides, for embedding and tests. */
export function ingestConfig(overrides: Record<string, string | undefined> = {}): IngestConfig {
  return ingestConfigSchema.parse(overrides);
}
