import type { Registry } from 'prom-client';
import type { Logger } from '@hearth/server-common';
import { VoiceNode, type VoiceConfig } from '@hearth/voice-sfu';
import { createApp, type ApiApp } from './app';
import { Authenticator } from './auth';
import { InMemoryChannelDirectory } from './channel-directory';
import type { ApiConfig } from './config';

/** The embedded platform: an in-process voice node behind the api. */
export interface Platform {
  /** The api, not listening yet. */
  app: ApiApp;
  /** The voice node it fronts. */
  voice: VoiceNode;
}

/** Starts the voice node and builds the api around it; the caller listens and shuts down. */
export async function startPlatform(options: {
  config: ApiConfig;
  voiceConfig: VoiceConfig;
  logger: Logger;
  registry: Registry;
}): Promise<Platform> {
  const { config, logger, registry } = options;
  const voice = await VoiceNode.start(
    options.voiceConfig,
    logger.child({ component: 'voice-sfu' }),
    registry,
  );
  const app = createApp({
    config,
    logger,
    voice,
    registry,
    channels: new InMemoryChannelDirectory(),
    authenticator: new Authenticator({
      guestAccess: config.guestAccess,
      guestGrants: config.guestGrants,
    }),
  });
  return { app, voice };
}
