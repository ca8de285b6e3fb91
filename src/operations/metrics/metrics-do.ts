import type { Env } from "../../platform/env";
import type { MetricsSurface } from "../../../rpc/metrics";
import { loadMetricsConfig } from "../../platform/metering/config";
import { DAY_MS, GRANULARITY_MS, type Granularity, HOUR_MS, MINUTE_MS, floorTo, planRange } from "../../platform/buckets";
import type { MetricRow } from "../../platform/metering/model";
import { parseInput } from "../../platform/schemas";
import { metricsPushSchema, shardQuerySchema } from "./schemas";
import type { Migration } from "../../platform/migrations";
import {
  closeFinishedBuckets,
  markRollupDirty,
  pruneExpiredRollups,
  rebuildDirtyBuckets,
  rollupCoverage,
  rollupWatermark,
  type RollupStore,
} from "../../platform/rollup-compaction";
import { all, maybeOne, run } from "../../platform/sql";
import { type ObjectHooks, type ObjectSpec, TollgateObject } from "../../platform/tollgate-object";

/** Rows for minutes older than this are refused (their hour may already be final and its minutes gone). */
export const METRICS_ACCEPT_WINDOW_MS = 24 * HOUR_MS;
/** Push receipts are kept this long: a push retried later than that would count again. */
export const RECEIPT_TTL_MS = 2 * DAY_MS;
/** An hour (day) is compacted this long after it ends, when its last pushes are in. */
export const METRICS_CLOSE_GRACE_MS = 10 * MINUTE_MS;

/** A compacted hour that took a late minute is rebuilt this soon, batching the pushes around it. */
export const LATE_COMPACT_DELAY_MS = 2_000;

const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "receipts, rollups, sizes, dirty buckets",
    up(sql) {
      sql.exec(
        "CREATE TABLE receipts (source TEXT NOT NULL, push_id INTEGER NOT NULL, at_ms INTEGER NOT NULL, PRIMARY KEY (source, push_id)) WITHOUT ROWID",
      );
      sql.exec(`CREATE TABLE rollups (
        granularity TEXT NOT NULL,
        bucket_ms INTEGER NOT NULL,
        surface TEXT NOT NULL,
        kind TEXT NOT NULL,
        method TEXT NOT NULL,
        code TEXT NOT NULL,
        latency_bucket INTEGER NOT NULL,
        calls INTEGER NOT NULL,
        rows_read INTEGER NOT NULL,
        rows_written INTEGER NOT NULL,
        PRIMARY KEY (granularity, bucket_ms, surface, kind, method, code, latency_bucket)
      ) WITHOUT ROWID`);
      sql.exec(
        "CREATE TABLE sizes (source TEXT PRIMARY KEY, kind TEXT NOT NULL, bytes INTEGER NOT NULL, at_ms INTEGER NOT NULL) WITHOUT ROWID",
      );
      sql.exec(
        "CREATE TABLE dirty (granularity TEXT NOT NULL, bucket_ms INTEGER NOT NULL, PRIMARY KEY (granularity, bucket_ms)) WITHOUT ROWID",
      );
      sql.exec("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID");
    },
  },
];

export interface ShardAnswer {
  range: { from: number; to: number };
  rows: MetricRow[];
  storedBytes: { kind: string; bytes: number; sources: number }[];
}

type SumRow = {
  surface: MetricsSurface;
  kind: string;
  method: string;
  code: string;
  latency_bucket: number;
  calls: number;
  rows_read: number;
  rows_written: number;
};

/**
 * One metrics rollup shard (`metrics:<n>`). Objects push their closed minutes and isolates
 * their entrypoint counts here; each batch is stored once per (source, push id), so a doubled
 * or retried push changes nothing. Counts are summed into minute rollups, which an alarm
 * compacts into hours and days (a late push re-derives its hour from the minutes) and prunes
 * by METRICS_RETENTION with path statistics' own compaction (storage/rollup-compaction.ts);
 * only the rebuild, a sum of counts, is its own. Not metered itself: its pushes would be counted
 * by the very pushes they cause.
 */
export class MetricsDO extends TollgateObject {
  static readonly #spec: ObjectSpec<MetricsDO> = {
    component: "metrics-rollup",
    migrations: MIGRATIONS,
    metrics: false,
    tasks: (self) => ({ compact: (_payload, nowMs) => self.#compact(nowMs) }),
  };

  /** The rollup tables as the shared compaction sees them (see storage/rollup-compaction). */
  readonly #rollups: RollupStore = { sql: this.sql, transactionSync: (closure) => this.ctx.storage.transactionSync(closure) };

  constructor(ctx: DurableObjectState, env: Env, hooks?: ObjectHooks) {
    super(ctx, env, MetricsDO.#spec, hooks);
  }

  async push(input: unknown): Promise<{ stored: number; duplicates: number; refusedRows: number }> {
    const parsed = parseInput(metricsPushSchema, input, "metrics push");
    const nowMs = this.now();
    let stored = 0;
    let duplicates = 0;
    let refusedRows = 0;
    let late = false;
    this.ctx.storage.transactionSync(() => {
      const hourWatermark = rollupWatermark(this.sql, "hour");
      for (const batch of parsed.batches) {
        const seen = maybeOne(this.sql, "SELECT 1 AS seen FROM receipts WHERE source = ? AND push_id = ?", parsed.source, batch.pushId);
        if (seen !== undefined) {
          duplicates += 1;
          continue;
        }
        run(this.sql, "INSERT INTO receipts (source, push_id, at_ms) VALUES (?, ?, ?)", parsed.source, batch.pushId, nowMs);
        stored += 1;
        for (const row of batch.rows) {
          const minute = floorTo(row.minuteMs, MINUTE_MS);
          if (minute < nowMs - METRICS_ACCEPT_WINDOW_MS || minute > nowMs + 2 * MINUTE_MS) {
            refusedRows += 1;
            continue;
          }
          this.sql.exec(
            `INSERT INTO rollups (granularity, bucket_ms, surface, kind, method, code, latency_bucket, calls, rows_read, rows_written)
             VALUES ('minute', ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (granularity, bucket_ms, surface, kind, method, code, latency_bucket) DO UPDATE SET
               calls = calls + excluded.calls, rows_read = rows_read + excluded.rows_read, rows_written = rows_written + excluded.rows_written`,
            minute,
            parsed.surface,
            row.kind,
            row.method,
            row.code,
            row.bucket,
            row.calls,
            row.rowsRead,
            row.rowsWritten,
          );
          // A late minute of an hour already compacted: that hour is rebuilt from its minutes.
          if (minute < hourWatermark) {
            markRollupDirty(this.sql, "hour", floorTo(minute, HOUR_MS));
            late = true;
          }
        }
      }
      if (parsed.storedBytes !== undefined) {
        run(
          this.sql,
          "INSERT INTO sizes (source, kind, bytes, at_ms) VALUES (?, ?, ?, ?) ON CONFLICT (source) DO UPDATE SET kind = excluded.kind, bytes = excluded.bytes, at_ms = excluded.at_ms",
          parsed.source,
          parsed.storedBytes.kind,
          parsed.storedBytes.bytes,
          nowMs,
        );
      }
    });
    // A late minute makes its hour stale until rebuilt: soon. Otherwise at the next hour's close.
    const due = late ? nowMs + LATE_COMPACT_DELAY_MS : floorTo(nowMs, HOUR_MS) + HOUR_MS + METRICS_CLOSE_GRACE_MS;
    if (stored > 0) await this.scheduler.schedule("compact", due, null, "compact", "earliest");
    return { stored, duplicates, refusedRows };
  }

  /** Every count in `range` (whole minutes), summed per kind, method, outcome and latency bucket. */
  async query(input: unknown): Promise<ShardAnswer> {
    const parsed = parseInput(shardQuerySchema, input, "metrics query");
    const nowMs = this.now();
    const { retention } = loadMetricsConfig(this.env);
    const plan = planRange(parsed.range, rollupCoverage(this.sql, retention, nowMs));
    const sums = new Map<string, MetricRow>();
    for (const granularity of ["minute", "hour", "day"] as const) {
      for (const segment of plan.segments[granularity]) {
        const rows = all<SumRow>(
          this.sql,
          `SELECT surface, kind, method, code, latency_bucket, SUM(calls) AS calls, SUM(rows_read) AS rows_read, SUM(rows_written) AS rows_written
           FROM rollups WHERE granularity = ? AND bucket_ms >= ? AND bucket_ms < ?
           GROUP BY surface, kind, method, code, latency_bucket`,
          granularity,
          segment.from,
          segment.to,
        );
        for (const row of rows) {
          const key = [row.surface, row.kind, row.method, row.code, row.latency_bucket].join("\u0000");
          const sum = sums.get(key);
          if (sum === undefined) {
            sums.set(key, {
              surface: row.surface,
              kind: row.kind,
              method: row.method,
              code: row.code,
              bucket: row.latency_bucket,
              calls: row.calls,
              rowsRead: row.rows_read,
              rowsWritten: row.rows_written,
            });
          } else {
            sum.calls += row.calls;
            sum.rowsRead += row.rows_read;
            sum.rowsWritten += row.rows_written;
          }
        }
      }
    }
    const storedBytes = all<{ kind: string; bytes: number; sources: number }>(
      this.sql,
      "SELECT kind, SUM(bytes) AS bytes, COUNT(*) AS sources FROM sizes GROUP BY kind ORDER BY kind",
    );
    return { range: plan.range, rows: [...sums.values()], storedBytes };
  }

  /**
   * Closes finished hours and days, rebuilds every dirty hour from its minutes and day from its
   * hours (each rebuild replaces its bucket, so running twice changes nothing), then applies
   * retention. Recurring: the next run is when the next hour closes.
   */
  async #compact(nowMs: number): Promise<void> {
    const { retention } = loadMetricsConfig(this.env);
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
    await this.scheduler.schedule("compact", floorTo(nowMs, HOUR_MS) + HOUR_MS + METRICS_CLOSE_GRACE_MS, null, "compact", "replace");
  }

  /** Replaces an hour (day) with the sums of its minutes (hours): counts add, unlike sketches. */
  #rebuild(granularity: "hour" | "day", bucket: number): void {
    const finer: Granularity = granularity === "hour" ? "minute" : "hour";
    run(this.sql, "DELETE FROM rollups WHERE granularity = ? AND bucket_ms = ?", granularity, bucket);
    this.sql.exec(
      `INSERT INTO rollups (granularity, bucket_ms, surface, kind, method, code, latency_bucket, calls, rows_read, rows_written)
       SELECT ?, ?, surface, kind, method, code, latency_bucket, SUM(calls), SUM(rows_read), SUM(rows_written)
       FROM rollups WHERE granularity = ? AND bucket_ms >= ? AND bucket_ms < ?
       GROUP BY surface, kind, method, code, latency_bucket`,
      granularity,
      bucket,
      finer,
      bucket,
      bucket + GRANULARITY_MS[granularity],
    );
  }
}
