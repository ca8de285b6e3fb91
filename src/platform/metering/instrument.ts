import { AsyncLocalStorage } from "node:async_hooks";
import { errorCodeOf } from "../errors";
import { OK } from "./model";

/**
 * How every public method gets counted without touching its body: the class's prototype
 * methods are replaced, once per class, by wrappers (Workers RPC dispatches to prototype
 * methods, so the wrapper is what a caller reaches).
 *
 * TypeScript's `private`/`protected` do not exist at run time, so helpers are prototype
 * methods too. An AsyncLocalStorage scope tells them apart: the outermost wrapped call of an
 * instance opens a scope, and any wrapped method running inside it (a helper, `super.x()`, an
 * alarm's task handler, even after an await) passes straight through, uncounted. A call that
 * arrives from outside (RPC, the alarm) starts with no scope and is counted.
 */

/** The call being counted: whose it is, and the SQL cursors it opened (for rows read/written). */
export interface ObjectCall {
  owner: object;
  cursors: SqlStorageCursor<Record<string, SqlStorageValue>>[];
}

const objectScope = new AsyncLocalStorage<ObjectCall>();
const entrypointScope = new AsyncLocalStorage<true>();

/** What a finished call reports. */
export interface CallOutcome {
  method: string;
  code: string;
  latencyMs: number;
  rowsRead: number;
  rowsWritten: number;
  endMs: number;
}

/** The outcome code of a throw: its ServiceError code, or INTERNAL for anything else. */
export function outcomeCode(error: unknown): string {
  return errorCodeOf(error) ?? "INTERNAL";
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === "object" && value !== null && typeof (value as { then?: unknown }).then === "function";
}

/**
 * Runs `body` as a counted call and reports how it ended through `done`, synchronously for a
 * synchronous method (so a sync RPC method stays sync) and after settling for an async one.
 */
function metered(body: () => unknown, start: number, finish: (code: string, start: number) => void): unknown {
  let result: unknown;
  try {
    result = body();
  } catch (error) {
    finish(outcomeCode(error), start);
    throw error;
  }
  if (!isThenable(result)) {
    finish(OK, start);
    return result;
  }
  return Promise.resolve(result).then(
    (value) => {
      finish(OK, start);
      return value;
    },
    (error: unknown) => {
      finish(outcomeCode(error), start);
      throw error;
    },
  );
}

/** Any method, as found on a prototype. */
type AnyMethod = (this: object, ...args: unknown[]) => unknown;

const wrapped = new WeakSet<AnyMethod>();
const instrumented = new WeakSet<object>();

function ownMethods(prototype: object): string[] {
  return Object.getOwnPropertyNames(prototype).filter((name) => {
    if (name === "constructor") return false;
    const descriptor = Object.getOwnPropertyDescriptor(prototype, name)!;
    return typeof descriptor.value === "function" && !wrapped.has(descriptor.value);
  });
}

function replace(prototype: object, name: string, wrapper: AnyMethod): void {
  wrapped.add(wrapper);
  const descriptor = Object.getOwnPropertyDescriptor(prototype, name)!;
  Object.defineProperty(prototype, name, { ...descriptor, value: wrapper });
}

/** Receives a finished object call; the object writes it to its own metrics table. */
export type ObjectRecorder = (self: object, outcome: CallOutcome) => void;

/**
 * Wraps the methods of `prototypes` (an object class and the base it shares with the others),
 * once each. `rename` maps a method to the name it is counted under (the base's `runAlarm`,
 * which tests drive, counts as `alarm`); `skip` names methods never counted.
 */
export function instrumentObjectPrototypes(
  prototypes: readonly object[],
  record: ObjectRecorder,
  rename: Readonly<Record<string, string>>,
  skip: ReadonlySet<string>,
): void {
  for (const prototype of prototypes) {
    if (instrumented.has(prototype)) continue;
    instrumented.add(prototype);
    for (const name of ownMethods(prototype)) {
      if (skip.has(name)) continue;
      const original = (prototype as Record<string, AnyMethod>)[name]!;
      const counted = rename[name] ?? name;
      const wrapper = function (this: object, ...args: unknown[]): unknown {
        if (objectScope.getStore()?.owner === this) return original.apply(this, args);
        const call: ObjectCall = { owner: this, cursors: [] };
        return metered(
          () => objectScope.run(call, () => original.apply(this, args)),
          Date.now(),
          (code, start) => {
            let rowsRead = 0;
            let rowsWritten = 0;
            for (const cursor of call.cursors) {
              rowsRead += cursor.rowsRead;
              rowsWritten += cursor.rowsWritten;
            }
            call.cursors.length = 0;
            const endMs = Date.now();
            record(this, { method: counted, code, latencyMs: endMs - start, rowsRead, rowsWritten, endMs });
          },
        );
      };
      replace(prototype, name, wrapper);
    }
  }
}

/**
 * `sql` with every cursor it opens inside a counted call of `owner` remembered by that call, so
 * the call's rows read and written are the sum of its own cursors' counters. Statements run
 * outside a counted call (constructor migrations, metrics bookkeeping) are not attributed.
 */
export function countingSql(sql: SqlStorage, owner: object): SqlStorage {
  // A plain object rather than a Proxy: `exec` is on every call's hot path.
  const counting = {
    exec(query: string, ...bindings: unknown[]) {
      const cursor = sql.exec(query, ...bindings);
      const call = objectScope.getStore();
      if (call !== undefined && call.owner === owner) call.cursors.push(cursor);
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

/** Receives a finished entrypoint call; `self` is the entrypoint or RPC target instance. */
export type EntrypointRecorder = (self: object, kind: string, outcome: CallOutcome) => void;

/**
 * Wraps the methods of an entrypoint (or capnweb RPC target) class, counted under `kind`. A
 * call made inside another counted entrypoint call (the `RateLimits` entrypoint calling its
 * service) is not counted again. `open` names methods counted without opening a scope: the
 * Gateway's `fetch` serves capnweb, whose calls are counted themselves.
 */
export function instrumentEntrypoint(
  cls: { prototype: object; name: string },
  kind: string,
  record: EntrypointRecorder,
  open: ReadonlySet<string> = new Set(),
): void {
  const prototype = cls.prototype;
  if (instrumented.has(prototype)) return;
  instrumented.add(prototype);
  for (const name of ownMethods(prototype)) {
    const original = (prototype as Record<string, AnyMethod>)[name]!;
    const wrapper = function (this: object, ...args: unknown[]): unknown {
      if (entrypointScope.getStore() !== undefined) return original.apply(this, args);
      const finish = (code: string, start: number) => {
        const endMs = Date.now();
        record(this, kind, { method: name, code, latencyMs: endMs - start, rowsRead: 0, rowsWritten: 0, endMs });
      };
      if (open.has(name)) return metered(() => original.apply(this, args), Date.now(), finish);
      return metered(() => entrypointScope.run(true, () => original.apply(this, args)), Date.now(), finish);
    };
    replace(prototype, name, wrapper);
  }
}
