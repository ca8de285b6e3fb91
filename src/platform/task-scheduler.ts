import type { Migration } from "./migrations";
import { all, maybeOne, run } from "./sql";
import { retryDelayMs, shouldPark } from "./backoff";

/** Runs one due task. Must be idempotent: alarms are at-least-once and may fire twice. */
export type TaskHandler = (payload: unknown, nowMs: number) => void | Promise<void>;

export type TaskHandlers = Readonly<Record<string, TaskHandler>>;

/** A JSON object, shallowly typed (deep recursive types defeat the RPC stub typings). */
export type JsonObject = Record<string, string | number | boolean | null | object>;

export interface Task {
  id: string;
  kind: string;
  dueMs: number;
  /** Whatever was scheduled, after a round trip through JSON. */
  payload: JsonObject | string | number | boolean | null;
  attempts: number;
  lastError: string | null;
  parkedAtMs: number | null;
}

export interface AlarmReport {
  ran: number;
  failed: number;
  parked: number;
  nextDueMs: number | null;
}

export const SCHEDULER_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "create _tasks",
    up(sql) {
      sql.exec(`CREATE TABLE _tasks (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        due_ms INTEGER NOT NULL,
        payload TEXT NOT NULL,
        revision INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        parked_at_ms INTEGER
      )`);
      sql.exec("CREATE INDEX _tasks_by_due ON _tasks (due_ms) WHERE parked_at_ms IS NULL");
    },
  },
];

type TaskRow = {
  id: string;
  kind: string;
  due_ms: number;
  payload: string;
  revision: number;
  attempts: number;
  last_error: string | null;
  parked_at_ms: number | null;
};

/**
 * The one table of timed work behind an object's single alarm.
 *
 * `schedule` is an idempotent upsert keyed by task id. `runDue` runs every due task in its
 * own try/catch, so one failure never blocks the rest; a failing task is retried with
 * exponential backoff and parked after a bounded number of failures. The alarm is then
 * re-armed for the earliest remaining task, or deleted when there is none.
 *
 * A handler may reschedule its own id (a recurring task): each upsert bumps the row's
 * revision, and completion deletes only the revision that ran.
 */
export class TaskScheduler {
  /**
   * Due times this instance wrote or read, by task id, so a `keep` upsert that cannot change
   * anything (the common case on a hot path: the cleanup is already due later) costs no SQL
   * and no await. Only this instance writes `_tasks`, so the cache stays true; anything other
   * than `schedule` that touches a row forgets its entry, and an eviction forgets them all.
   */
  readonly #knownDue = new Map<string, number>();
  /** The alarm as this instance last set or read it; `undefined` when not known. */
  #armedMs: number | null | undefined;

  constructor(private readonly storage: DurableObjectStorage) {}

  /**
   * Creates or replaces task `id` (default: `kind`) to run at `dueMs`, and arms the alarm if
   * this makes it due earlier. The row is written synchronously, before the first await.
   *
   * `keep` decides what happens when the task already exists: `"replace"` takes the new due
   * time; `"earliest"` / `"latest"` keep whichever due time is earlier / later (a cleanup that
   * must not be postponed forever, or one that should wait until activity stops).
   */
  async schedule(
    kind: string,
    dueMs: number,
    payload: unknown = null,
    id: string = kind,
    keep: "replace" | "earliest" | "latest" = "replace",
  ): Promise<void> {
    const known = this.#knownDue.get(id);
    if (known !== undefined && ((keep === "latest" && known >= dueMs) || (keep === "earliest" && known <= dueMs))) return;
    const onlyIf =
      keep === "earliest" ? "WHERE excluded.due_ms < _tasks.due_ms" : keep === "latest" ? "WHERE excluded.due_ms > _tasks.due_ms" : "";
    run(
      this.storage.sql,
      `INSERT INTO _tasks (id, kind, due_ms, payload) VALUES (?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, due_ms = excluded.due_ms,
         payload = excluded.payload, revision = _tasks.revision + 1, attempts = 0,
         last_error = NULL, parked_at_ms = NULL ${onlyIf}`,
      id,
      kind,
      dueMs,
      JSON.stringify(payload),
    );
    const due = maybeOne<{ due_ms: number }>(this.storage.sql, "SELECT due_ms FROM _tasks WHERE id = ?", id)!.due_ms;
    this.#knownDue.set(id, due);
    if (this.#armedMs === undefined) {
      const read = await this.storage.getAlarm();
      // Another call may have armed the alarm while this one waited; its value is newer.
      if (this.#armedMs === undefined) this.#armedMs = read;
    }
    if (this.#armedMs === null || this.#armedMs > due) await this.arm(due);
  }

  /** Removes task `id` if it exists; the alarm is re-armed lazily by the next run. */
  cancel(id: string): boolean {
    this.#knownDue.delete(id);
    return run(this.storage.sql, "DELETE FROM _tasks WHERE id = ?", id) > 0;
  }

  /**
   * The due time of task `id` as this instance last wrote or read it, when it knows one: the
   * task then exists and is not parked (a run, a failure or a cancel forgets it). No SQL.
   */
  knownDue(id: string): number | undefined {
    return this.#knownDue.get(id);
  }

  /** Whether task `id` exists: without a query when this instance knows its due time. */
  exists(id: string): boolean {
    return this.#knownDue.has(id) || this.get(id) !== undefined;
  }

  get(id: string): Task | undefined {
    const row = maybeOne<TaskRow>(this.storage.sql, "SELECT * FROM _tasks WHERE id = ?", id);
    return row && toTask(row);
  }

  list(): Task[] {
    return all<TaskRow>(this.storage.sql, "SELECT * FROM _tasks ORDER BY due_ms, id").map(toTask);
  }

  /** Runs every task due at `nowMs`, then re-arms the alarm. The body of an object's `alarm()`. */
  async runDue(handlers: TaskHandlers, nowMs: number = Date.now()): Promise<AlarmReport> {
    // The alarm that fired (if any) is spent; `rearm` below sets the next one.
    this.#armedMs = undefined;
    const due = all<TaskRow>(
      this.storage.sql,
      "SELECT * FROM _tasks WHERE parked_at_ms IS NULL AND due_ms <= ? ORDER BY due_ms, id",
      nowMs,
    );
    const report: AlarmReport = { ran: 0, failed: 0, parked: 0, nextDueMs: null };
    for (const task of due) {
      try {
        const handler = handlers[task.kind];
        if (handler === undefined) throw new Error(`no handler for task kind "${task.kind}"`);
        await handler(JSON.parse(task.payload), nowMs);
        if (run(this.storage.sql, "DELETE FROM _tasks WHERE id = ? AND revision = ?", task.id, task.revision) > 0) {
          this.#knownDue.delete(task.id);
        }
        report.ran += 1;
      } catch (error) {
        const parked = this.recordFailure(task, error, nowMs);
        report.failed += 1;
        if (parked) report.parked += 1;
      }
    }
    report.nextDueMs = await this.rearm();
    return report;
  }

  /** Points the alarm at the earliest runnable task, or deletes it. Returns the time armed. */
  async rearm(): Promise<number | null> {
    const next =
      maybeOne<{ due: number | null }>(this.storage.sql, "SELECT MIN(due_ms) AS due FROM _tasks WHERE parked_at_ms IS NULL")?.due ?? null;
    if (next === null) {
      this.#armedMs = null;
      await this.storage.deleteAlarm();
    } else {
      await this.arm(next);
    }
    return next;
  }

  /** Puts parked tasks back in line, due now. Returns how many. */
  async retryParked(nowMs: number = Date.now()): Promise<number> {
    const count = run(
      this.storage.sql,
      "UPDATE _tasks SET parked_at_ms = NULL, attempts = 0, due_ms = ? WHERE parked_at_ms IS NOT NULL",
      nowMs,
    );
    this.#knownDue.clear();
    if (count > 0) await this.rearm();
    return count;
  }

  /** Sets the alarm. The cache is updated first, so a concurrent `schedule` compares against it. */
  private async arm(dueMs: number): Promise<void> {
    this.#armedMs = dueMs;
    await this.storage.setAlarm(dueMs);
  }

  private recordFailure(task: TaskRow, error: unknown, nowMs: number): boolean {
    this.#knownDue.delete(task.id);
    const failures = task.attempts + 1;
    const park = shouldPark(failures);
    const message = error instanceof Error ? error.message : String(error);
    console.error(`task ${task.kind}/${task.id} failed (attempt ${failures}): ${message}`);
    run(
      this.storage.sql,
      `UPDATE _tasks SET attempts = ?, last_error = ?, due_ms = ?, parked_at_ms = ?
       WHERE id = ? AND revision = ?`,
      failures,
      message.slice(0, 1_000),
      nowMs + retryDelayMs(failures),
      park ? nowMs : null,
      task.id,
      task.revision,
    );
    return park;
  }
}

function toTask(row: TaskRow): Task {
  return {
    id: row.id,
    kind: row.kind,
    dueMs: row.due_ms,
    payload: JSON.parse(row.payload) as Task["payload"],
    attempts: row.attempts,
    lastError: row.last_error,
    parkedAtMs: row.parked_at_ms,
  };
}
