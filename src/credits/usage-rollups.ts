import type { Usage, UsageReport, UsageReportItem } from "../../rpc/credits";
import { all, run } from "../platform/sql";
import { dayOf } from "./invariants";

const SPAN_MS = { "1h": 3_600_000, "24h": 86_400_000, "7d": 7 * 86_400_000, "30d": 30 * 86_400_000 } as const;
const GROUP_COLUMN = { day: "day", key: "key_id", model: "model", operation: "operation" } as const;

/** The `usage_rollups` table: spend per UTC day, key, operation and model. */
export class UsageRollups {
  constructor(private readonly sql: SqlStorage) {}

  /** Adds a spend (negative: a refund) to its day's rollup, with the tokens of the usage it was priced from. */
  add(atMs: number, keyId: string, operation: string, model: string, amount: number, count: number, usage?: Usage): void {
    run(
      this.sql,
      `INSERT INTO usage_rollups (day, key_id, operation, model, amount, count, input_tokens, output_tokens, cached_tokens, cache_write_tokens)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (day, key_id, operation, model) DO UPDATE SET amount = amount + excluded.amount, count = count + excluded.count,
         input_tokens = input_tokens + excluded.input_tokens, output_tokens = output_tokens + excluded.output_tokens,
         cached_tokens = cached_tokens + excluded.cached_tokens, cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens`,
      dayOf(atMs),
      keyId,
      operation,
      model,
      amount,
      count,
      usage?.inputTokens ?? 0,
      usage?.outputTokens ?? 0,
      usage?.cachedTokens ?? 0,
      usage?.cacheWriteTokens ?? 0,
    );
  }

  /** Spend by day, key, model or operation over whole UTC days. */
  report(range: keyof typeof SPAN_MS | { from: number; to: number }, groupBy: keyof typeof GROUP_COLUMN, nowMs: number): UsageReport {
    const span = typeof range === "string" ? { from: nowMs - SPAN_MS[range], to: nowMs } : range;
    const fromDay = dayOf(span.from);
    const toDay = dayOf(span.to - 1);
    const column = GROUP_COLUMN[groupBy];
    const rows = all<Omit<UsageReportItem, "group"> & { grp: string }>(
      this.sql,
      `SELECT ${column} AS grp, SUM(amount) AS amount, SUM(count) AS count, SUM(input_tokens) AS inputTokens,
         SUM(output_tokens) AS outputTokens, SUM(cached_tokens) AS cachedTokens, SUM(cache_write_tokens) AS cacheWriteTokens
       FROM usage_rollups
       WHERE day >= ? AND day <= ? GROUP BY ${column} ORDER BY ${column}`,
      fromDay,
      toDay,
    );
    return {
      from: Date.parse(`${fromDay}T00:00:00Z`),
      to: Date.parse(`${toDay}T00:00:00Z`) + 86_400_000,
      groupBy,
      items: rows.map(({ grp, ...totals }) => ({ group: grp === "" ? "(none)" : grp, ...totals })),
    };
  }
}
