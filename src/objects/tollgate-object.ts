import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env";
import { type AlarmReport, SCHEDULER_MIGRATIONS, TaskScheduler, type TaskHandlers } from "../scheduling/task-scheduler";
import { applyMigrations, type Migration } from "../storage/migrations";
import { exportTables, holdsData, importTables, type ObjectDump } from "../backup/tables";
import { objectDumpSchema } from "../schemas/backup";
import { parseInput } from "../schemas/common";

/** What every tollgate object declares: its schema and the kinds of timed work it does. */
export interface ObjectSpec {
  /** Names the object's own migration sequence in `_migrations`. */
  component: string;
  migrations: readonly Migration[];
}

/**
 * Shared machinery of the four objects: the schema is brought up to date synchronously in
 * the constructor (so no call ever sees an old schema), and the single alarm is driven by
 * the `_tasks` table. Subclasses name their task handlers in `taskHandlers()`.
 */
export abstract class TollgateObject extends DurableObject<Env> {
  protected readonly sql: SqlStorage;
  protected readonly scheduler: TaskScheduler;

  constructor(ctx: DurableObjectState, env: Env, spec: ObjectSpec) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    applyMigrations(ctx.storage, "scheduler", SCHEDULER_MIGRATIONS);
    applyMigrations(ctx.storage, spec.component, spec.migrations);
    this.scheduler = new TaskScheduler(ctx.storage);
  }

  /** The handlers for this object's task kinds. Each must be safe to run twice. */
  protected abstract taskHandlers(): TaskHandlers;

  override async alarm(): Promise<void> {
    await this.runAlarm();
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
    this.afterImport();
    await this.scheduler.rearm();
    return { rows };
  }

  /** Whether the object holds any data, so a restore can check every target before writing any. */
  holdsData(): boolean {
    return holdsData(this.sql);
  }

  /**
   * Called after a restore wrote the tables: an object that keeps something derived from its
   * tables in memory drops it here (an empty object may have cached its emptiness).
   */
  protected afterImport(): void {}

  /** The alarm's work, returning what it did (tests and diagnostics read the report). */
  protected runAlarm(nowMs: number = Date.now()): Promise<AlarmReport> {
    return this.scheduler.runDue(this.taskHandlers(), nowMs);
  }
}
