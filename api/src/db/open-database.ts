import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '@hearth/server-common';
import { PgliteClient } from './pglite-client';
import { PostgresClient, type PostgresTimeouts } from './postgres-client';
import type { SqlClient } from './sql-client';

/** Folder of the embedded database inside the data folder. */
export const PGLITE_DIR = 'pglite';

/**
 * Opens the configured database, not migrated yet: a PostgreSQL server when `databaseUrl` is set,
 * otherwise the embedded PGlite database in `<dataDir>/pglite`. A server's connections and
 * statements are bounded by `timeouts` (`API_DB_CONNECT_TIMEOUT_MS`, `API_DB_STATEMENT_TIMEOUT_MS`),
 * by their defaults when left out.
 */
export async function openDatabase(options: {
  databaseUrl?: string | undefined;
  dataDir: string;
  logger: Logger;
  timeouts?: PostgresTimeouts;
}): Promise<SqlClient> {
  const { databaseUrl, dataDir, logger } = options;
  if (databaseUrl !== undefined) {
    return new PostgresClient(
      databaseUrl,
      (error) => logger.error({ err: error }, 'idle database connection failed'),
      options.timeouts,
    );
  }
  const directory = path.join(dataDir, PGLITE_DIR);
  fs.mkdirSync(directory, { recursive: true, mode: 0o700 });
  return PgliteClient.open({ dataDir: directory });
}
