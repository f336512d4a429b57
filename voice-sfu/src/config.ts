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
  VOICE_WORKER_LOG_LEVEL: 'workerLogLevel',
  VOICE_AUDIO_LEVEL_INTERVAL_MS: 'audioLevelIntervalMs',
  VOICE_SIGNALING_RATE: 'signalingRatePerSecond',
  VOICE_SIGNALING_BURST: 'signalingBurst',
};

/** Reads the voice-sfu settings from `VOICE_*` environment variables. */
export function loadVoiceConfig(env: Record<string, string | undefined>): VoiceConfig {
  return parseEnvConfig(voiceConfigSchema, env, 'VOICE_', envKeys);
}

/** Builds a full config from defaults plus overrides, for embedding and tests. */
export function voiceConfig(overrides: Partial<VoiceConfig> = {}): VoiceConfig {
  return voiceConfigSchema.parse(overrides);
}
