import { DurableObject } from "cloudflare:workers";
import type * as v from "valibot";
import type { Env } from "./env";
import { countedCall, countingSql } from "./metering/object-calls";
import { ObjectMeter, upgradeStoredMetrics } from "./metering/object-metrics";
import { type AlarmReport, SCHEDULER_MIGRATIONS, TaskScheduler, type TaskHandlers } from "./task-scheduler";
import { applyMigrations, type Migration } from "./migrations";
import { exportTables, holdsData, importTables, type ObjectDump, objectDumpSchema } from "./table-dump";
import { parseInput } from "./schemas";

/**
 * What every tollgate object declares: its schema and the kinds of timed work it does.
 * `Self` is the object class, so `tasks` and `afterImport` can reach its `#private` members
 * (declare the spec as a static `#private` field of the class). They are functions of the
 * object, not methods on it: nothing here is reachable over RPC.
 */
export interface ObjectSpec<Self extends TollgateObject = TollgateObject> {
  /** Names the object's own migration sequence in `_migrations`. */
  component: string;
  migrations: readonly Migration[];
  /**
   * `false` leaves the object out of metrics (the metrics rollup itself, which would otherwise
   * count its own pushes forever, and test probes). Default: counted.
   */
  metrics?: false;
  /** The handlers for this object's task kinds. Each must be safe to run twice. */
  tasks(self: Self): TaskHandlers;
  /**
   * Called after a restore wrote the tables: an object that keeps something derived from its
   * tables in memory drops it here (an empty object may have cached its emptiness).
   */
  afterImport?(self: Self): void;
}

/** What the base hands to a test subclass through `ObjectHooks.attach`; never reachable over RPC. */
export interface ObjectControls {
  /** Runs the alarm's work as if the clock read `nowMs`, and reports what it did. */
  runAlarm(nowMs: number): Promise<AlarmReport>;
  /**
   * Pushes the isolate's object call counts now, instead of within `METRICS_BUFFER_MS`; resolves
   * whether the rollup took them (always `true` for an object left out of metrics).
   */
  flushMetrics(): Promise<boolean>;
}

/**
 * What a test subclass may change. Production objects are built with none: the Workers
 * runtime calls every object class with `(ctx, env)` only.
 */
export interface ObjectHooks {
  /** The clock that every call and the platform alarm read. Default: `Date.now`. */
  now?: () => number;
  /**
   * The clock the platform's own alarm reads instead (default: `now`). A test object whose `now`
   * is pinned in the future passes `Date.now`, so a real alarm firing mid-test cannot run work
   * the test has not reached yet; its hand-run alarms (`controls.runAlarm`) name their time.
   */
  alarmNow?: () => number;
  /** Wraps the task handlers (fault injection in the chaos test). */
  wrapTasks?: (handlers: TaskHandlers) => TaskHandlers;
  /** Receives the object's controls, synchronously, during construction. */
  attach?: (controls: ObjectControls) => void;
}

/** The one call site of a contract method: `TollgateObject.handle`. */
export interface Handle {
  /** Runs `body` as the call `method`, counted. */
  <T>(method: string, body: () => T): T;
  /**
   * Validates `input` with `schema` first (a bad one is `INVALID_ARGUMENT`, counted, before any
   * work), then runs `body` with what it parsed, as the call `method`, counted.
   */
  <S extends v.GenericSchema, T>(method: string, schema: S, input: unknown, body: (parsed: v.InferOutput<S>) => T): T;
}

/**
 * Shared machinery of the objects: the schema is brought up to date synchronously in
 * the constructor (so no call ever sees an old schema), and the single alarm is driven by
 * the `_tasks` table. Subclasses name their task handlers in their spec's `tasks`.
 *
 * Every contract method of every object class is counted (docs/metrics.md): each one runs its
 * body through `this.handle`, the one call site per method; the base's own methods count
 * themselves. `this.sql` attributes
 * each cursor to the call that opened it, so a call's rows are its cursors' counters.
 */
export abstract class TollgateObject extends DurableObject<Env> {
  protected readonly sql: SqlStorage;
  protected readonly scheduler: TaskScheduler;
  /** The clock (a field, not a method: fields are not reachable over RPC). */
  protected readonly now: () => number;
  readonly #alarmNow: () => number;
  readonly #spec: ObjectSpec;
  readonly #wrapTasks: (handlers: TaskHandlers) => TaskHandlers;
  /** This object's part in the isolate's call counts, or null when it is not metered. */
  readonly #meter: ObjectMeter | null;

  /**
   * The call site of every contract method of a converted class: `return this.handle("check",
   * checkInputSchema, input, (parsed) => …)`. A call made inside another call of the same object
   * runs as part of it, uncounted. A field, not a method: fields are not reachable over RPC.
   */
  protected readonly handle: Handle = ((method: string, ...rest: unknown[]) => {
    if (rest.length === 1) return this.#count(method, rest[0] as () => unknown);
    const [schema, input, body] = rest as [v.GenericSchema, unknown, (parsed: unknown) => unknown];
    return this.#count(method, () => body(parseInput(schema, input, `${method} input`)));
  }) as Handle;

  constructor(ctx: DurableObjectState, env: Env, spec: ObjectSpec, hooks: ObjectHooks = {}) {
    super(ctx, env);
    this.#spec = spec;
    this.now = hooks.now ?? Date.now;
    this.#alarmNow = hooks.alarmNow ?? this.now;
    this.#wrapTasks = hooks.wrapTasks ?? ((handlers) => handlers);
    hooks.attach?.({
      runAlarm: (nowMs) => this.#runAlarmAsCalled(nowMs),
      flushMetrics: () => this.#meter?.flush() ?? Promise.resolve(true),
    });
    this.sql = countingSql(ctx.storage.sql, this);
    applyMigrations(ctx.storage, "scheduler", SCHEDULER_MIGRATIONS);
    applyMigrations(ctx.storage, spec.component, spec.migrations);
    // An object from before counts moved to memory hands its stored ones over (before the
    // scheduler reads `_tasks`: the old push task goes with them).
    const storedCounts = upgradeStoredMetrics(ctx.storage);
    this.scheduler = new TaskScheduler(withSql(ctx.storage, this.sql));
    if (spec.metrics === false) {
      this.#meter = null;
      return;
    }
    const objectClass = objectClassOf(new.target.prototype);
    this.#meter = new ObjectMeter(ctx, env, objectClass.constructor.name);
    this.#meter.adopt(storedCounts);
  }

  /** Runs `body` as the call `method` of this object, counted unless the object is left out of metrics. */
  #count<T>(method: string, body: () => T): T {
    const meter = this.#meter;
    if (meter === null) return body();
    return countedCall(this, body, (code, startMs, call) => meter.record(method, code, startMs, call));
  }

  /** The alarm reads the same clock as the calls, so lazy and alarm-driven work agree. */
  override alarm(): Promise<void> {
    return this.#count("alarm", async () => {
      const requested = this.#requestedRun;
      const run = this.#runAlarm(requested?.nowMs ?? this.#alarmNow());
      if (requested !== null) requested.report = run;
      await run;
    });
  }

  /** A test's alarm run at `nowMs`, made through `alarm()` itself so metrics count it as the platform's would be. */
  #requestedRun: RequestedRun | null = null;

  #runAlarmAsCalled(nowMs: number): Promise<AlarmReport> {
    const requested: RequestedRun = { nowMs };
    this.#requestedRun = requested;
    let done: Promise<void>;
    try {
      // The base's own (counted) alarm, even where a test subclass switched the platform alarm off.
      done = TollgateObject.prototype.alarm.call(this);
    } finally {
      this.#requestedRun = null;
    }
    return done.then(() => requested.report!);
  }

  /** Every data table, for a backup (Admin only: no entrypoint exposes the object itself). */
  exportTables(): ObjectDump {
    return this.#count("exportTables", () => exportTables(this.sql));
  }

  /**
   * Restores a backup's tables into this object, which must be empty, then points the alarm at
   * the restored tasks. The dump is validated here too: the caller is not trusted.
   */
  importTables(input: unknown): Promise<{ rows: Record<string, number> }> {
    return this.#count("importTables", async () => {
      const dump = parseInput(objectDumpSchema, input, "table import");
      const rows = importTables(this.ctx.storage, dump);
      this.#spec.afterImport?.(this);
      await this.scheduler.rearm();
      return { rows };
    });
  }

  /** Whether the object holds any data, so a restore can check every target before writing any. */
  holdsData(): boolean {
    return this.#count("holdsData", () => holdsData(this.sql));
  }

  /** The alarm's work, returning what it did (tests and diagnostics read the report). */
  #runAlarm(nowMs: number): Promise<AlarmReport> {
    return this.scheduler.runDue(this.#wrapTasks(this.#spec.tasks(this)), nowMs);
  }
}

/** An alarm run a test asked for: its time, and the report once it started. */
interface RequestedRun {
  nowMs: number;
  report?: Promise<AlarmReport>;
}

/** The class directly below TollgateObject in `prototype`'s chain: what metrics call the object. */
function objectClassOf(prototype: object): { constructor: { name: string } } {
  let current = prototype;
  for (;;) {
    const parent = Object.getPrototypeOf(current) as object;
    if (parent === TollgateObject.prototype) return current as { constructor: { name: string } };
    current = parent;
  }
}

/** The storage with `sql` replaced by the counting one, so the scheduler's rows are counted too. */
function withSql(storage: DurableObjectStorage, sql: SqlStorage): DurableObjectStorage {
  return new Proxy(storage, {
    get(target, property) {
      if (property === "sql") return sql;
      const value = Reflect.get(target, property, target) as unknown;
      return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}
