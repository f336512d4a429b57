import { PGlite } from '@electric-sql/pglite';
import type { SqlClient, SqlExecutor, SqlRow } from './sql-client';

/** Where an embedded database comes from. */
export interface PgliteSource {
  /** Folder of the database files; in memory when left out. */
  dataDir?: string;
  /** A dump (`dump()`) to start from instead of an empty cluster: much faster than initdb. */
  loadDataDir?: Blob;
}

/** PostgreSQL compiled to WebAssembly, in this process: the embedded profile's database. */
export class PgliteClient implements SqlClient {
  /** Always `pglite`. */
  readonly backend = 'pglite';
  readonly #db: PGlite;
  #closed = false;

  private constructor(db: PGlite) {
    this.#db = db;
  }

  /** Opens (creating when needed) an embedded database. */
  static async open(source: PgliteSource = {}): Promise<PgliteClient> {
    return new PgliteClient(
      await PGlite.create({
        ...(source.dataDir !== undefined ? { dataDir: source.dataDir } : {}),
        ...(source.loadDataDir !== undefined ? { loadDataDir: source.loadDataDir } : {}),
      }),
    );
  }

  /** Runs one statement with parameters. */
  query(text: string, params: readonly unknown[] = []): Promise<SqlRow[]> {
    return queryRows(this.#db, text, params);
  }

  /** Runs a parameterless script. */
  async exec(script: string): Promise<void> {
    await this.#db.exec(script);
  }

  /** Runs `work` in a transaction; PGlite has one connection, so other queries wait for it. */
  transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    return this.#db.transaction((tx) =>
      work({
        query: (text, params = []) => queryRows(tx, text, params),
        exec: async (script) => {
          await tx.exec(script);
        },
      }),
    );
  }

  /** A snapshot of the whole data folder, to open copies from with `loadDataDir`. */
  dump(): Promise<Blob> {
    return this.#db.dumpDataDir('none');
  }

  /** Closes the database. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#db.close();
  }
}

async function queryRows(
  db: Pick<PGlite, 'query'>,
  text: string,
  params: readonly unknown[],
): Promise<SqlRow[]> {
  return (await db.query<SqlRow>(text, [...params])).rows;
}
