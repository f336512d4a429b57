import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { parseRows, type SqlClient } from './sql-client';

/** Folder of the numbered migration scripts, applied in file-name order. */
export const MIGRATIONS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'migrations');

// Every api instance takes this transaction-scoped advisory lock before looking at the schema, so
// instances starting together apply each migration exactly once. The number is arbitrary but
// fixed: it names the lock across processes.
const MIGRATION_LOCK_ID = 4_711_202_401;

const MIGRATION_FILE = /^(\d{3,})_[a-z0-9_]+\.sql$/;

/** One migration script. */
export interface Migration {
  /** File name without `.sql`, e.g. `001_initial`; recorded once applied. */
  readonly version: string;
  /** The SQL script. */
  readonly sql: string;
}

/** Reads the migration scripts of a folder in order; refuses files that do not fit the naming. */
export function readMigrations(directory: string = MIGRATIONS_DIR): Migration[] {
  return fs
    .readdirSync(directory)
    .filter((file) => file.endsWith('.sql'))
    .sort()
    .map((file) => {
      if (!MIGRATION_FILE.test(file)) {
        throw new Error(`migration ${file} must be named like 001_description.sql`);
      }
      return {
        version: file.slice(0, -'.sql'.length),
        sql: fs.readFileSync(path.join(directory, file), 'utf8'),
      };
    });
}

const appliedRowSchema = z.object({ version: z.string() });

/**
 * Applies the migrations the database lacks, in order, in one transaction under an advisory lock,
 * and records each in `schema_migrations`. Resolves with the versions it applied: none when the
 * schema is current.
 */
export async function migrate(
  db: SqlClient,
  migrations: readonly Migration[] = readMigrations(),
): Promise<string[]> {
  return db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_ID]);
    await tx.exec(
      `CREATE TABLE IF NOT EXISTS schema_migrations (
         version text PRIMARY KEY,
         applied_at timestamptz NOT NULL DEFAULT now()
       )`,
    );
    const applied = new Set(
      parseRows(appliedRowSchema, await tx.query('SELECT version FROM schema_migrations')).map(
        (row) => row.version,
      ),
    );
    const pending = migrations.filter((migration) => !applied.has(migration.version));
    for (const migration of pending) {
      await tx.exec(migration.sql);
      await tx.query('INSERT INTO schema_migrations (version) VALUES ($1)', [migration.version]);
    }
    return pending.map((migration) => migration.version);
  });
}
