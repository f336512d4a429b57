import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '@hearth/server-common';
import { migrate } from '../../src/db/migrations';
import { PGLITE_DIR, openDatabase } from '../../src/db/open-database';
import { TestPostgres } from '../support/postgres';

const logger = createLogger('db-test', { level: 'silent' });

describe('openDatabase()', () => {
  let postgres: TestPostgres;
  let dataDir: string;

  beforeAll(async () => {
    postgres = await TestPostgres.start();
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-data-'));
  });
  afterAll(async () => {
    await postgres?.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('openDatabase() without a URL keeps PGlite in <dataDir>/pglite, and the data survives a reopen', async () => {
    const first = await openDatabase({ dataDir, logger });
    expect(first.backend).toBe('pglite');
    await migrate(first);
    await first.query(`INSERT INTO channels (name) VALUES ('persisted')`);
    await first.close();
    expect(fs.existsSync(path.join(dataDir, PGLITE_DIR, 'PG_VERSION'))).toBe(true);

    const second = await openDatabase({ dataDir, logger });
    expect(await migrate(second)).toEqual([]);
    expect(await second.query('SELECT name FROM channels')).toEqual([{ name: 'persisted' }]);
    await second.close();
  });

  it('openDatabase() with a URL connects to that PostgreSQL server', async () => {
    const db = await openDatabase({
      databaseUrl: await postgres.createDatabase(),
      dataDir,
      logger,
    });
    expect(db.backend).toBe('postgres');
    expect(await db.query('SELECT 41 + 1 AS answer')).toEqual([{ answer: 42 }]);
    await db.close();
    await db.close();
  });
});
