import { PgliteClient } from '../../src/db/pglite-client';
import { PostgresClient } from '../../src/db/postgres-client';
import type { SqlClient } from '../../src/db/sql-client';
import { emptyTemplate } from './pglite-templates';
import { TestPostgres } from './postgres';

/** One database implementation the data-layer tests run against. */
export interface TestBackend {
  /** `pglite` or `postgres`, for test names. */
  readonly name: SqlClient['backend'];
  /** Starts what the backend needs (a PostgreSQL server); call in `beforeAll`. */
  setUp(): Promise<void>;
  /** A new, empty database (no migrations applied); the caller closes it. */
  open(): Promise<SqlClient>;
  /**
   * Two clients of one new, empty database, standing in for two api instances. PGlite lives in
   * one process, so both are the same client there; the caller closes both.
   */
  openPair(): Promise<[SqlClient, SqlClient]>;
  /** Stops what `setUp` started; call in `afterAll`. */
  tearDown(): Promise<void>;
}

async function emptyPglite(): Promise<PgliteClient> {
  return PgliteClient.open({ loadDataDir: await emptyTemplate() });
}

function pgliteBackend(): TestBackend {
  return {
    name: 'pglite',
    setUp: async () => undefined,
    open: emptyPglite,
    async openPair() {
      const db = await emptyPglite();
      return [db, db];
    },
    tearDown: async () => undefined,
  };
}

function postgresBackend(): TestBackend {
  let server: TestPostgres | undefined;
  const database = () => {
    if (!server) throw new Error('call setUp() before opening a database');
    return server.createDatabase();
  };
  // Idle connections only fail here when the server stops under them at the end of a file.
  const connect = (url: string) => new PostgresClient(url, () => undefined);
  return {
    name: 'postgres',
    async setUp() {
      server = await TestPostgres.start();
    },
    async open() {
      return connect(await database());
    },
    async openPair() {
      const url = await database();
      return [connect(url), connect(url)];
    },
    async tearDown() {
      await server?.stop();
      server = undefined;
    },
  };
}

/** Both backends: embedded PGlite and a real PostgreSQL 15 server started for the test file. */
export function testBackends(): TestBackend[] {
  return [pgliteBackend(), postgresBackend()];
}

/** Empties every table but `schema_migrations`, so each test starts from a clean database. */
export async function truncateAll(db: SqlClient): Promise<void> {
  await db.exec(
    `TRUNCATE users, channels, memberships, stream_keys, refresh_tokens, stream_history,
     session_history CASCADE`,
  );
}
