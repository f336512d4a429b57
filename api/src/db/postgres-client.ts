import pg from 'pg';
import type { SqlClient, SqlExecutor, SqlRow } from './sql-client';

/** A PostgreSQL server reached through a `pg` connection pool (`DATABASE_URL`). */
export class PostgresClient implements SqlClient {
  /** Always `postgres`. */
  readonly backend = 'postgres';
  readonly #pool: pg.Pool;
  #closed = false;

  /**
   * Connects lazily to `connectionString`. `onIdleError` hears about pooled connections that
   * fail while idle (a server restart): `pg` throws those unless someone listens.
   */
  constructor(connectionString: string, onIdleError: (error: Error) => void) {
    this.#pool = new pg.Pool({ connectionString, max: 10 });
    this.#pool.on('error', onIdleError);
  }

  /** Runs one statement with parameters on any pooled connection. */
  async query(text: string, params: readonly unknown[] = []): Promise<SqlRow[]> {
    return (await this.#pool.query<SqlRow>(text, [...params])).rows;
  }

  /** Runs a parameterless script (simple protocol, so several statements are allowed). */
  async exec(script: string): Promise<void> {
    await this.#pool.query(script);
  }

  /** Runs `work` in a transaction on one connection taken from the pool. */
  async transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    const connection = await this.#pool.connect();
    let broken: Error | undefined;
    try {
      await connection.query('BEGIN');
      const result = await work({
        query: async (text, params = []) =>
          (await connection.query<SqlRow>(text, [...params])).rows,
        exec: async (script) => {
          await connection.query(script);
        },
      });
      await connection.query('COMMIT');
      return result;
    } catch (error) {
      // A connection whose rollback failed is in an unknown state: it is destroyed, not reused.
      await connection.query('ROLLBACK').catch((rollbackError: unknown) => {
        broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
      });
      throw error;
    } finally {
      connection.release(broken);
    }
  }

  /** Closes every pooled connection. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#pool.end();
  }
}
