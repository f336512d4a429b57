import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { migrate, readMigrations } from '../../src/db/migrations';
import type { SqlClient } from '../../src/db/sql-client';
import { testBackends } from '../support/databases';

const TABLES = [
  'bans',
  'channels',
  'memberships',
  'refresh_tokens',
  'schema_migrations',
  'server_mutes',
  'session_history',
  'stream_history',
  'stream_keys',
  'users',
];

async function tableNames(db: SqlClient): Promise<string[]> {
  const rows = await db.query(
    `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'
     ORDER BY table_name`,
  );
  return rows.map((row) => String(row.table_name));
}

describe('readMigrations()', () => {
  it('readMigrations() lists the shipped scripts in order, starting with 001_initial', () => {
    const versions = readMigrations().map((migration) => migration.version);
    expect(versions[0]).toBe('001_initial');
    expect(versions).toEqual([...versions].sort());
  });

  it('readMigrations() refuses a script that does not follow the naming', () => {
    const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-migrations-'));
    try {
      fs.writeFileSync(path.join(directory, '001_ok.sql'), 'SELECT 1;');
      fs.writeFileSync(path.join(directory, 'later.sql'), 'SELECT 1;');
      expect(() => readMigrations(directory)).toThrow(/later\.sql must be named like/);
    } finally {
      fs.rmSync(directory, { recursive: true, force: true });
    }
  });
});

describe.each(testBackends())('migrate() on $name', (backend) => {
  const opened: SqlClient[] = [];
  const open = async () => {
    const db = await backend.open();
    opened.push(db);
    return db;
  };

  beforeAll(() => backend.setUp());
  afterEach(async () => {
    await Promise.all([...new Set(opened.splice(0))].map((db) => db.close()));
  });
  afterAll(() => backend.tearDown());

  it('migrate() creates every table and records each script once', async () => {
    const db = await open();
    expect(await migrate(db)).toEqual(readMigrations().map((migration) => migration.version));
    expect(await tableNames(db)).toEqual(TABLES);
    const recorded = await db.query('SELECT version FROM schema_migrations ORDER BY version');
    expect(recorded.map((row) => row.version)).toEqual(
      readMigrations().map((migration) => migration.version),
    );
  });

  it('migrate() run again applies nothing and keeps the data', async () => {
    const db = await open();
    await migrate(db);
    await db.query(`INSERT INTO channels (name) VALUES ('kept')`);
    expect(await migrate(db)).toEqual([]);
    expect(await db.query('SELECT name FROM channels')).toEqual([{ name: 'kept' }]);
    expect(await db.query('SELECT count(*)::int AS count FROM schema_migrations')).toEqual([
      { count: readMigrations().length },
    ]);
  });

  it('migrate() from two clients at once applies each script exactly once', async () => {
    const [first, second] = await backend.openPair();
    opened.push(first, second);
    const results = await Promise.all([migrate(first), migrate(second)]);
    expect(results.flat().sort()).toEqual(readMigrations().map((migration) => migration.version));
    expect(await tableNames(first)).toEqual(TABLES);
  });

  it('migrate() rolls a failing script back whole and records nothing', async () => {
    const db = await open();
    const broken = [
      { version: '001_good', sql: 'CREATE TABLE good (id int);' },
      { version: '002_bad', sql: 'CREATE TABLE bad (id int); SELECT no_such_function();' },
    ];
    await expect(migrate(db, broken)).rejects.toThrow(/no_such_function/);
    expect(await tableNames(db)).toEqual([]);
    expect(await migrate(db, broken.slice(0, 1))).toEqual(['001_good']);
    expect(await tableNames(db)).toEqual(['good', 'schema_migrations']);
  });

  it('the schema refuses unknown grants and a second username differing only in case', async () => {
    const db = await open();
    await migrate(db);
    const [user] = await db.query(
      `INSERT INTO users (username, display_name, password_hash) VALUES ('Ada', 'Ada', 'x')
       RETURNING id`,
    );
    await expect(
      db.query(
        `INSERT INTO users (username, display_name, password_hash) VALUES ('ada', 'a', 'x')`,
      ),
    ).rejects.toMatchObject({ code: '23505' });
    await expect(
      db.query(`INSERT INTO memberships (user_id, channel, grants) VALUES ($1, '*', $2)`, [
        user!.id,
        ['join', 'fly'],
      ]),
    ).rejects.toMatchObject({ code: '23514' });
  });
});
