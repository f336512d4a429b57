import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { migrate, readMigrations } from '../../src/db/migrations';
import { PgliteClient } from '../../src/db/pglite-client';

// Creating a PGlite cluster takes seconds, loading a dump well under one. Dumps are kept in the
// temporary folder across test processes, named by everything that shapes them (the PGlite
// build and the migration scripts), so a changed schema or PGlite version makes new ones.
function pgliteVersion(): string {
  const entry = createRequire(import.meta.url).resolve('@electric-sql/pglite');
  const manifest = path.join(entry, '../../package.json');
  return (JSON.parse(fs.readFileSync(manifest, 'utf8')) as { version: string }).version;
}

function cacheFile(kind: string, migrated: boolean): string {
  const hash = createHash('sha256').update(pgliteVersion());
  if (migrated) {
    for (const migration of readMigrations()) hash.update(migration.version).update(migration.sql);
  }
  return path.join(os.tmpdir(), `hearth-pglite-${kind}-${hash.digest('hex').slice(0, 16)}.tar`);
}

async function cachedDump(file: string, build: (db: PgliteClient) => Promise<void>): Promise<Blob> {
  if (fs.existsSync(file)) return new Blob([fs.readFileSync(file)]);
  const db = await PgliteClient.open();
  try {
    await build(db);
    const dump = await db.dump();
    // Written aside and renamed, so a test process reading concurrently never sees half a file.
    const partial = `${file}.${process.pid}.partial`;
    fs.writeFileSync(partial, Buffer.from(await dump.arrayBuffer()));
    fs.renameSync(partial, file);
    return dump;
  } finally {
    await db.close();
  }
}

let empty: Promise<Blob> | undefined;
let migrated: Promise<Blob> | undefined;

/** A dump of an empty PGlite database, made once per machine and PGlite version. */
export function emptyTemplate(): Promise<Blob> {
  empty ??= cachedDump(cacheFile('empty', false), async () => undefined);
  return empty;
}

/** A dump of a PGlite database with every migration applied, made once per schema. */
export function migratedTemplate(): Promise<Blob> {
  migrated ??= cachedDump(cacheFile('migrated', true), async (db) => {
    await migrate(db);
  });
  return migrated;
}
