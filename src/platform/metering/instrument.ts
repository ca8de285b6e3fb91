import { AsyncLocalStorage } from "node:async_hooks";
import { type CallOutcome, metered } from "./call-outcome";

/**
 * Counting by wrapping, for what has no explicit call site: the entrypoint classes and capnweb
 * RPC targets (objects count through `TollgateObject`'s `handle`). The class's prototype methods
 * are replaced, once per class, by wrappers (Workers RPC dispatches to prototype methods, so the
 * wrapper is what a caller reaches).
 *
 * TypeScript's `private`/`protected` do not exist at run time, so helpers are prototype
 * methods too. An AsyncLocalStorage scope tells them apart: the outermost wrapped call of an
 * instance opens a scope, and any wrapped method running inside it (a helper, `super.x()`, an
 * alarm's task handler, even after an await) passes straight through, uncounted. A call that
 * arrives from outside (RPC, the alarm) starts with no scope and is counted.
 */

const entrypointScope = new AsyncLocalStorage<true>();

export type { CallOutcome } from "./call-outcome";
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
