/**
 * The bench's own row and request counter for the cost section (bench/scenarios/cost.ts),
 * independent of tollgate's metering. Every tollgate object runs in this one isolate, so one
 * module-level meter sees them all:
 *
 * - rows: `SqlStorage.prototype.exec` is wrapped; each cursor's `rowsWritten`/`rowsRead` is read
 *   once the calls in flight have finished (the counters grow while a cursor is iterated), and
 *   each `DurableObjectStorage.prototype.setAlarm` counts one row written.
 * - requests: the methods of the shipped object classes (and the base's `alarm`) are wrapped, so
 *   every call that reaches an object from outside it is one request: RPC from an entrypoint or
 *   another object, and each alarm invocation. Calls an object makes on itself are not requests.
 * - time: `Date.now` carries an offset the cost run moves forward, so alarms due minutes or days
 *   ahead run now (`drain` in bench-cost.ts) on the clock every object and entrypoint reads.
 *   Timers keep real time; the pending ones are known, so a window can wait for them.
 *
 * Everything is attributed to a bucket: the window the run is in (an operation, its set-up, idle
 * time), except that a subject's limiter or an account's ledger created for an operation stays
 * that operation's whenever its alarms run. Bench-only; nothing here is in src/.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import {
  AdaptiveLimitsDO,
  AggregatorDO,
  AlertsDO,
  CreditLedgerDO,
  MaintenanceDO,
  MetricsDO,
  PathCollectorDO,
  ProtectionDO,
  RateLimiterDO,
} from "../../src/index";
import type { ObjectControls, ObjectHooks } from "../../src/platform/tollgate-object";
import { TollgateObject } from "../../src/platform/tollgate-object";
import type { TaskHandlers, TaskScheduler } from "../../src/platform/task-scheduler";
import type { BucketCounts } from "../harness/cost";

export type { BucketCounts };

/** The shipped object classes, by the name the cost report uses, and the binding that reaches them. */
export const OBJECT_BINDINGS = {
  RateLimiterDO: "RATE_LIMITER",
  CreditLedgerDO: "CREDIT_LEDGER",
  PathCollectorDO: "PATH_COLLECTOR",
  AggregatorDO: "AGGREGATOR",
  MaintenanceDO: "MAINTENANCE",
  AdaptiveLimitsDO: "ADAPTIVE_LIMITS",
  ProtectionDO: "PROTECTION",
  MetricsDO: "METRICS",
  AlertsDO: "ALERTS",
} as const;
export type ObjectKind = keyof typeof OBJECT_BINDINGS;

/** Objects created per subject or account: they belong to the operation that created them. */
const OWNED_KINDS: ReadonlySet<ObjectKind> = new Set(["RateLimiterDO", "CreditLedgerDO"]);

/** One object the isolate has constructed (an eviction constructs it again under the same id). */
export interface ObjectEntry {
  id: string;
  name: string | undefined;
  kind: ObjectKind;
  /** The alarm as this object last set it (a `setAlarm`/`deleteAlarm` seen by the meter). */
  armedMs: number | null;
  /** One per deployment (collectors, aggregator, metrics shards…), not one per subject or account. */
  shared: boolean;
  /** The operation a per-subject object was created for, or null (shared objects, other scenarios). */
  owner: string | null;
  /** The last window in which something called it (an alarm run is not a call). */
  calledIn: string | null;
}

const NUDGE_TASK = "bench-nudge";

type Pending = { bucket: string; key: string; cursor: SqlStorageCursor<Record<string, SqlStorageValue>> };
type CallScope = { self: object; method: string };

const callScope = new AsyncLocalStorage<CallScope>();
const taskScope = new AsyncLocalStorage<string>();
const realNow = Date.now.bind(Date);

class CostMeter {
  /** Counting is off until the cost scenario starts it; the wrappers then cost one branch. */
  active = false;
  offsetMs = 0;
  inFlight = 0;
  /** Timers set in this isolate and not yet fired or cleared (see the setTimeout wrapper below). */
  readonly pendingTimers = new Set<unknown>();
  /** Bumped by every request and statement: a quiet meter has stopped changing. */
  activity = 0;
  window = "idle";
  /** The operation that per-subject objects created in this window belong to. */
  windowOwner: string | null = null;
  readonly objects = new Map<string, ObjectEntry>();
  readonly buckets = new Map<string, BucketCounts>();
  readonly #byCtx = new WeakMap<object, ObjectEntry>();
  readonly #byStorage = new WeakMap<object, ObjectEntry>();
  readonly #controls = new WeakMap<object, ObjectControls>();
  #pending: Pending[] = [];
  #storagePatched = false;
  readonly #tables = new Map<string, string>();

  now(): number {
    return realNow() + this.offsetMs;
  }

  /** Moves the isolate's clock forward to `ms` (never back). */
  advanceTo(ms: number): void {
    const now = this.now();
    if (ms > now) this.offsetMs += ms - now;
  }

  /** Hooks for a bench subclass's `super(ctx, env, hooks)`: registers the object and keeps its controls. */
  hooks(ctx: DurableObjectState, kind: ObjectKind): ObjectHooks {
    return {
      attach: (controls) => this.#register(ctx, kind, controls),
      // Each task handler runs in a scope naming its kind, so its rows say which task wrote them.
      wrapTasks: (handlers: TaskHandlers) => ({
        ...Object.fromEntries(
          Object.entries(handlers).map(([kind, handler]) => [
            kind,
            (payload: unknown, nowMs: number) => taskScope.run(kind, () => handler(payload, nowMs)),
          ]),
        ),
        // The bench's own task (see nudge): it does nothing, so the alarm that runs it counts as work.
        [NUDGE_TASK]: () => {},
      }),
    };
  }

  /**
   * Made an idle object push the metrics rows it still held, when objects stored their counts.
   * They keep them in memory now and push within METRICS_BUFFER_MS, and each window waits for the
   * timers that push them (BenchCost.#quiet), so nothing is carried from idle time: a no-op.
   */
  async nudge(_ctx: DurableObjectState, _scheduler: TaskScheduler): Promise<boolean> {
    return false;
  }

  /** Runs this object's due alarm work at the isolate's clock, as the platform's alarm would. */
  async runAlarm(ctx: DurableObjectState): Promise<{ ran: number; nextDueMs: number | null }> {
    const controls = this.#controls.get(ctx);
    if (controls === undefined) throw new Error("this object was not constructed with the cost meter's hooks");
    const report = await controls.runAlarm(this.now());
    return { ran: report.ran, nextDueMs: report.nextDueMs };
  }

  /** Reads every finished statement's counters into its bucket and lets the cursor go. */
  fold(): void {
    for (const { bucket, key, cursor } of this.#pending) {
      const counts = this.#bucket(bucket);
      const row = (counts.rows[key] ??= [0, 0]);
      row[0] += cursor.rowsWritten;
      row[1] += cursor.rowsRead;
    }
    this.#pending = [];
  }

  noteStatement(storage: object, query: string, cursor: Pending["cursor"]): void {
    const entry = this.#byStorage.get(storage);
    this.activity += 1;
    const bucket = this.#bucketOf(entry);
    this.#bucket(bucket).statements += 1;
    this.#pending.push({ bucket, key: `${entry?.kind ?? "other"}|${this.#phase()}|${this.#table(query)}`, cursor });
  }

  noteAlarmWrite(storage: object, scheduledMs: number | null): void {
    const entry = this.#byStorage.get(storage);
    if (entry !== undefined) entry.armedMs = scheduledMs;
    if (!this.active) return;
    this.activity += 1;
    const counts = this.#bucket(this.#bucketOf(entry));
    if (scheduledMs === null) {
      counts.deleteAlarms += 1;
      return;
    }
    const row = (counts.rows[`${entry?.kind ?? "other"}|${this.#phase()}|(setAlarm)`] ??= [0, 0]);
    row[0] += 1;
  }

  /** Counts a call arriving at an object; returns false for a call the object makes on itself. */
  noteRequest(self: object, kind: string, method: string): boolean {
    if (callScope.getStore()?.self === self) return false;
    const entry = this.#byCtx.get((self as { ctx?: object }).ctx ?? self);
    if (entry !== undefined && method !== "alarm") entry.calledIn = this.window;
    this.activity += 1;
    const counts = this.#bucket(this.#bucketOf(entry));
    const key = `${entry?.kind ?? kind}.${method}`;
    counts.requests[key] = (counts.requests[key] ?? 0) + 1;
    return true;
  }

  runAsRequest<T>(self: object, method: string, body: () => T): T {
    return callScope.run({ self, method }, body);
  }

  /** Patches the storage prototypes once, from the first object's storage. */
  #patchStorage(storage: DurableObjectStorage): void {
    if (this.#storagePatched) return;
    this.#storagePatched = true;
    const sqlPrototype = Object.getPrototypeOf(storage.sql) as SqlStorage;
    const exec = sqlPrototype.exec;
    const meter = this;
    sqlPrototype.exec = function (this: SqlStorage, query: string, ...bindings: unknown[]) {
      const cursor = exec.call(this, query, ...bindings);
      if (meter.active) meter.noteStatement(this, query, cursor);
      return cursor;
    } as SqlStorage["exec"];
    const storagePrototype = Object.getPrototypeOf(storage) as DurableObjectStorage;
    const setAlarm = storagePrototype.setAlarm;
    const deleteAlarm = storagePrototype.deleteAlarm;
    storagePrototype.setAlarm = function (
      this: DurableObjectStorage,
      scheduledTime: number | Date,
      options?: DurableObjectSetAlarmOptions,
    ) {
      meter.noteAlarmWrite(this, typeof scheduledTime === "number" ? scheduledTime : scheduledTime.getTime());
      return setAlarm.call(this, scheduledTime, options);
    };
    storagePrototype.deleteAlarm = function (this: DurableObjectStorage, options?: DurableObjectSetAlarmOptions) {
      meter.noteAlarmWrite(this, null);
      return deleteAlarm.call(this, options);
    };
  }

  #register(ctx: DurableObjectState, kind: ObjectKind, controls: ObjectControls): void {
    this.#patchStorage(ctx.storage);
    const id = ctx.id.toString();
    let entry = this.objects.get(id);
    if (entry === undefined) {
      const shared = !OWNED_KINDS.has(kind);
      entry = { id, name: ctx.id.name, kind, armedMs: null, shared, owner: shared ? null : this.windowOwner, calledIn: null };
      this.objects.set(id, entry);
    }
    entry.name ??= ctx.id.name;
    this.#byCtx.set(ctx, entry);
    this.#byStorage.set(ctx.storage, entry);
    this.#byStorage.set(ctx.storage.sql, entry);
    this.#controls.set(ctx, controls);
  }

  /** An owned object's rows are its operation's, except while that operation's own set-up runs. */
  #bucketOf(entry: ObjectEntry | undefined): string {
    if (entry === undefined) return "unregistered";
    if (entry.owner === null || this.window === `setup:${entry.owner}`) return this.window;
    return entry.owner;
  }

  #bucket(name: string): BucketCounts {
    let counts = this.buckets.get(name);
    if (counts === undefined) this.buckets.set(name, (counts = { rows: {}, requests: {}, deleteAlarms: 0, statements: 0 }));
    return counts;
  }

  /** The method a statement ran in: a call's method, `alarm:<task kind>`, or `constructor` (migrations). */
  #phase(): string {
    const call = callScope.getStore();
    if (call === undefined) return "constructor";
    if (call.method !== "alarm") return call.method;
    return `alarm:${taskScope.getStore() ?? "scheduler"}`;
  }

  /** The table a statement writes (or first reads): enough to say where rows go. */
  #table(query: string): string {
    let table = this.#tables.get(query);
    if (table === undefined) {
      const sql = query.replace(/\s+/g, " ").trim();
      const match =
        /^INSERT (?:OR \w+ )?INTO "?(\w+)/i.exec(sql) ??
        /^REPLACE INTO "?(\w+)/i.exec(sql) ??
        /^UPDATE (?:OR \w+ )?"?(\w+)/i.exec(sql) ??
        /^DELETE FROM "?(\w+)/i.exec(sql) ??
        /^CREATE (?:UNIQUE )?(?:TABLE|INDEX|TRIGGER|VIEW)/i.exec(sql) ??
        /\bFROM "?(\w+)/i.exec(sql);
      table = match === null ? sql.split(" ")[0]!.toLowerCase() : (match[1] ?? "(schema)");
      this.#tables.set(query, table);
    }
    return table;
  }
}

export const costMeter = new CostMeter();

// The whole isolate reads the meter's clock; with no offset it is Date.now itself.
Date.now = () => costMeter.now();

/** The runtime's own setTimeout, for waits that are not the objects' (bench-cost.ts). */
export const realSetTimeout = globalThis.setTimeout.bind(globalThis);
const realClearTimeout = globalThis.clearTimeout.bind(globalThis);
// Timers still run in real time; the meter only keeps the pending ones, so a window waits for them.
globalThis.setTimeout = ((handler: (...args: unknown[]) => void, delayMs?: number, ...args: unknown[]) => {
  const id: unknown = realSetTimeout(() => {
    costMeter.pendingTimers.delete(id);
    handler(...args);
  }, delayMs);
  costMeter.pendingTimers.add(id);
  return id;
}) as typeof setTimeout;
globalThis.clearTimeout = ((id: Parameters<typeof clearTimeout>[0]) => {
  costMeter.pendingTimers.delete(id);
  realClearTimeout(id);
}) as typeof clearTimeout;

/**
 * Wraps the public methods of a shipped object class. When the meter is off a wrapper only calls
 * through; when on, the outermost call into an object is one request, and everything it runs,
 * tollgate's own metrics bookkeeping included, is counted under its method.
 */
function countRequests(prototype: object, kind: string): void {
  for (const name of Object.getOwnPropertyNames(prototype)) {
    const descriptor = Object.getOwnPropertyDescriptor(prototype, name)!;
    if (name === "constructor" || typeof descriptor.value !== "function") continue;
    const original = descriptor.value as (...args: unknown[]) => unknown;
    const wrapper = function (this: object, ...args: unknown[]): unknown {
      if (!costMeter.active || !costMeter.noteRequest(this, kind, name)) return original.apply(this, args);
      costMeter.inFlight += 1;
      let result: unknown;
      try {
        result = costMeter.runAsRequest(this, name, () => original.apply(this, args));
      } catch (error) {
        costMeter.inFlight -= 1;
        throw error;
      }
      if (typeof (result as { then?: unknown } | null)?.then !== "function") {
        costMeter.inFlight -= 1;
        return result;
      }
      return Promise.resolve(result).finally(() => (costMeter.inFlight -= 1));
    };
    Object.defineProperty(prototype, name, { ...descriptor, value: wrapper });
  }
}

const SHIPPED: Record<ObjectKind, { prototype: object }> = {
  RateLimiterDO,
  CreditLedgerDO,
  PathCollectorDO,
  AggregatorDO,
  MaintenanceDO,
  AdaptiveLimitsDO,
  ProtectionDO,
  MetricsDO,
  AlertsDO,
};
const counted = new Set<object>();

/**
 * Called by a bench subclass once its `super()` has returned: tollgate's metering has wrapped the
 * class (and the base) by then, so these wrappers go around it. MetricsDO is not metered by
 * tollgate, so the base's methods wait for a metered class.
 */
export function countRequestsOf(kind: ObjectKind): void {
  const prototypes: Array<[object, string]> = [[SHIPPED[kind].prototype, kind]];
  // `alarm` and the backup methods live on the base; the kind comes from the object's entry.
  if (kind !== "MetricsDO") prototypes.push([TollgateObject.prototype, "TollgateObject"]);
  for (const [prototype, name] of prototypes) {
    if (counted.has(prototype)) continue;
    counted.add(prototype);
    countRequests(prototype, name);
  }
}
