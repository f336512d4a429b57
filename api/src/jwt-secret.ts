import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** File name of the embedded profile's JWT signing secret inside the data folder. */
export const JWT_SECRET_FILE = 'jwt-secret';

/**
 * Reads the embedded profile's JWT signing secret from the data folder, creating it (readable by
 * the owner only) on first start. Unlike the operator token it is kept across restarts, so people
 * stay signed in when the platform restarts.
 */
export function readOrCreateJwtSecret(dataDir: string): string {
  const file = path.join(dataDir, JWT_SECRET_FILE);
  if (fs.existsSync(file)) {
    const secret = fs.readFileSync(file, 'utf8').trim();
    if (secret.length >= 32) return secret;
  }
  const secret = randomBytes(32).toString('hex');
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  fs.writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  fs.chmodSync(file, 0o600);
  return secret;
}
