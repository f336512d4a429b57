import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { ConfigError, MIN_CLUSTER_SECRET_LENGTH } from '@hearth/server-common';

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

/** File name of the generated cluster secret inside the data folder. */
export const CLUSTER_SECRET_FILE = 'cluster-secret';

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
  const file = path.join(options.dataDir, CLUSTER_SECRET_FILE);
  const stored = readSecret(file);
  if (stored) return stored;
  const secret = randomBytes(32).toString('hex');
  fs.mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
  fs.writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  fs.chmodSync(file, 0o600);
  return secret;
}

// A missing or too short file is replaced by a fresh secret; other read errors are real problems.
function readSecret(file: string): string | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8').trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  return text.length >= MIN_CLUSTER_SECRET_LENGTH ? text : undefined;
}
