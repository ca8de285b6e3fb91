import { AsyncLocalStorage } from "node:async_hooks";
import { metered } from "./call-outcome";

/**
 * One counted call into an object, and the rows it read and wrote. The call site is explicit
 * (`TollgateObject`'s `handle`, or a wrapper of an object not converted yet); a scope, carried
 * across awaits, tells which call a SQL cursor belongs to, so each call's rows are the sum of
 * its own cursors' counters (Cloudflare's, the ones it bills).
 */
export interface ObjectCall {
  owner: object;
  /** Cursors opened in the call's scope and not yet counted: their counters are read at the next push. */
  readonly cursors: SqlStorageCursor<Record<string, SqlStorageValue>>[];
  /**
   * Set once the call is counted: a cursor opened in its scope after that (work it left running,
   * such as a group commit's next flush) calls it, so its rows are counted too.
   */
  onLateCursor: (() => void) | null;
}

const objectScope = new AsyncLocalStorage<ObjectCall>();

/** What a counted call reports when it ends. */
export type CallFinish = (code: string, startMs: number, call: ObjectCall) => void;

/**
 * Runs `body` as a call into `owner` and reports how it ended. A call made while one of the same
 * owner is running (a contract method calling another, an alarm's task handler calling one) is
 * part of that call: it runs as is, uncounted.
 */
export function countedCall<T>(owner: object, body: () => T, finish: CallFinish): T {
  if (objectScope.getStore()?.owner === owner) return body();
  const call: ObjectCall = { owner, cursors: [], onLateCursor: null };
  return metered(
    () => objectScope.run(call, body),
    Date.now(),
    (code, start) => finish(code, start, call),
  );
}

/**
 * `sql` with every cursor it opens inside a counted call of `owner` remembered by that call.
 * Statements run outside a counted call (constructor migrations, the metrics shard's own
 * bookkeeping) are not attributed.
 */
export function countingSql(sql: SqlStorage, owner: object): SqlStorage {
  // A plain object rather than a Proxy: `exec` is on every call's hot path.
  const counting = {
    exec(query: string, ...bindings: unknown[]) {
      const cursor = sql.exec(query, ...bindings);
      const call = objectScope.getStore();
      if (call !== undefined && call.owner === owner) {
        call.cursors.push(cursor);
        if (call.cursors.length === 1) call.onLateCursor?.();
      }
      return cursor;
    },
    get databaseSize() {
      return sql.databaseSize;
    },
    Cursor: sql.Cursor,
    Statement: sql.Statement,
  };
  return counting as unknown as SqlStorage;
}

/** Reads and forgets the counters of the call's cursors so far. */
export function takeRows(call: ObjectCall): { rowsRead: number; rowsWritten: number } {
  let rowsRead = 0;
  let rowsWritten = 0;
  for (const cursor of call.cursors) {
    rowsRead += cursor.rowsRead;
    rowsWritten += cursor.rowsWritten;
  }
  call.cursors.length = 0;
  return { rowsRead, rowsWritten };
}

/**
 * The scope of the counted call running now, to run work done later on its behalf in it (a
 * body a group commit runs in a batch): that work's cursors are then the call's own.
 */
export function currentCallScope(): <R>(body: () => R) => R {
  const call = objectScope.getStore();
  return call === undefined ? (body) => body() : (body) => objectScope.run(call, body);
}
