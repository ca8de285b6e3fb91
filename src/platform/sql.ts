import { ServiceError } from "./errors";

/** A row as SQLite returns it. */
export type Row = Record<string, SqlStorageValue>;

/** Every row of `query`. */
export function all<T extends Row>(sql: SqlStorage, query: string, ...bindings: unknown[]): T[] {
  return sql.exec<T>(query, ...bindings).toArray();
}

/** The first row of `query`, or `undefined` when there is none. */
export function maybeOne<T extends Row>(sql: SqlStorage, query: string, ...bindings: unknown[]): T | undefined {
  for (const row of sql.exec<T>(query, ...bindings)) return row;
  return undefined;
}

/** The first row of `query`; its absence is a bug in tollgate, reported as `INTERNAL`. */
export function one<T extends Row>(sql: SqlStorage, query: string, ...bindings: unknown[]): T {
  const row = maybeOne<T>(sql, query, ...bindings);
  if (row === undefined) throw new ServiceError("INTERNAL", "expected a row, found none");
  return row;
}

/**
 * Runs one INSERT, UPDATE or DELETE and returns how many rows it changed. (The cursor's
 * `rowsWritten` also counts index writes, so it is not a row count.)
 */
export function run(sql: SqlStorage, query: string, ...bindings: unknown[]): number {
  sql.exec(query, ...bindings);
  return sql.exec<{ changed: number }>("SELECT changes() AS changed").one().changed;
}

/** Runs one INSERT, UPDATE or DELETE whose changed-row count nobody reads (one statement, not two). */
export function write(sql: SqlStorage, query: string, ...bindings: unknown[]): void {
  sql.exec(query, ...bindings);
}
