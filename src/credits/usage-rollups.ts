import type { Entry, Usage, UsageReport, UsageReportItem } from "../../rpc/credits";
import { all, maybeOne, one, run } from "../platform/sql";
import type { Journal } from "./journal";
import { DEFAULT_MODEL } from "./pricing";
import { dayOf } from "./invariants";

const SPAN_MS = { "1h": 3_600_000, "24h": 86_400_000, "7d": 7 * 86_400_000, "30d": 30 * 86_400_000 } as const;
const GROUP_COLUMN = { day: "day", key: "key_id", model: "model", operation: "operation" } as const;

/** Most entries one catch-up step reads; a backlog (after a restore) is worked off in steps. */
const CATCH_UP_BATCH = 500;

/** One entry's share of a rollup row. */
interface RollupDelta {
  day: string;
  keyId: string;
  operation: string;
  model: string;
  amount: number;
  count: number;
  usage?: Usage;
}

/**
 * The `usage_rollups` table: spend per UTC day, key, operation and model, with tokens.
 *
 * Rollups are a pure function of the entries, so they are not written with each entry: they
 * are brought up to date from the journal (`catchUp`, after `rollup_checkpoint.seq`), which
 * the ledger runs shortly after its writes, before every report, and in its alarm. Many calls
 * then write each rollup row once, and nothing can be lost: whatever a crash interrupts is
 * derived again from the durable entries.
 */
export class UsageRollups {
  constructor(
    private readonly sql: SqlStorage,
    private readonly journal: Journal,
  ) {}

  /** Whether entries past the checkpoint wait to be rolled up. */
  behind(): boolean {
    const row = one<{ seq: number; last: number | null }>(
      this.sql,
      "SELECT COALESCE((SELECT seq FROM rollup_checkpoint WHERE id = 1), 0) AS seq, (SELECT MAX(seq) FROM entries) AS last",
    );
    return (row.last ?? 0) > row.seq;
  }

  /** Rolls up every entry past the checkpoint, writing each touched rollup row once. Runs inside the caller's transaction. */
  catchUp(): void {
    for (;;) {
      const from = maybeOne<{ seq: number }>(this.sql, "SELECT seq FROM rollup_checkpoint WHERE id = 1")?.seq ?? 0;
      const entries = all<{ seq: number; body: string }>(
        this.sql,
        "SELECT seq, body FROM entries WHERE seq > ? ORDER BY seq LIMIT ?",
        from,
        CATCH_UP_BATCH,
      );
      if (entries.length === 0) return;
      const rows = new Map<string, RollupDelta>();
      for (const { body } of entries) {
        const delta = this.#deltaOf(JSON.parse(body) as Entry);
        if (delta === undefined) continue;
        const id = [delta.day, delta.keyId, delta.operation, delta.model].join("\u0000");
        const sum = rows.get(id);
        rows.set(id, sum === undefined ? delta : merged(sum, delta));
      }
      for (const delta of rows.values()) this.#write(delta);
      run(
        this.sql,
        "INSERT INTO rollup_checkpoint (id, seq) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq",
        entries.at(-1)!.seq,
      );
    }
  }

  /**
   * What an entry adds to its rollup: a debit (a charge: its usage's operation and model) or a
   * commit (priced: its usage's; else operation `hold`) adds its amount and one call; a refund
   * takes its amount off the row of the entry it refunds, on that entry's day; nothing else counts.
   */
  #deltaOf(entry: Entry): RollupDelta | undefined {
    if (entry.kind === "debit" || entry.kind === "commit") {
      const plain = entry.kind === "debit" ? "debit" : "hold";
      return {
        ...this.#bucketOf(entry, plain),
        amount: entry.amount,
        count: 1,
        ...(entry.usage === undefined ? {} : { usage: entry.usage }),
      };
    }
    if (entry.kind !== "refund" || entry.refundOf === undefined) return undefined;
    const taken = this.journal.get(entry.refundOf);
    return { ...this.#bucketOf(taken, taken.kind === "commit" ? "hold" : "debit"), amount: -entry.amount, count: 0 };
  }

  #bucketOf(entry: Entry, plain: string): Pick<RollupDelta, "day" | "keyId" | "operation" | "model"> {
    const day = dayOf(entry.at);
    const keyId = entry.keyId ?? "";
    if (entry.usage === undefined) return { day, keyId, operation: plain, model: "" };
    return { day, keyId, operation: entry.usage.operation, model: entry.usage.model ?? DEFAULT_MODEL };
  }

  #write(delta: RollupDelta): void {
    const { usage } = delta;
    run(
      this.sql,
      `INSERT INTO usage_rollups (day, key_id, operation, model, amount, count, input_tokens, output_tokens, cached_tokens, cache_write_tokens)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (day, key_id, operation, model) DO UPDATE SET amount = amount + excluded.amount, count = count + excluded.count,
         input_tokens = input_tokens + excluded.input_tokens, output_tokens = output_tokens + excluded.output_tokens,
         cached_tokens = cached_tokens + excluded.cached_tokens, cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens`,
      delta.day,
      delta.keyId,
      delta.operation,
      delta.model,
      delta.amount,
      delta.count,
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

/** Two deltas of one rollup row, summed (tokens included). */
function merged(a: RollupDelta, b: RollupDelta): RollupDelta {
  const tokens = (pick: (usage: Usage) => number | undefined) =>
    (a.usage ? (pick(a.usage) ?? 0) : 0) + (b.usage ? (pick(b.usage) ?? 0) : 0);
  return {
    ...a,
    amount: a.amount + b.amount,
    count: a.count + b.count,
    usage: {
      operation: a.operation,
      inputTokens: tokens((u) => u.inputTokens),
      outputTokens: tokens((u) => u.outputTokens),
      cachedTokens: tokens((u) => u.cachedTokens),
      cacheWriteTokens: tokens((u) => u.cacheWriteTokens),
    },
  };
}
