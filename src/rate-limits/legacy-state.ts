import * as v from "valibot";
import { invalidArgument } from "../platform/errors";
import type { DumpTable } from "../platform/migrations";
import type { LimiterState, LogEntry } from "./algorithms/rule-state";
import { SubjectState, type SubjectStateRow } from "./subject-state";

/**
 * The limiter's state tables up to schema version 3 (one row per rule in `rule_states`, one per
 * admitted millisecond of a sliding log in `rule_log`, `shadow_denials`, `subject_block`) and
 * their conversion into the one `subject_state` row of version 4: by the migration step for
 * stored rows, and for a backup dump taken before it (`Migration.upgradeDump`).
 */
export const LEGACY_STATE_TABLES = ["rule_states", "rule_log", "shadow_denials", "subject_block"] as const;

const integer = v.pipe(v.number(), v.safeInteger());
const ruleRowSchema = v.object({
  rule_name: v.string(),
  algorithm: v.picklist(["fixed_window", "sliding_window", "sliding_log", "token_bucket", "gcra"]),
  period_ms: integer,
  window_start_ms: integer,
  count: integer,
  previous_count: integer,
  // Version 1 had no level columns; the version 2 step added them with default 0.
  level: v.optional(integer, 0),
  level_at_ms: v.optional(integer, 0),
  expires_at_ms: integer,
});
const logRowSchema = v.object({ rule_name: v.string(), at_ms: integer, cost: integer });
const shadowRowSchema = v.object({ rule_name: v.string(), denied: integer, last_at_ms: integer });
const blockRowSchema = v.object({ until_ms: integer, reason: v.string(), rule_name: v.nullable(v.string()) });
const legacyRowsSchema = v.object({
  rule_states: v.array(ruleRowSchema),
  rule_log: v.array(logRowSchema),
  shadow_denials: v.array(shadowRowSchema),
  subject_block: v.array(blockRowSchema),
});

/** The legacy tables' rows, by table name, as objects keyed by column. */
export type LegacyRows = Record<(typeof LEGACY_STATE_TABLES)[number], Record<string, unknown>[]>;

/** The `subject_state` row the legacy rows convert to, or null when they hold nothing. */
export function legacyStateRow(rows: LegacyRows): SubjectStateRow | null {
  const parsed = v.safeParse(legacyRowsSchema, rows);
  if (!parsed.success) {
    const issue = parsed.issues[0];
    throw invalidArgument(`limiter state rows do not convert: ${v.getDotPath(issue) ?? ""} ${issue.message}`);
  }
  const { rule_states, rule_log, shadow_denials, subject_block } = parsed.output;
  const state = new SubjectState();
  const logs = new Map<string, LogEntry[]>();
  for (const entry of [...rule_log].sort((a, b) => a.at_ms - b.at_ms)) {
    const entries = logs.get(entry.rule_name) ?? [];
    entries.push({ atMs: entry.at_ms, cost: entry.cost });
    logs.set(entry.rule_name, entries);
  }
  for (const row of rule_states)
    state.rules.set(row.rule_name, { state: toState(row, logs.get(row.rule_name) ?? []), expiresAtMs: row.expires_at_ms });
  for (const row of shadow_denials) state.shadow.set(row.rule_name, { denied: row.denied, lastAtMs: row.last_at_ms });
  const block = subject_block[0];
  if (block !== undefined)
    state.block = { untilMs: block.until_ms, reason: block.reason, ...(block.rule_name === null ? {} : { rule: block.rule_name }) };
  return state.isEmpty() ? null : state.toRow();
}

/** `subject_state`'s columns, in table order. */
export const SUBJECT_STATE_COLUMNS = ["id", "rules", "shadow", "block", "check_counts"] as const;

/**
 * A version 3 dump's tables as version 4 has them: the legacy state tables replaced by the
 * `subject_state` table (one row, or none), every other table as it was.
 */
export function upgradeDumpToSubjectState(tables: DumpTable[]): DumpTable[] {
  const rows = Object.fromEntries(LEGACY_STATE_TABLES.map((name) => [name, objectsOf(tables.find((table) => table.name === name))]));
  const row = legacyStateRow(rows as LegacyRows);
  const kept = tables.filter((table) => !(LEGACY_STATE_TABLES as readonly string[]).includes(table.name));
  const converted: DumpTable = {
    name: "subject_state",
    columns: [...SUBJECT_STATE_COLUMNS],
    rows: row === null ? [] : [[1, row.rules, row.shadow, row.block, row.check_counts]],
  };
  return [...kept, converted];
}

function objectsOf(table: DumpTable | undefined): Record<string, unknown>[] {
  if (table === undefined) return [];
  return table.rows.map((cells) => Object.fromEntries(table.columns.map((column, i) => [column, cells[i]])));
}

function toState(row: v.InferOutput<typeof ruleRowSchema>, entries: LogEntry[]): LimiterState {
  switch (row.algorithm) {
    case "sliding_log":
      return { algorithm: "sliding_log", periodMs: row.period_ms, entries };
    case "token_bucket":
    case "gcra":
      return { algorithm: row.algorithm, periodMs: row.period_ms, level: row.level, atMs: row.level_at_ms };
    default:
      return {
        algorithm: row.algorithm,
        periodMs: row.period_ms,
        windowStartMs: row.window_start_ms,
        count: row.count,
        previousCount: row.previous_count,
      };
  }
}
