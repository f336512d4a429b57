import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** File name of the operator token inside the data folder. */
export const ADMIN_TOKEN_FILE = 'admin-token';

/**
 * Creates a fresh operator token for this run and writes it where the admin CLI finds it,
 * readable by the owner only.
 */
export function writeAdminToken(dataDir: string): string {
  const token = randomBytes(32).toString('hex');
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const file = path.join(dataDir, ADMIN_TOKEN_FILE);
  fs.writeFileSync(file, `${token}\n`, { mode: 0o600 });
  fs.chmodSync(file, 0o600);
  return token;
}
