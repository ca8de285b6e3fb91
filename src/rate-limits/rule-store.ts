import type { Rule } from "../../rpc/rate-limits";
import { SHADOW_COUNT_TTL_MS } from "../platform/retention";
import { all, run } from "../platform/sql";
import type { StateWrite } from "./algorithms/evaluate-rules";
import type { LimiterState, LogEntry } from "./algorithms/rule-state";

type RuleStateRow = {
  rule_name: string;
  algorithm: string;
  period_ms: number;
  window_start_ms: number;
  count: number;
  previous_count: number;
  level: number;
  level_at_ms: number;
};

/**
 * The rule tables of one RateLimiterDO: `rule_states`, `rule_log` (the entries of each
 * sliding_log rule) and `shadow_denials`. Synchronous SQL only, so the object can use it
 * inside the transaction of the check it decides.
 */
export class RuleStore {
  constructor(private readonly sql: SqlStorage) {}

  /** The stored state of each of `rules` that has one. */
  load(rules: readonly Rule[]): Map<string, LimiterState> {
    const names = rules.map((rule) => rule.name);
    const rows = all<RuleStateRow>(this.sql, `SELECT * FROM rule_states WHERE rule_name IN (${names.map(() => "?").join(", ")})`, ...names);
    const logged = rows.filter((row) => row.algorithm === "sliding_log").map((row) => row.rule_name);
    const logs = new Map<string, LogEntry[]>(logged.map((name) => [name, []]));
    if (logged.length > 0) {
      const entries = all<{ rule_name: string; at_ms: number; cost: number }>(
        this.sql,
        `SELECT rule_name, at_ms, cost FROM rule_log WHERE rule_name IN (${logged.map(() => "?").join(", ")})
         ORDER BY rule_name, at_ms`,
        ...logged,
      );
      for (const entry of entries) logs.get(entry.rule_name)!.push({ atMs: entry.at_ms, cost: entry.cost });
    }
    return new Map(rows.map((row) => [row.rule_name, toState(row, logs.get(row.rule_name))]));
  }

  /** Stores each write; `stored` is what was loaded, to notice a rule that stopped being a sliding_log. */
  save(writes: ReadonlyMap<string, StateWrite>, stored: ReadonlyMap<string, LimiterState>): void {
    for (const [name, { state, expiresAtMs }] of writes) this.saveState(name, state, expiresAtMs, stored.get(name));
  }

  /** Shadow rule name -> calls it would have denied, for those of `names` that have a count. */
  shadowCounts(names: string[]): Map<string, number> {
    const rows = all<{ rule_name: string; denied: number }>(
      this.sql,
      `SELECT rule_name, denied FROM shadow_denials WHERE rule_name IN (${names.map(() => "?").join(", ")})`,
      ...names,
    );
    return new Map(rows.map((row) => [row.rule_name, row.denied]));
  }

  /** Counts one more would-have-denied call for each of the shadow rules `names`. */
  countShadowDenials(names: readonly string[], nowMs: number): void {
    for (const name of names) {
      run(
        this.sql,
        `INSERT INTO shadow_denials (rule_name, denied, last_at_ms) VALUES (?, 1, ?)
         ON CONFLICT (rule_name) DO UPDATE SET denied = denied + 1, last_at_ms = excluded.last_at_ms`,
        name,
        nowMs,
      );
    }
  }

  /** Clears one rule's state, log and shadow count (every rule's without `rule`); returns the states cleared. */
  clear(rule: string | undefined): number {
    if (rule === undefined) {
      run(this.sql, "DELETE FROM rule_log");
      run(this.sql, "DELETE FROM shadow_denials");
      return run(this.sql, "DELETE FROM rule_states");
    }
    run(this.sql, "DELETE FROM rule_log WHERE rule_name = ?", rule);
    run(this.sql, "DELETE FROM shadow_denials WHERE rule_name = ?", rule);
    return run(this.sql, "DELETE FROM rule_states WHERE rule_name = ?", rule);
  }

  /** Deletes rule state and shadow counts nobody can observe any more. */
  expire(nowMs: number): void {
    run(this.sql, "DELETE FROM rule_log WHERE rule_name IN (SELECT rule_name FROM rule_states WHERE expires_at_ms <= ?)", nowMs);
    run(this.sql, "DELETE FROM rule_states WHERE expires_at_ms <= ?", nowMs);
    run(this.sql, "DELETE FROM shadow_denials WHERE last_at_ms <= ?", nowMs - SHADOW_COUNT_TTL_MS);
  }

  private saveState(name: string, state: LimiterState, expiresAtMs: number, previous: LimiterState | undefined): void {
    const window = "windowStartMs" in state ? state : { windowStartMs: 0, count: 0, previousCount: 0 };
    const level = "level" in state ? state : { level: 0, atMs: 0 };
    run(
      this.sql,
      `INSERT INTO rule_states (rule_name, algorithm, period_ms, window_start_ms, count, previous_count, level, level_at_ms, expires_at_ms)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (rule_name) DO UPDATE SET algorithm = excluded.algorithm, period_ms = excluded.period_ms,
         window_start_ms = excluded.window_start_ms, count = excluded.count,
         previous_count = excluded.previous_count, level = excluded.level,
         level_at_ms = excluded.level_at_ms, expires_at_ms = excluded.expires_at_ms`,
      name,
      state.algorithm,
      state.periodMs,
      window.windowStartMs,
      window.count,
      window.previousCount,
      level.level,
      level.atMs,
      expiresAtMs,
    );
    if (state.algorithm === "sliding_log") this.saveLog(name, state.entries);
    else if (previous?.algorithm === "sliding_log") run(this.sql, "DELETE FROM rule_log WHERE rule_name = ?", name);
  }

  /**
   * Stores a log that differs from the stored one only at its ends: a check drops expired
   * entries from the front and appends (or merges into) the last; a refund trims the back; a
   * `countDenied` charge trims the front and appends. So only the two end entries are
   * written, never the whole log.
   */
  private saveLog(name: string, entries: readonly LogEntry[]): void {
    const first = entries[0];
    const last = entries.at(-1);
    if (first === undefined || last === undefined) {
      run(this.sql, "DELETE FROM rule_log WHERE rule_name = ?", name);
      return;
    }
    run(this.sql, "DELETE FROM rule_log WHERE rule_name = ? AND (at_ms < ? OR at_ms > ?)", name, first.atMs, last.atMs);
    for (const entry of first === last ? [last] : [first, last]) {
      run(
        this.sql,
        `INSERT INTO rule_log (rule_name, at_ms, cost) VALUES (?, ?, ?)
         ON CONFLICT (rule_name, at_ms) DO UPDATE SET cost = excluded.cost`,
        name,
        entry.atMs,
        entry.cost,
      );
    }
  }
}

function toState(row: RuleStateRow, entries: LogEntry[] | undefined): LimiterState {
  switch (row.algorithm) {
    case "sliding_log":
      return { algorithm: "sliding_log", periodMs: row.period_ms, entries: entries ?? [] };
    case "token_bucket":
    case "gcra":
      return { algorithm: row.algorithm, periodMs: row.period_ms, level: row.level, atMs: row.level_at_ms };
    default:
      return {
        algorithm: row.algorithm as "fixed_window" | "sliding_window",
        periodMs: row.period_ms,
        windowStartMs: row.window_start_ms,
        count: row.count,
        previousCount: row.previous_count,
      };
  }
}
