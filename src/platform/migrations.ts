import { all, run } from "./sql";

/**
 * One schema step. Steps are append-only: once released, a step is never edited or
 * removed; a change is a new step. `version` counts from 1 without gaps.
 */
export interface Migration {
  version: number;
  name: string;
  up(sql: SqlStorage): void;
  /**
   * Rewrites a backup dump's tables taken at the version before this step into this step's
   * schema, as `up` rewrites stored rows, so an older backup still restores. Without it, a dump
   * from before this step is refused (src/platform/table-dump.ts).
   */
  upgradeDump?(tables: DumpTable[]): DumpTable[];
}

/** One table of a backup dump: a stored value is SQLite's scalar, a blob base64 (`{ b64 }`). */
export interface DumpTable {
  name: string;
  columns: string[];
  rows: (null | string | number | { b64: string })[][];
}

/** Each component's migrations as this isolate's objects applied them: what a dump upgrade reads. */
const appliedByComponent = new Map<string, readonly Migration[]>();

/**
 * The dump upgrades that bring `component` from version `from` to `to`, in order, or undefined
 * when a step between has none (or the component's migrations are not known in this isolate).
 */
export function dumpUpgrades(component: string, from: number, to: number): ((tables: DumpTable[]) => DumpTable[])[] | undefined {
  const steps = appliedByComponent.get(component)?.filter((step) => step.version > from && step.version <= to) ?? [];
  if (steps.length !== to - from || steps.some((step) => step.upgradeDump === undefined)) return undefined;
  return steps.map((step) => (tables) => step.upgradeDump!(tables));
}

const LEDGER = `CREATE TABLE IF NOT EXISTS _migrations (
  component TEXT NOT NULL,
  version INTEGER NOT NULL,
  name TEXT NOT NULL,
  applied_at_ms INTEGER NOT NULL,
  PRIMARY KEY (component, version)
)`;

/**
 * Brings `component`'s schema up to date, synchronously, one transaction per step, and
 * returns the version reached. Meant for a Durable Object's constructor: the object answers
 * nothing until its schema is current, and a failing step rolls back and throws.
 *
 * Several components (an object's own tables, the task scheduler's) share one `_migrations`
 * table, each with its own version sequence.
 */
export function applyMigrations(
  storage: DurableObjectStorage,
  component: string,
  migrations: readonly Migration[],
  nowMs: number = Date.now(),
): number {
  assertContiguous(component, migrations);
  appliedByComponent.set(component, migrations);
  const sql = storage.sql;
  sql.exec(LEDGER);
  const current = currentVersion(sql, component);
  for (const step of migrations) {
    if (step.version <= current) continue;
    storage.transactionSync(() => {
      step.up(sql);
      run(
        sql,
        "INSERT INTO _migrations (component, version, name, applied_at_ms) VALUES (?, ?, ?, ?)",
        component,
        step.version,
        step.name,
        nowMs,
      );
    });
  }
  return migrations.length === 0 ? current : Math.max(current, migrations.at(-1)!.version);
}

/** The version `component` is at; 0 for a fresh object. */
export function currentVersion(sql: SqlStorage, component: string): number {
  sql.exec(LEDGER);
  const rows = all<{ version: number | null }>(sql, "SELECT MAX(version) AS version FROM _migrations WHERE component = ?", component);
  return rows[0]?.version ?? 0;
}

function assertContiguous(component: string, migrations: readonly Migration[]): void {
  migrations.forEach((step, index) => {
    if (step.version !== index + 1) {
      throw new Error(`migrations of ${component} must be numbered 1..n; step ${index} is ${step.version}`);
    }
  });
}
