import { type Coverage, DAY_MS, GRANULARITY_MS, type Granularity, HOUR_MS, floorTo } from "./buckets";
import { all, maybeOne, run } from "./sql";

/**
 * The compaction both rollup objects (path statistics' aggregator and metrics) run over the
 * same three tables: `rollups` (any columns, keyed first by `granularity` and `bucket_ms`),
 * `dirty (granularity, bucket_ms)` and `meta (key, value)` holding the `hour_watermark` and
 * `day_watermark`. Buckets of a granularity before its watermark are compacted (built from
 * the finer ones); a dirty bucket is one to rebuild. What a bucket holds and how it is rebuilt
 * stays with each object: this module only decides which buckets, when, and what to prune.
 */

/** The object's storage as compaction needs it: its (row-counting) SQL and its transactions. */
export interface RollupStore {
  sql: SqlStorage;
  transactionSync(closure: () => void): void;
}

/** How long each granularity is kept (ms): PATH_RETENTION and METRICS_RETENTION alike. */
export interface RollupRetention {
  minutes: number;
  hours: number;
  days: number;
}

/** The default retention of rollups (PATH_RETENTION and METRICS_RETENTION alike). */
export const DEFAULT_ROLLUP_RETENTION: RollupRetention = { minutes: 26 * HOUR_MS, hours: 35 * DAY_MS, days: 400 * DAY_MS };
/**
 * Floors of each retention. Minutes must outlive the aggregator's 24-hour acceptance window
 * (a late push recomputes its hour from the minutes); hours must cover a day being compacted.
 */
export const MIN_ROLLUP_RETENTION: RollupRetention = { minutes: 25 * HOUR_MS, hours: 2 * DAY_MS, days: 2 * DAY_MS };

const COARSER: Record<Granularity, Granularity | null> = { minute: "hour", hour: "day", day: null };
const FINER: Record<"hour" | "day", Granularity> = { hour: "minute", day: "hour" };

/**
 * Buckets of `granularity` before this are compacted; 0 before the first compaction. Minutes
 * are built from pushes, never compacted, so every minute counts as final.
 */
export function rollupWatermark(sql: SqlStorage, granularity: Granularity): number {
  if (granularity === "minute") return Number.MAX_SAFE_INTEGER;
  return maybeOne<{ value: number }>(sql, "SELECT value FROM meta WHERE key = ?", `${granularity}_watermark`)?.value ?? 0;
}

/** Queues a bucket for rebuilding (once: marking it again before the rebuild changes nothing). */
export function markRollupDirty(sql: SqlStorage, granularity: Granularity, bucket: number): void {
  run(sql, "INSERT OR IGNORE INTO dirty (granularity, bucket_ms) VALUES (?, ?)", granularity, bucket);
}

/**
 * Closes every hour (day) that ended at least `closeGraceMs` ago: marks those with finer data
 * dirty and moves the watermark past them, in one transaction. The grace lets the last pushes
 * of an hour arrive before it is built; a later push marks it dirty again. A day closes only
 * once all its hours are compacted, since it is built from them.
 */
export function closeFinishedBuckets(store: RollupStore, granularity: "hour" | "day", nowMs: number, closeGraceMs: number): void {
  const { sql } = store;
  const size = GRANULARITY_MS[granularity];
  let target = floorTo(nowMs - closeGraceMs, size);
  if (granularity === "day") target = Math.min(target, floorTo(rollupWatermark(sql, "hour"), DAY_MS));
  const finer = FINER[granularity];
  let start = rollupWatermark(sql, granularity);
  if (start === 0) {
    // First compaction: start at the oldest finer data rather than at the epoch.
    const oldest = maybeOne<{ b: number | null }>(sql, "SELECT MIN(bucket_ms) AS b FROM rollups WHERE granularity = ?", finer)?.b;
    if (oldest == null) return;
    start = floorTo(oldest, size);
  }
  if (start >= target) return;
  store.transactionSync(() => {
    const withData = all<{ b: number }>(
      sql,
      "SELECT DISTINCT bucket_ms - (bucket_ms % ?) AS b FROM rollups WHERE granularity = ? AND bucket_ms >= ? AND bucket_ms < ?",
      size,
      finer,
      start,
      target,
    );
    for (const { b } of withData) markRollupDirty(sql, granularity, b);
    run(
      sql,
      "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      `${granularity}_watermark`,
      target,
    );
  });
}

/**
 * Rebuilds every dirty bucket of `granularity`, oldest first, each in its own transaction with
 * clearing its mark, so a crash leaves it dirty rather than half-built. A rebuilt bucket that
 * feeds an already compacted coarser one marks that one dirty in turn. `rebuild` must replace
 * the bucket's rows, so running this twice changes nothing.
 */
export function rebuildDirtyBuckets(store: RollupStore, granularity: Granularity, rebuild: (bucket: number) => void): void {
  const { sql } = store;
  const dirty = all<{ bucket_ms: number }>(sql, "SELECT bucket_ms FROM dirty WHERE granularity = ? ORDER BY bucket_ms", granularity);
  for (const { bucket_ms: bucket } of dirty) {
    store.transactionSync(() => {
      rebuild(bucket);
      run(sql, "DELETE FROM dirty WHERE granularity = ? AND bucket_ms = ?", granularity, bucket);
      const coarser = COARSER[granularity];
      if (coarser !== null && bucket < rollupWatermark(sql, coarser))
        markRollupDirty(sql, coarser, floorTo(bucket, GRANULARITY_MS[coarser]));
    });
  }
}

/**
 * What queries may read: the watermarks, and the oldest minute and hour still kept. Finer data
 * is kept past its retention until the coarser bucket covering it is compacted, so a range is
 * never answered from a gap.
 */
export function rollupCoverage(sql: SqlStorage, retention: RollupRetention, nowMs: number): Coverage {
  const hourWatermark = rollupWatermark(sql, "hour");
  const dayWatermark = rollupWatermark(sql, "day");
  return {
    hourWatermark,
    dayWatermark,
    minuteFloor: Math.min(floorTo(nowMs - retention.minutes, HOUR_MS), hourWatermark),
    hourFloor: Math.min(floorTo(nowMs - retention.hours, DAY_MS), dayWatermark),
  };
}

/**
 * Deletes rollups below the coverage's floors and days past their retention; call it inside
 * the object's own retention transaction. Returns the coverage it applied, for the object's
 * own tables that follow the minutes.
 */
export function pruneExpiredRollups(sql: SqlStorage, retention: RollupRetention, nowMs: number): Coverage {
  const coverage = rollupCoverage(sql, retention, nowMs);
  run(sql, "DELETE FROM rollups WHERE granularity = 'minute' AND bucket_ms < ?", coverage.minuteFloor);
  run(sql, "DELETE FROM rollups WHERE granularity = 'hour' AND bucket_ms < ?", coverage.hourFloor);
  run(sql, "DELETE FROM rollups WHERE granularity = 'day' AND bucket_ms < ?", floorTo(nowMs - retention.days, DAY_MS));
  return coverage;
}
