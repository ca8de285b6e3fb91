import type { PathConfig } from "./config";
import { DAY_MS, GRANULARITY_MS, type Granularity, HOUR_MS, MINUTE_MS } from "../platform/buckets";
import { OTHER_TEMPLATE } from "./normalize";
import { type Aggregate, Partial, pathKey, splitPathKey } from "./partial";
import { asBytes } from "../sketches/bytes";
import { closeFinishedBuckets, pruneExpiredRollups, rebuildDirtyBuckets, type RollupStore } from "../platform/rollup-compaction";
import { all, run } from "../platform/sql";
import { Bundle, encodeAggregate, GRANULARITIES, type RollupRow } from "./aggregator-rollups";

/** Pushes for minutes older than this are refused (their hour may already be final). */
export const ACCEPT_WINDOW_MS = 24 * HOUR_MS;
/** An hour (day) is compacted this long after it ends, when its last pushes are in. */
export const CLOSE_GRACE_MS = 5 * MINUTE_MS;

const FINER: Record<Granularity, Granularity | null> = { minute: null, hour: "minute", day: "hour" };

/**
 * The aggregator's compaction: shard partials → minute rollups → hour rollups → day rollups,
 * merging sketches (never summing unique counts), then retention. Synchronous SQL over the
 * aggregator's tables; the aggregator schedules it.
 */
export class RollupCompaction {
  readonly #store: RollupStore;

  constructor(store: RollupStore) {
    this.#store = store;
  }

  /**
   * Rebuilds every dirty minute from its shard partials, closes finished hours and days,
   * rebuilds dirty hours (from minutes) and days (from hours), then applies retention.
   * Every rebuild replaces its bucket, so running this twice changes nothing.
   */
  compact(config: PathConfig, nowMs: number): void {
    for (const granularity of GRANULARITIES) {
      if (granularity !== "minute") closeFinishedBuckets(this.#store, granularity, nowMs, CLOSE_GRACE_MS);
      rebuildDirtyBuckets(this.#store, granularity, (bucket) => this.#rebuild(granularity, bucket, config, nowMs));
    }
    this.#applyRetention(config, nowMs);
  }

  #rebuild(granularity: Granularity, bucket: number, config: PathConfig, nowMs: number): void {
    const sql = this.#store.sql;
    const bundle = new Bundle();
    if (granularity === "minute") {
      const partials = all<{ partial: ArrayBuffer }>(sql, "SELECT partial FROM shard_partials WHERE bucket_ms = ?", bucket);
      const merged = new Partial();
      for (const row of partials) merged.merge(Partial.deserialize(asBytes(row.partial)));
      bundle.total = merged.total;
      bundle.top = merged.top;
      bundle.paths = this.#capTemplates(merged.paths, config, nowMs);
    } else {
      const finer = FINER[granularity]!;
      const rows = all<RollupRow>(
        sql,
        "SELECT bucket_ms, method, path, aggregate, top_clients FROM rollups WHERE granularity = ? AND bucket_ms >= ? AND bucket_ms < ?",
        finer,
        bucket,
        bucket + GRANULARITY_MS[granularity],
      );
      for (const row of rows) bundle.addRow(row);
    }
    run(sql, "DELETE FROM rollups WHERE granularity = ? AND bucket_ms = ?", granularity, bucket);
    if (bundle.total.requests === 0) return;
    run(
      sql,
      "INSERT INTO rollups (granularity, bucket_ms, method, path, aggregate, top_clients) VALUES (?, ?, '', '', ?, ?)",
      granularity,
      bucket,
      encodeAggregate(bundle.total),
      bundle.top.serialize(),
    );
    for (const [key, aggregate] of bundle.paths) {
      const { method, path } = splitPathKey(key);
      run(
        sql,
        "INSERT INTO rollups (granularity, bucket_ms, method, path, aggregate, top_clients) VALUES (?, ?, ?, ?, ?, NULL)",
        granularity,
        bucket,
        method,
        path,
        encodeAggregate(aggregate),
      );
      if (granularity === "day") {
        run(sql, "UPDATE templates SET last_seen_ms = MAX(last_seen_ms, ?) WHERE method = ? AND path = ?", bucket + DAY_MS, method, path);
      }
    }
  }

  /**
   * Keeps known templates, admits new ones while under `PATH_MAX_TEMPLATES` (busiest first),
   * and folds the rest into `(other)`. Admitted templates stay admitted, so a rebuild maps
   * paths exactly as the first build did.
   */
  #capTemplates(paths: Map<string, Aggregate>, config: PathConfig, nowMs: number): Map<string, Aggregate> {
    const sql = this.#store.sql;
    const rows = all<{ method: string; path: string }>(sql, "SELECT method, path FROM templates");
    const known = new Set(rows.map((r) => pathKey(r.method, r.path)));
    const out = new Map<string, Aggregate>();
    const entries = [...paths].sort(([ka, a], [kb, b]) => b.requests - a.requests || (ka < kb ? -1 : 1));
    for (const [key, aggregate] of entries) {
      const { method, path } = splitPathKey(key);
      let target = key;
      if (path !== OTHER_TEMPLATE && !known.has(key)) {
        if (known.size < config.maxTemplates) {
          run(sql, "INSERT INTO templates (method, path, last_seen_ms) VALUES (?, ?, ?)", method, path, nowMs);
          known.add(key);
        } else {
          target = pathKey(method, OTHER_TEMPLATE);
        }
      }
      const mine = out.get(target);
      if (mine === undefined) out.set(target, aggregate);
      else mine.merge(aggregate);
    }
    return out;
  }

  #applyRetention(config: PathConfig, nowMs: number): void {
    const { retention } = config;
    const sql = this.#store.sql;
    this.#store.transactionSync(() => {
      const { minuteFloor } = pruneExpiredRollups(sql, retention, nowMs);
      // A minute's partials go once both its rollup has and a push for it would be refused.
      run(sql, "DELETE FROM shard_partials WHERE bucket_ms < ?", Math.min(minuteFloor, nowMs - ACCEPT_WINDOW_MS - HOUR_MS));
      // A template unseen for the whole day retention no longer holds a place under the cap.
      run(sql, "DELETE FROM templates WHERE last_seen_ms < ?", nowMs - retention.days);
    });
  }
}
