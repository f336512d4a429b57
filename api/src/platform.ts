import type { Registry } from 'prom-client';
import type { Logger } from '@hearth/server-common';
import { IngestNode, type IngestConfig, type ObjectStorage } from '@hearth/stream-ingest';
import { VoiceNode, type VoiceConfig } from '@hearth/voice-sfu';
import { createApp, type ApiApp } from './app';
import { Authenticator } from './auth';
import { InMemoryChannelDirectory } from './channel-directory';
import type { ApiConfig } from './config';
import { InMemoryStreamKeyStore } from './streams/stream-keys';
import { StreamService, type StreamUrls } from './streams/stream-service';

/** The embedded platform: in-process voice and ingest nodes behind the api. */
export interface Platform {
  /** The api, not listening yet. */
  app: ApiApp;
  /** The voice node it fronts. */
  voice: VoiceNode;
  /** Stream keys and live streams. */
  streams: StreamService;
  /** The ingest node, when one runs in this process. */
  ingest: IngestNode | undefined;
  /** Ends live streams cleanly and stops the nodes; the caller closes the HTTP server. */
  close(): Promise<void>;
}

/** Starts the nodes and builds the api around them; the caller listens and shuts down. */
export async function startPlatform(options: {
  config: ApiConfig;
  voiceConfig: VoiceConfig;
  logger: Logger;
  registry: Registry;
  streamUrls: StreamUrls;
  /** Runs an ingest node in this process, writing to this storage. */
  ingest?: { config: IngestConfig; storage: ObjectStorage };
}): Promise<Platform> {
  const { config, logger, registry } = options;
  const voice = await VoiceNode.start(
    options.voiceConfig,
    logger.child({ component: 'voice-sfu' }),
    registry,
  );
  const channels = new InMemoryChannelDirectory();
  const streams = new StreamService({
    keys: new InMemoryStreamKeyStore(),
    channels,
    urls: options.streamUrls,
    logger,
  });
  let ingest: IngestNode | undefined;
  try {
    ingest = options.ingest
      ? await IngestNode.start({
          config: options.ingest.config,
          storage: options.ingest.storage,
          controlPlane: streams,
          logger,
          registry,
        })
      : undefined;
  } catch (error) {
    voice.close();
    throw error;
  }
  const app = createApp({
    config,
    logger,
    voice,
    registry,
    channels,
    streams,
    authenticator: new Authenticator({
      guestAccess: config.guestAccess,
      guestGrants: config.guestGrants,
      adminToken: config.adminToken,
    }),
  });
  return {
    app,
    voice,
    streams,
    ingest,
    async close() {
      await ingest?.stop();
      voice.close();
    },
  };
}
