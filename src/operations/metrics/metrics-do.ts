import type { Env } from "../../platform/env";
import { loadMetricsConfig } from "../../platform/metering/config";
import { DAY_MS, GRANULARITY_MS, type Granularity, HOUR_MS, MINUTE_MS, floorTo, planRange } from "../../platform/buckets";
import type { MetricRow } from "../../platform/metering/model";
import { metricsPushSchema, shardQuerySchema } from "./schemas";
import {
  closeFinishedBuckets,
  pruneExpiredRollups,
  rebuildDirtyBuckets,
  rollupCoverage,
  rollupWatermark,
  type RollupStore,
} from "../../platform/rollup-compaction";
import { all, maybeOne, run } from "../../platform/sql";
import { type ObjectHooks, type ObjectSpec, TollgateObject } from "../../platform/tollgate-object";
import { METRICS_DO_MIGRATIONS } from "./metrics-tables";
import { MetricsShardMemory, writeRollup } from "./metrics-shard";
import { addGroup, fromStoredRow, type RollupGroup, STORED_ROLLUP_COLUMNS, type StoredRollupRow, toMetricRows } from "./rollup-groups";

export { METRICS_ACCEPT_WINDOW_MS } from "./metrics-shard";
/** Push receipts are kept this long: far longer than a sender retries a batch (GIVE_UP_MS). */
export const RECEIPT_TTL_MS = 2 * DAY_MS;
/** An hour (day) is compacted this long after it ends, when its last pushes are in. */
export const METRICS_CLOSE_GRACE_MS = 10 * MINUTE_MS;
/** A compacted hour that took a late minute is rebuilt this soon, batching the pushes around it. */
export const LATE_COMPACT_DELAY_MS = 2_000;

export interface ShardAnswer {
  range: { from: number; to: number };
  rows: MetricRow[];
  storedBytes: { kind: string; bytes: number; sources: number }[];
}

/** What a test's subclass may do besides the base's controls: write the journal now. */
export interface MetricsShardHooks extends ObjectHooks {
  attachShard?: (controls: { writeJournal(): void }) => void;
}

/**
 * One metrics rollup shard (`metrics:<n>`). Isolates push their objects' and entrypoints'
 * counts here (docs/metrics.md); a push changes memory only, and one journal row per
 * METRICS_BUFFER_MS makes what arrived durable, whatever the number of pushes (metrics-shard.ts).
 * A source's batches are stored once each (its highest push id is kept), so a doubled or retried
 * push changes nothing. The journal is folded into minute rollups, one row per method and
 * outcome, which an alarm compacts into hours and days (a late minute re-derives its hour) and
 * prunes by METRICS_RETENTION with path statistics' own compaction (rollup-compaction.ts). Not
 * metered itself: its pushes would be counted by the very pushes they cause.
 */
export class MetricsDO extends TollgateObject {
  static readonly #spec: ObjectSpec<MetricsDO> = {
    component: "metrics-rollup",
    migrations: METRICS_DO_MIGRATIONS,
    metrics: false,
    tasks: (self) => ({ compact: (_payload, nowMs) => self.#compact(nowMs) }),
  };

  /** The rollup tables as the shared compaction sees them (see platform/rollup-compaction). */
  readonly #rollups: RollupStore = { sql: this.sql, transactionSync: (closure) => this.ctx.storage.transactionSync(closure) };
  readonly #memory: MetricsShardMemory;
  #journalTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(ctx: DurableObjectState, env: Env, hooks?: MetricsShardHooks) {
    super(ctx, env, MetricsDO.#spec, hooks);
    this.#memory = new MetricsShardMemory(this.#rollups);
    hooks?.attachShard?.({ writeJournal: () => this.#writeJournal() });
  }

  push(input: unknown): Promise<{ stored: number; duplicates: number; refusedRows: number }> {
    return this.handle("push", metricsPushSchema, input, async (parsed) => {
      const nowMs = this.now();
      const { stored, duplicates, refusedRows, late } = this.#memory.receive(parsed, nowMs, rollupWatermark(this.sql, "hour"));
      if (this.#memory.holdsUnjournaled) this.#armJournal();
      // What was taken is folded at the latest by the next compaction; a late minute makes its hour
      // stale until rebuilt: soon. (The scheduler writes nothing when the task is already due earlier.)
      if (stored > 0 || (parsed.sizes?.length ?? 0) > 0) {
        const due = late ? nowMs + LATE_COMPACT_DELAY_MS : floorTo(nowMs, HOUR_MS) + HOUR_MS + METRICS_CLOSE_GRACE_MS;
        await this.scheduler.schedule("compact", due, null, "compact", "earliest");
      }
      return { stored, duplicates, refusedRows };
    });
  }

  /** Every count in `range` (whole minutes), summed per kind, method, outcome and latency bucket. */
  query(input: unknown): Promise<ShardAnswer> {
    return this.handle("query", shardQuerySchema, input, async (parsed) => {
      const nowMs = this.now();
      const { retention } = loadMetricsConfig(this.env);
      const plan = planRange(parsed.range, rollupCoverage(this.sql, retention, nowMs));
      const sums = new Map<string, RollupGroup>();
      for (const granularity of ["minute", "hour", "day"] as const) {
        for (const segment of plan.segments[granularity]) {
          for (const row of all<StoredRollupRow>(
            this.sql,
            `SELECT ${STORED_ROLLUP_COLUMNS} FROM rollups WHERE granularity = ? AND bucket_ms >= ? AND bucket_ms < ?`,
            granularity,
            segment.from,
            segment.to,
          )) {
            addGroup(sums, fromStoredRow(row, 0));
          }
        }
      }
      // Received and not folded yet: in memory, whatever granularity answers its minute.
      for (const group of this.#memory.unfolded()) {
        if (group.bucketMs >= plan.range.from && group.bucketMs < plan.range.to) addGroup(sums, { ...group, bucketMs: 0 });
      }
      return { range: plan.range, rows: [...sums.values()].flatMap(toMetricRows), storedBytes: this.#storedBytes() };
    });
  }

  /** Each kind's stored bytes: the sizes table, with the sizes received since the last fold in place of theirs. */
  #storedBytes(): ShardAnswer["storedBytes"] {
    const byKind = new Map<string, { kind: string; bytes: number; sources: number }>();
    for (const row of all<{ kind: string; bytes: number; sources: number }>(
      this.sql,
      "SELECT kind, SUM(bytes) AS bytes, COUNT(*) AS sources FROM sizes GROUP BY kind",
    )) {
      byKind.set(row.kind, { ...row });
    }
    const entry = (kind: string) => byKind.get(kind) ?? byKind.set(kind, { kind, bytes: 0, sources: 0 }).get(kind)!;
    for (const [object, size] of this.#memory.unfoldedSizes()) {
      const stored = maybeOne<{ kind: string; bytes: number }>(this.sql, "SELECT kind, bytes FROM sizes WHERE source = ?", object);
      if (stored !== undefined) {
        entry(stored.kind).bytes -= stored.bytes;
        entry(stored.kind).sources -= 1;
      }
      entry(size.kind).bytes += size.bytes;
      entry(size.kind).sources += 1;
    }
    return [...byKind.values()].filter((kind) => kind.sources > 0).sort((a, b) => (a.kind < b.kind ? -1 : 1));
  }

  #armJournal(): void {
    if (this.#journalTimer !== null) return;
    const { bufferMs } = loadMetricsConfig(this.env);
    this.#journalTimer = setTimeout(() => {
      this.#journalTimer = null;
      this.#writeJournal();
      // Durable before the timer's turn ends: an eviction waits for the timer, not for the write.
      this.ctx.storage.sync().catch((error: unknown) => console.error("metrics: could not sync the journal", error));
    }, bufferMs);
  }

  /** One journal row for what arrived since the last; a journal long enough is folded. */
  #writeJournal(): void {
    this.#memory.writeJournal(this.now());
    if (this.#memory.foldDue) this.#memory.fold(rollupWatermark(this.sql, "hour"));
  }

  /**
   * Folds what was received, closes finished hours and days, rebuilds every dirty hour from its
   * minutes and day from its hours (each rebuild replaces its bucket, so running twice changes
   * nothing), then applies retention. Recurring: the next run is when the next hour closes.
   */
  async #compact(nowMs: number): Promise<void> {
    const { retention } = loadMetricsConfig(this.env);
    this.#memory.fold(rollupWatermark(this.sql, "hour"));
    for (const granularity of ["hour", "day"] as const) {
      closeFinishedBuckets(this.#rollups, granularity, nowMs, METRICS_CLOSE_GRACE_MS);
      rebuildDirtyBuckets(this.#rollups, granularity, (bucket) => this.#rebuild(granularity, bucket));
    }
    this.ctx.storage.transactionSync(() => {
      pruneExpiredRollups(this.sql, retention, nowMs);
      run(this.sql, "DELETE FROM receipts WHERE at_ms < ?", nowMs - RECEIPT_TTL_MS);
      // An object silent for the whole day retention is taken as gone (its size no longer counted).
      run(this.sql, "DELETE FROM sizes WHERE at_ms < ?", nowMs - retention.days);
    });
    this.#memory.forgetMarksBefore(nowMs - RECEIPT_TTL_MS);
    await this.scheduler.schedule("compact", floorTo(nowMs, HOUR_MS) + HOUR_MS + METRICS_CLOSE_GRACE_MS, null, "compact", "replace");
  }

  /** Replaces an hour (day) with the sums of its minutes (hours): counts add, unlike sketches. */
  #rebuild(granularity: "hour" | "day", bucket: number): void {
    const finer: Granularity = granularity === "hour" ? "minute" : "hour";
    const groups = new Map<string, RollupGroup>();
    for (const row of all<StoredRollupRow>(
      this.sql,
      `SELECT ${STORED_ROLLUP_COLUMNS} FROM rollups WHERE granularity = ? AND bucket_ms >= ? AND bucket_ms < ?`,
      finer,
      bucket,
      bucket + GRANULARITY_MS[granularity],
    )) {
      addGroup(groups, fromStoredRow(row, bucket));
    }
    run(this.sql, "DELETE FROM rollups WHERE granularity = ? AND bucket_ms = ?", granularity, bucket);
    for (const group of groups.values()) writeRollup(this.sql, granularity, group);
  }
}
