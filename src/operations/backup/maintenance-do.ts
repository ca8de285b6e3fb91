import type { BackupSchedule } from "../../../rpc/backup";
import type { Env } from "../../platform/env";
import { backupScheduleInputSchema } from "./schemas";
import { BackupService } from "./service";
import type { Migration } from "../../platform/migrations";
import { all, maybeOne, run } from "../../platform/sql";
import { type ObjectHooks, type ObjectSpec, TollgateObject } from "../../platform/tollgate-object";

/** Runs kept in the history. */
const KEEP_RUNS = 50;

const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "backup schedule and runs",
    up(sql) {
      sql.exec(`CREATE TABLE backup_schedule (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        every_ms INTEGER NOT NULL,
        targets TEXT NOT NULL,
        next_slot_ms INTEGER NOT NULL
      )`);
      sql.exec("CREATE TABLE backup_runs (slot_ms INTEGER PRIMARY KEY, backup_id TEXT NOT NULL, at_ms INTEGER NOT NULL)");
    },
  },
];

interface ScheduleRow extends Record<string, SqlStorageValue> {
  every_ms: number;
  targets: string;
  next_slot_ms: number;
}

interface Targets {
  accounts: string[];
  subjects: string[];
  paths: boolean;
  /** Absent in schedules stored before control objects were backed up: those include them now too. */
  control?: boolean;
}

function targetsOf(row: ScheduleRow): Required<Targets> {
  const targets = JSON.parse(row.targets) as Targets;
  return { ...targets, control: targets.control ?? true };
}

/**
 * Deployment-wide maintenance that belongs to no account: scheduled backups. One instance
 * (`MAINTENANCE_NAME`). Each scheduled slot is backed up at most once: a slot's run is
 * recorded after its backup completes, so a retried or doubled alarm skips it.
 */
export class MaintenanceDO extends TollgateObject {
  static readonly #spec: ObjectSpec<MaintenanceDO> = {
    component: "maintenance",
    migrations: MIGRATIONS,
    tasks: (self) => ({ "scheduled-backup": (payload, nowMs) => self.#scheduledBackup(payload, nowMs) }),
  };

  constructor(ctx: DurableObjectState, env: Env, hooks?: ObjectHooks) {
    super(ctx, env, MaintenanceDO.#spec, hooks);
  }

  setBackupSchedule(input: unknown): Promise<BackupSchedule> {
    return this.handle("setBackupSchedule", backupScheduleInputSchema, input, async (parsed) => {
      if (parsed.everyMs === null) {
        run(this.sql, "DELETE FROM backup_schedule");
        this.scheduler.cancel("scheduled-backup");
        await this.scheduler.rearm();
        return this.backupSchedule();
      }
      const targets: Required<Targets> = {
        accounts: [...new Set(parsed.accounts ?? [])],
        subjects: [...new Set(parsed.subjects ?? [])],
        paths: parsed.paths ?? true,
        control: parsed.control ?? true,
      };
      const slot = this.now() + parsed.everyMs;
      run(
        this.sql,
        "INSERT INTO backup_schedule (id, every_ms, targets, next_slot_ms) VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET every_ms = excluded.every_ms, targets = excluded.targets, next_slot_ms = excluded.next_slot_ms",
        parsed.everyMs,
        JSON.stringify(targets),
        slot,
      );
      await this.scheduler.schedule("scheduled-backup", slot, { slotMs: slot }, "scheduled-backup", "replace");
      return this.backupSchedule();
    });
  }

  backupSchedule(): BackupSchedule {
    return this.handle("backupSchedule", () => {
      const row = maybeOne<ScheduleRow>(this.sql, "SELECT every_ms, targets, next_slot_ms FROM backup_schedule WHERE id = 1");
      const runs = all<{ slot_ms: number; backup_id: string; at_ms: number }>(
        this.sql,
        "SELECT slot_ms, backup_id, at_ms FROM backup_runs ORDER BY slot_ms DESC LIMIT 10",
      ).map((r) => ({
        slotMs: r.slot_ms,
        backupId: r.backup_id,
        at: r.at_ms,
      }));
      if (row === undefined) return { everyMs: null, accounts: [], subjects: [], paths: false, control: false, nextAt: null, runs };
      return { everyMs: row.every_ms, ...targetsOf(row), nextAt: row.next_slot_ms, runs };
    });
  }

  /** One scheduled slot's backup: at most once per slot, however often the task runs. */
  async #scheduledBackup(payload: unknown, nowMs: number): Promise<void> {
    const { slotMs } = payload as { slotMs: number };
    const row = maybeOne<ScheduleRow>(this.sql, "SELECT every_ms, targets, next_slot_ms FROM backup_schedule WHERE id = 1");
    if (row === undefined) return;
    const done = maybeOne(this.sql, "SELECT 1 AS done FROM backup_runs WHERE slot_ms = ?", slotMs) !== undefined;
    if (!done) {
      // The control objects include this one: its dump is taken through its own stub, mid-run,
      // so a restore of it finds this slot's task due and no run recorded, and backs up once more.
      const manifest = await new BackupService(this.env).backup({ to: "r2", ...targetsOf(row) });
      run(this.sql, "INSERT OR IGNORE INTO backup_runs (slot_ms, backup_id, at_ms) VALUES (?, ?, ?)", slotMs, manifest.backupId, nowMs);
      run(
        this.sql,
        "DELETE FROM backup_runs WHERE slot_ms NOT IN (SELECT slot_ms FROM backup_runs ORDER BY slot_ms DESC LIMIT ?)",
        KEEP_RUNS,
      );
    }
    // The next slot follows this one; slots missed while the object was down are skipped.
    let next = slotMs + row.every_ms;
    if (next <= nowMs) next = nowMs + row.every_ms;
    if (row.next_slot_ms <= slotMs) {
      run(this.sql, "UPDATE backup_schedule SET next_slot_ms = ? WHERE id = 1", next);
      await this.scheduler.schedule("scheduled-backup", next, { slotMs: next }, "scheduled-backup", "replace");
    }
  }
}
