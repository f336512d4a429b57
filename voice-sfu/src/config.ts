import os from 'node:os';
import { z } from 'zod';
import { parseEnvConfig } from '@hearth/server-common';

const port = z.coerce.number().int().min(0).max(65535);

/** Settings of a voice-sfu node. */
export const voiceConfigSchema = z.object({
  /** Number of mediasoup workers; one per CPU by default. */
  numWorkers: z.coerce
    .number()
    .int()
    .min(1)
    .max(64)
    .default(Math.max(1, os.availableParallelism())),
  /** Local address the WebRtcServers listen on. */
  listenIp: z.ipv4().or(z.ipv6()).default('127.0.0.1'),
  /** Address or host name announced in ICE candidates when it differs from listenIp (NAT). */
  announcedAddress: z.string().min(1).optional(),
  /** First RTC port: worker i listens on UDP and TCP port `rtcBasePort + i`; 0 picks free ports. */
  rtcBasePort: port.default(40000),
  /** Most consumers an edge router admits before a new edge opens. */
  maxConsumersPerEdge: z.coerce.number().int().min(1).max(100000).default(400),
  /** Milliseconds a share's layer goes unwanted before its sharer is told to stop sending it. */
  shareLayerIdleMs: z.coerce.number().int().min(100).max(600_000).default(5000),
  /**
   * Bandwidth estimate a viewer's receive transport starts from, in bit/s, before feedback has
   * measured its path: high enough that a desktop share's top layer (1 to 2 Mbit/s of text) is
   * sent from the start instead of after seconds of ramping up; estimation lowers it for a
   * weaker link.
   */
  viewerStartBitrate: z.coerce.number().int().min(100_000).max(100_000_000).default(2_000_000),
  /** Screen shares one channel holds at once. */
  maxSharesPerChannel: z.coerce.number().int().min(0).max(16).default(3),
  /** mediasoup worker log level. */
  workerLogLevel: z.enum(['debug', 'warn', 'error', 'none']).default('warn'),
  /** Audio level observer interval, in milliseconds. */
  audioLevelIntervalMs: z.coerce.number().int().min(100).max(5000).default(250),
  /** Sustained signaling requests per second allowed to one connection. */
  signalingRatePerSecond: z.coerce.number().int().min(1).max(10000).default(50),
  /** Burst of signaling requests allowed above the sustained rate. */
  signalingBurst: z.coerce.number().int().min(1).max(10000).default(100),
});

/** Settings of a voice-sfu node. */
export type VoiceConfig = z.infer<typeof voiceConfigSchema>;

const envKeys: Record<string, keyof VoiceConfig> = {
  VOICE_WORKERS: 'numWorkers',
  VOICE_LISTEN_IP: 'listenIp',
  VOICE_ANNOUNCED_ADDRESS: 'announcedAddress',
  VOICE_RTC_BASE_PORT: 'rtcBasePort',
  VOICE_MAX_CONSUMERS_PER_EDGE: 'maxConsumersPerEdge',
  VOICE_MAX_SHARES: 'maxSharesPerChannel',
  VOICE_SHARE_LAYER_IDLE_MS: 'shareLayerIdleMs',
  VOICE_VIEWER_START_BITRATE: 'viewerStartBitrate',
  VOICE_WORKER_LOG_LEVEL: 'workerLogLevel',
  VOICE_AUDIO_LEVEL_INTERVAL_MS: 'audioLevelIntervalMs',
  VOICE_SIGNALING_RATE: 'signalingRatePerSecond',
  VOICE_SIGNALING_BURST: 'signalingBurst',
};

/** Reads the voice-sfu settings from `VOICE_*` environment variables. */
export function loadVoiceConfig(env: Record<string, string | undefined>): VoiceConfig {
  return parseEnvConfig(voiceConfigSchema, without(env, serverEnvKeys), 'VOICE_', envKeys);
}

/** Builds a full config from defaults plus overrides, for embedding and tests. */
export function voiceConfig(overrides: Partial<VoiceConfig> = {}): VoiceConfig {
  return voiceConfigSchema.parse(overrides);
}

/** Settings of a standalone voice-sfu process: its own HTTP port and its link to the api. */
export const voiceServerConfigSchema = z
  .object({
    /** Id the node registers under; unique in the cluster. */
    nodeId: z
      .string()
      .regex(/^[A-Za-z0-9_.-]{1,128}$/)
      .default(`voice-${os.hostname()}`),
    /** Address the signaling and metrics HTTP server binds. */
    host: z.string().min(1).default('127.0.0.1'),
    /** Port of the signaling WebSocket (`/ws`), `/metrics` and `/health`. */
    port: port.default(4480),
    /** ws/wss URL clients reach the signaling endpoint at; defaults to host and port. */
    publicUrl: z.url({ protocol: /^wss?$/ }).optional(),
    /** Base URL of the api the node registers with. */
    apiUrl: z.url({ protocol: /^https?$/ }).default('http://127.0.0.1:8080'),
    /** Secret shared with the api: authenticates the node and signs join tokens. */
    clusterSecret: z.string().min(32),
    /** Participants the node accepts; placement sends no more. */
    maxParticipants: z.coerce.number().int().min(1).optional(),
    /** Consumers the node carries; placement sends no more participants past it. */
    maxConsumers: z.coerce.number().int().min(1).optional(),
    /** Milliseconds between load reports to the api. */
    heartbeatMs: z.coerce.number().int().min(100).max(10000).default(1000),
    /** Log level. */
    logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'silent']).default('info'),
  })
  .transform((config) => ({
    ...config,
    publicUrl: config.publicUrl ?? `ws://${config.host}:${config.port}/ws`,
  }));

/** Settings of a standalone voice-sfu process. */
export type VoiceServerConfig = z.output<typeof voiceServerConfigSchema>;

const serverEnvKeys: Record<string, string> = {
  VOICE_NODE_ID: 'nodeId',
  VOICE_HOST: 'host',
  VOICE_PORT: 'port',
  VOICE_PUBLIC_URL: 'publicUrl',
  VOICE_API_URL: 'apiUrl',
  VOICE_CLUSTER_SECRET: 'clusterSecret',
  VOICE_MAX_PARTICIPANTS: 'maxParticipants',
  VOICE_MAX_CONSUMERS: 'maxConsumers',
  VOICE_HEARTBEAT_MS: 'heartbeatMs',
  VOICE_LOG_LEVEL: 'logLevel',
};

/** Reads the standalone process settings from `VOICE_*` environment variables. */
export function loadVoiceServerConfig(env: Record<string, string | undefined>): VoiceServerConfig {
  return parseEnvConfig(voiceServerConfigSchema, without(env, envKeys), 'VOICE_', serverEnvKeys);
}

// Both settings groups share the VOICE_ prefix; each reads its own and leaves the other's alone.
function without(
  env: Record<string, string | undefined>,
  keys: Record<string, string>,
): Record<string, string | undefined> {
  return Object.fromEntries(Object.entries(env).filter(([name]) => !(name in keys)));
}
