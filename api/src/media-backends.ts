import path from 'node:path';
import type { Logger } from '@hearth/server-common';
import { nginxAvailable, startNginxEdge, type NginxProcess } from '@hearth/cdn-config';
import { EmbeddedS3Server, type IngestConfig, type S3Config } from '@hearth/stream-ingest';
import type { ApiConfig } from './config';

/** Where segments go and where viewers fetch them from. */
export interface MediaBackends {
  /** Base URL of HLS playback, without a trailing slash. */
  playbackBaseUrl: string;
  /** What runs for it, to print at start-up. */
  description: string;
  /** `S3_*` settings an ingest node process needs to write to this storage. */
  ingestEnv: Record<string, string>;
  /** Stops the embedded servers, if any. */
  close(): Promise<void>;
}

/**
 * Sets up HLS storage and delivery. With `S3_ENDPOINT` (or AWS credentials) and a CDN base URL,
 * it uses them. In the embedded profile without them, it runs a real S3-compatible server
 * (s3rver) on loopback and, when Debian's nginx is present, an nginx caching edge in front of it.
 */
export async function startMediaBackends(options: {
  config: ApiConfig;
  ingest: IngestConfig;
  s3: S3Config;
  logger: Logger;
}): Promise<MediaBackends> {
  const { config, ingest, logger } = options;
  if (ingest.storage === 'local') {
    if (!config.cdnBaseUrl) {
      throw new Error('INGEST_STORAGE=local needs API_CDN_BASE_URL: a web server for its folder');
    }
    return {
      playbackBaseUrl: trimSlash(config.cdnBaseUrl),
      description: `local folder ${ingest.localStorageDir}`,
      ingestEnv: {},
      close: async () => undefined,
    };
  }
  let s3 = options.s3;
  let embedded: EmbeddedS3Server | undefined;
  if (s3.endpoint === undefined && config.profile === 'embedded') {
    embedded = await EmbeddedS3Server.start({
      directory: path.join(config.dataDir, 's3'),
      bucket: s3.bucket,
      port: config.embeddedS3Port,
    });
    s3 = { ...s3, endpoint: embedded.endpoint, ...embedded.credentials };
  }
  let edge: NginxProcess | undefined;
  try {
    if (!config.cdnBaseUrl && embedded && nginxAvailable()) {
      edge = await startNginxEdge({
        originUrl: embedded.endpoint,
        bucket: s3.bucket,
        port: config.edgePort,
        playbackSigningSecret: config.playbackSigningSecret,
        // The embedded ingest node is the origin of live playlists and parts (LL-HLS).
        liveOriginUrl: config.embeddedIngest
          ? `http://127.0.0.1:${config.embeddedIngestHttpPort}`
          : undefined,
        liveOriginSecret: config.embeddedIngest ? config.edgeSecret : undefined,
      });
      if (edge.replacedStalePids.length > 0) {
        logger.warn({ pids: edge.replacedStalePids }, 'replaced a CDN edge an earlier run left');
      }
    }
  } catch (error) {
    await embedded?.stop();
    throw error;
  }
  const playbackBaseUrl = trimSlash(
    config.cdnBaseUrl ?? edge?.url ?? `${s3.endpoint ?? 'https://s3.amazonaws.com'}/${s3.bucket}`,
  );
  if (embedded && !edge && !config.cdnBaseUrl) {
    logger.warn('nginx is not installed: viewers fetch HLS from the S3 server directly');
  }
  return {
    ingestEnv: Object.fromEntries(
      Object.entries({
        S3_ENDPOINT: s3.endpoint,
        S3_REGION: s3.region,
        S3_BUCKET: s3.bucket,
        S3_ACCESS_KEY_ID: s3.accessKeyId,
        S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
        S3_FORCE_PATH_STYLE: String(s3.forcePathStyle),
      }).filter((entry): entry is [string, string] => entry[1] !== undefined),
    ),
    playbackBaseUrl,
    description: [
      embedded ? `S3 (s3rver) at ${embedded.endpoint}` : `S3 at ${s3.endpoint ?? 'AWS'}`,
      edge ? `nginx edge at ${edge.url}` : undefined,
    ]
      .filter(Boolean)
      .join(', '),
    async close() {
      await edge?.stop();
      await embedded?.stop();
    },
  };
}

function trimSlash(url: string): string {
  return url.replace(/\/+$/, '');
}
