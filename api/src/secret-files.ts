import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** File name of the operator token inside the data folder. */
export const ADMIN_TOKEN_FILE = 'admin-token';

/** File name of the embedded profile's JWT signing secret inside the data folder. */
export const JWT_SECRET_FILE = 'jwt-secret';

/** File name of the embedded profile's cluster secret inside the data folder. */
export const CLUSTER_SECRET_FILE = 'cluster-secret';

/** File name of the embedded profile's playback signing secret (private channels) inside it. */
export const PLAYBACK_SIGNING_SECRET_FILE = 'playback-signing-secret';

/** File name of the embedded profile's edge secret (its nginx edge to its ingest node) in it. */
export const EDGE_SECRET_FILE = 'edge-secret';

// Secrets are 32 random bytes as hex; a stored one shorter than this is not one of ours.
const MIN_STORED_SECRET_LENGTH = 32;

/**
 * Creates a fresh operator token for this run and writes it where the admin CLI finds it,
 * readable by the owner only.
 */
export function writeAdminToken(dataDir: string): string {
  return writeSecret(dataDir, ADMIN_TOKEN_FILE);
}

/**
 * Reads a secret the embedded profile keeps across restarts (the JWT signing secret, so people
 * stay signed in; the cluster secret, so voice nodes started later can read it), creating it on
 * first start. A missing or too short file gets a fresh secret; other read errors are real
 * problems.
 */
export function readOrCreateSecret(dataDir: string, fileName: string): string {
  const file = path.join(dataDir, fileName);
  let stored: string | undefined;
  try {
    stored = fs.readFileSync(file, 'utf8').trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  if (stored !== undefined && stored.length >= MIN_STORED_SECRET_LENGTH) return stored;
  return writeSecret(dataDir, fileName);
}

function writeSecret(dataDir: string, fileName: string): string {
  const secret = randomBytes(32).toString('hex');
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const file = path.join(dataDir, fileName);
  fs.writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  fs.chmodSync(file, 0o600);
  return secret;
}
