import pg from 'pg';
import { ServiceUnavailableError } from '@hearth/server-common';
import type { SqlClient, SqlExecutor, SqlRow } from './sql-client';

/** Default time allowed to open a connection to the server, in milliseconds. */
export const DEFAULT_DATABASE_CONNECT_TIMEOUT_MS = 5000;
/** Default time one statement may run before it is cancelled, in milliseconds. */
export const DEFAULT_DATABASE_STATEMENT_TIMEOUT_MS = 10_000;
// The server cancels a statement at statement_timeout and answers with an error; the client waits
// this much longer before it gives up on a server that does not answer at all (a hung host).
const CLIENT_TIMEOUT_MARGIN_MS = 1000;

/** Timeouts of every connection and statement of a `PostgresClient`. */
export interface PostgresTimeouts {
  /** Time allowed to take a connection from the pool, connecting included, in milliseconds. */
  readonly connectTimeoutMs?: number;
  /** Time one statement may run, in milliseconds; the server cancels it, the client gives up. */
  readonly statementTimeoutMs?: number;
}

// SQLSTATE classes that mean the server cannot serve now, whatever the statement: 08 connection
// exception, 53 insufficient resources, 57 operator intervention (shutdown, statement timeout),
// 58 system error. Anything else (a constraint, a syntax error) is the statement's own problem.
const UNAVAILABLE_SQLSTATE_CLASSES = new Set(['08', '53', '57', '58']);

/**
 * Whether a driver error means the database is unreachable or did not answer in time. Errors
 * the server sent carry a SQLSTATE; every other error of the driver is about the connection
 * (refused, reset, ended, timed out), except JavaScript's own errors, which are bugs.
 */
export function isUnavailableError(error: unknown): boolean {
  if (error instanceof pg.DatabaseError) {
    return UNAVAILABLE_SQLSTATE_CLASSES.has((error.code ?? '').slice(0, 2));
  }
  return (
    error instanceof Error &&
    !(error instanceof TypeError) &&
    !(error instanceof RangeError) &&
    !(error instanceof SyntaxError) &&
    !(error instanceof ReferenceError)
  );
}

// Driver calls go through this, so that an outage reaches callers as one error class.
async function guarded<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (isUnavailableError(error)) throw new ServiceUnavailableError('database', { cause: error });
    throw error;
  }
}

/** A PostgreSQL server reached through a `pg` connection pool (`DATABASE_URL`). */
export class PostgresClient implements SqlClient {
  /** Always `postgres`. */
  readonly backend = 'postgres';
  readonly #pool: pg.Pool;
  #closed = false;

  /**
   * Connects lazily to `connectionString`. `onIdleError` hears about pooled connections that
   * fail while idle (a server restart): `pg` throws those unless someone listens. Every
   * connection and statement is bounded by `timeouts`; a query that runs into one, or finds the
   * server unreachable, rejects with a `ServiceUnavailableError`.
   */
  constructor(
    connectionString: string,
    onIdleError: (error: Error) => void,
    timeouts: PostgresTimeouts = {},
  ) {
    const statementTimeoutMs = timeouts.statementTimeoutMs ?? DEFAULT_DATABASE_STATEMENT_TIMEOUT_MS;
    this.#pool = new pg.Pool({
      connectionString,
      max: 10,
      connectionTimeoutMillis: timeouts.connectTimeoutMs ?? DEFAULT_DATABASE_CONNECT_TIMEOUT_MS,
      statement_timeout: statementTimeoutMs,
      query_timeout: statementTimeoutMs + CLIENT_TIMEOUT_MARGIN_MS,
      // A server that vanished without closing its connections is noticed by the kernel.
      keepAlive: true,
    });
    this.#pool.on('error', onIdleError);
  }

  /** Runs one statement with parameters on any pooled connection. */
  query(text: string, params: readonly unknown[] = []): Promise<SqlRow[]> {
    return guarded(async () => (await this.#pool.query<SqlRow>(text, [...params])).rows);
  }

  /** Runs a parameterless script (simple protocol, so several statements are allowed). */
  exec(script: string): Promise<void> {
    return guarded(async () => {
      await this.#pool.query(script);
    });
  }

  /** Runs `work` in a transaction on one connection taken from the pool. */
  async transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    const connection = await guarded(() => this.#pool.connect());
    let broken: Error | undefined;
    try {
      await guarded(() => connection.query('BEGIN'));
      const result = await work({
        query: (text, params = []) =>
          guarded(async () => (await connection.query<SqlRow>(text, [...params])).rows),
        exec: (script) =>
          guarded(async () => {
            await connection.query(script);
          }),
      });
      await guarded(() => connection.query('COMMIT'));
      return result;
    } catch (error) {
      if (error instanceof ServiceUnavailableError) {
        // The connection failed or hangs: a rollback would only wait for the same timeout again.
        // Destroying it ends the transaction on the server.
        broken = error;
      } else {
        // A connection whose rollback failed is in an unknown state: it is destroyed, not reused.
        await connection.query('ROLLBACK').catch((rollbackError: unknown) => {
          broken =
            rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
        });
      }
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
