import { z } from 'zod';
import { ConfigError, MIN_CLUSTER_SECRET_LENGTH } from '@hearth/server-common';
import { CLUSTER_SECRET_FILE, readOrCreateSecret } from '../secret-files';

/** Fields of the node registry and cluster settings, spread into the api config schema. */
export const nodesConfigShape = {
  /** Redis shared by the api instances (`redis://` or `rediss://`); in-process stores when unset. */
  redisUrl: z
    .url({ protocol: /^rediss?$/, error: 'must be a redis:// or rediss:// URL' })
    .optional(),
  /** Milliseconds without a heartbeat after which a node is marked down. */
  nodeTimeoutMs: z.coerce.number().int().min(100).max(600_000).default(3000),
  /** Milliseconds between failure-detector passes. */
  sweepIntervalMs: z.coerce.number().int().min(10).max(60_000).default(1000),
  /**
   * Secret shared by the api and its nodes (join tokens, node authentication); at least 32
   * characters. Required in production; the embedded profile generates one into the data folder.
   */
  clusterSecret: z.string().min(MIN_CLUSTER_SECRET_LENGTH).optional(),
};

/**
 * The cluster secret to use: the configured one; in production nothing else (a ConfigError
 * without it); in the embedded profile the one kept in the data folder, generated on first use
 * so that local nodes started later can read it.
 */
export function resolveClusterSecret(options: {
  profile: 'embedded' | 'production';
  dataDir: string;
  clusterSecret: string | undefined;
}): string {
  if (options.clusterSecret) return options.clusterSecret;
  if (options.profile === 'production') {
    throw new ConfigError(
      `invalid configuration: API_CLUSTER_SECRET is required in production (at least ${MIN_CLUSTER_SECRET_LENGTH} characters)`,
    );
  }
  return readOrCreateSecret(options.dataDir, CLUSTER_SECRET_FILE);
}
