import type { z } from 'zod';

/** One row as a driver returns it, before a store checks it against its row schema. */
export type SqlRow = Record<string, unknown>;

/** Runs statements, either on the whole database or inside one transaction. */
export interface SqlExecutor {
  /** Runs one statement with `$1`-style parameters and resolves with its rows. */
  query(text: string, params?: readonly unknown[]): Promise<SqlRow[]>;
  /** Runs a script of several statements that takes no parameters (migrations). */
  exec(script: string): Promise<void>;
}

/** A PostgreSQL database: embedded PGlite or a server reached through a `pg` pool. */
export interface SqlClient extends SqlExecutor {
  /** Which implementation this is, for logs and test names. */
  readonly backend: 'pglite' | 'postgres';
  /**
   * Runs `work` in one transaction: committed when it resolves, rolled back when it throws. Only
   * `tx` may be used inside it; the client itself may wait for the transaction to end.
   */
  transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T>;
  /** Closes the database. Idempotent. */
  close(): Promise<void>;
}

/** SQLSTATE of a unique constraint violation. */
const UNIQUE_VIOLATION = '23505';

/** Whether a driver error is a unique constraint violation; both drivers carry the SQLSTATE. */
export function isUniqueViolation(error: unknown): boolean {
  return (
    typeof error === 'object' &&
    error !== null &&
    (error as { code?: unknown }).code === UNIQUE_VIOLATION
  );
}

/** Checks rows against a store's row schema, so a schema drift fails loudly at the boundary. */
export function parseRows<S extends z.ZodType>(schema: S, rows: readonly SqlRow[]): z.output<S>[] {
  return rows.map((row) => schema.parse(row));
}
