import { DurableObject } from "cloudflare:workers";
import type { Env } from "./env";
import { floorTo, MINUTE_MS } from "./buckets";
import { loadMetricsConfig, type MetricsConfig } from "./metering/config";
import { countingSql, instrumentObjectPrototypes, type CallOutcome } from "./metering/instrument";
import { CallCounts, METRICS_MIGRATIONS, METRICS_PUSH_TASK, pushClosedMinutes, pushDueMs } from "./metering/object-metrics";
import { type AlarmReport, SCHEDULER_MIGRATIONS, TaskScheduler, type TaskHandler, type TaskHandlers } from "./task-scheduler";
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
  /** Writes the call counts waiting in memory now, instead of within `METRICS_BUFFER_MS`. */
  flushMetrics(): void;
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

/**
 * Shared machinery of the objects: the schema is brought up to date synchronously in
 * the constructor (so no call ever sees an old schema), and the single alarm is driven by
 * the `_tasks` table. Subclasses name their task handlers in their spec's `tasks`.
 *
 * Every public method of every object class is counted (docs/metrics.md): the constructor
 * wraps the class's prototype methods once, and `this.sql` counts the rows each call's own
 * cursors read and write.
 */
export abstract class TollgateObject extends DurableObject<Env> {
  protected readonly sql: SqlStorage;
  protected readonly scheduler: TaskScheduler;
  /** The clock (a field, not a method: fields are not reachable over RPC). */
  protected readonly now: () => number;
  readonly #alarmNow: () => number;
  readonly #spec: ObjectSpec;
  readonly #wrapTasks: (handlers: TaskHandlers) => TaskHandlers;
  /** The object class counted (`RateLimiterDO`, also when a test subclass runs), or null when not metered. */
  readonly #kind: string | null;
  /** Whether the alarm now running did more than push metrics (only then is a push scheduled for it). */
  #alarmDidWork = false;
  /** The metrics configuration, read once per instance (the hot path should not re-read it). */
  #metricsConfig: MetricsConfig | undefined;
  /** Call counts not yet written, and the timer that writes them (null: none pending). */
  readonly #callCounts = new CallCounts();
  #callCountsTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(ctx: DurableObjectState, env: Env, spec: ObjectSpec, hooks: ObjectHooks = {}) {
    super(ctx, env);
    this.#spec = spec;
    this.now = hooks.now ?? Date.now;
    this.#alarmNow = hooks.alarmNow ?? this.now;
    this.#wrapTasks = hooks.wrapTasks ?? ((handlers) => handlers);
    hooks.attach?.({ runAlarm: (nowMs) => this.#runAlarmAsCalled(nowMs), flushMetrics: () => this.#callCounts.write(ctx.storage) });
    this.sql = countingSql(ctx.storage.sql, this);
    applyMigrations(ctx.storage, "scheduler", SCHEDULER_MIGRATIONS);
    applyMigrations(ctx.storage, spec.component, spec.migrations);
    this.scheduler = new TaskScheduler(withSql(ctx.storage, this.sql));
    if (spec.metrics === false) {
      this.#kind = null;
      return;
    }
    applyMigrations(ctx.storage, "metrics", METRICS_MIGRATIONS);
    const objectClass = objectClassOf(new.target.prototype);
    this.#kind = objectClass.constructor.name;
    instrumentObjectPrototypes(
      [objectClass, TollgateObject.prototype],
      (self, outcome) => (self as TollgateObject).#record(outcome),
      {},
      new Set(),
    );
  }

  /** The alarm reads the same clock as the calls, so lazy and alarm-driven work agree. */
  override async alarm(): Promise<void> {
    const requested = this.#requestedRun;
    const run = this.#runAlarm(requested?.nowMs ?? this.#alarmNow());
    if (requested !== null) requested.report = run;
    await run;
  }

  /** A test's alarm run at `nowMs`, made through `alarm()` itself so metrics count it as the platform's would be. */
  #requestedRun: RequestedRun | null = null;

  #runAlarmAsCalled(nowMs: number): Promise<AlarmReport> {
    const requested: RequestedRun = { nowMs };
    this.#requestedRun = requested;
    let done: Promise<void>;
    try {
      // The base's own (metered) alarm, even where a test subclass switched the platform alarm off.
      done = TollgateObject.prototype.alarm.call(this);
    } finally {
      this.#requestedRun = null;
    }
    return done.then(() => requested.report!);
  }

  /** Every data table, for a backup (Admin only: no entrypoint exposes the object itself). */
  exportTables(): ObjectDump {
    return exportTables(this.sql);
  }

  /**
   * Restores a backup's tables into this object, which must be empty, then points the alarm at
   * the restored tasks. The dump is validated here too: the caller is not trusted.
   */
  async importTables(input: unknown): Promise<{ rows: Record<string, number> }> {
    const dump = parseInput(objectDumpSchema, input, "table import");
    const rows = importTables(this.ctx.storage, dump);
    this.#spec.afterImport?.(this);
    await this.scheduler.rearm();
    return { rows };
  }

  /** Whether the object holds any data, so a restore can check every target before writing any. */
  holdsData(): boolean {
    return holdsData(this.sql);
  }

  /** The alarm's work, returning what it did (tests and diagnostics read the report). */
  #runAlarm(nowMs: number): Promise<AlarmReport> {
    this.#alarmDidWork = false;
    const handlers: Record<string, TaskHandler> = {};
    for (const [kind, handler] of Object.entries(this.#wrapTasks(this.#spec.tasks(this)))) {
      handlers[kind] = (payload, at) => {
        this.#alarmDidWork = true;
        return handler(payload, at);
      };
    }
    let pushes = 0;
    if (this.#kind !== null) {
      handlers[METRICS_PUSH_TASK] = async (_payload, at) => {
        await this.#pushMetrics(at);
        pushes += 1;
      };
    }
    // `ran` counts the object's own tasks; a metrics push is housekeeping, reported apart.
    return this.scheduler.runDue(handlers, nowMs).then((report) => ({ ...report, ran: report.ran - pushes, metricsPushes: pushes }));
  }

  /**
   * Counts a finished call in memory; the counts are written at most `METRICS_BUFFER_MS` later
   * (one upsert per method, code and latency bucket), not once per call. The pending timer keeps
   * the object resident until they are written, so only a crash can lose them, and then at
   * most that window (docs/metrics.md). An alarm that only pushed metrics asks for no push of
   * its own count, or every object would wake itself forever.
   */
  #record(outcome: CallOutcome): void {
    if (this.#kind === null) return;
    const config = (this.#metricsConfig ??= loadMetricsConfig(this.env));
    this.#callCounts.add(outcome);
    if (config.bufferMs === 0) this.#callCounts.write(this.ctx.storage);
    else {
      this.#callCountsTimer ??= setTimeout(() => {
        this.#callCountsTimer = null;
        this.#callCounts.write(this.ctx.storage);
        // Durable before the timer's turn ends: an eviction waits for the timer, not for the write.
        this.ctx.storage.sync().catch((error: unknown) => console.error("metrics: could not sync the call counts", error));
      }, config.bufferMs);
    }
    if (outcome.method === "alarm" && !this.#alarmDidWork) return;
    // The scheduler knows the push's due time in memory: only the first call of a window writes the task.
    const pushEveryMs = config.pushEveryMs;
    this.scheduler
      .schedule(METRICS_PUSH_TASK, pushDueMs(floorTo(outcome.endMs, MINUTE_MS), pushEveryMs), null, METRICS_PUSH_TASK, "earliest")
      .catch((error: unknown) => console.error("metrics: could not schedule the push", error));
  }

  async #pushMetrics(nowMs: number): Promise<void> {
    // Closed minutes may still be in memory: the push sends what is written.
    this.#callCounts.write(this.ctx.storage);
    const config = loadMetricsConfig(this.env);
    const next = await pushClosedMinutes(
      this.ctx.storage,
      this.env,
      { id: this.ctx.id.toString(), kind: this.#kind!, shards: config.shards },
      nowMs,
    );
    if (next !== null)
      await this.scheduler.schedule(METRICS_PUSH_TASK, pushDueMs(next, config.pushEveryMs), null, METRICS_PUSH_TASK, "replace");
  }
}

/** An alarm run a test asked for: its time, and the report once it started. */
interface RequestedRun {
  nowMs: number;
  report?: Promise<AlarmReport>;
}

/** The class directly below TollgateObject in `prototype`'s chain: what metrics call the object. */
function objectClassOf(prototype: object): object {
  let current = prototype;
  for (;;) {
    const parent = Object.getPrototypeOf(current) as object;
    if (parent === TollgateObject.prototype) return current;
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
