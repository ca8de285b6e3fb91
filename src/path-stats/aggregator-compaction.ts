import type { PathConfig } from "./config";
import { DAY_MS, floorTo, GRANULARITY_MS, type Granularity, HOUR_MS, MINUTE_MS } from "../platform/buckets";
import { OTHER_TEMPLATE } from "./normalize";
import { type Aggregate, Partial, pathKey, splitPathKey } from "./partial";
import {
  closeFinishedBuckets,
  markRollupDirty,
  pruneExpiredRollups,
  rebuildDirtyBuckets,
  type RollupStore,
  rollupWatermark,
} from "../platform/rollup-compaction";
import { all, maybeOne, run } from "../platform/sql";
import { Bundle, encodeAggregate, GRANULARITIES, type RollupRow } from "./aggregator-rollups";
import type { PushStore } from "./aggregator-pushes";

/** Pushes for minutes older than this are refused (their hour may already be final). */
export const ACCEPT_WINDOW_MS = 24 * HOUR_MS;
/** An hour (day) is compacted this long after it ends, when its last pushes are in. */
export const CLOSE_GRACE_MS = 5 * MINUTE_MS;
/**
 * A minute is compacted this long after it ends: its hits reach the aggregator within the
 * gateway's batch (1 s), a collector's flush interval (3 s) and the aggregator's push group
 * (0.5 s) after they happen. A push that comes later marks the minute for compacting again.
 */
export const MINUTE_CLOSE_GRACE_MS = 5_000;

/** When a minute's pushes are all in, so compacting it once is enough. */
export const minuteClosesAt = (bucket: number) => bucket + MINUTE_MS + MINUTE_CLOSE_GRACE_MS;

const FINER: Record<Granularity, Granularity | null> = { minute: null, hour: "minute", day: "hour" };

/**
 * The aggregator's compaction: shard partials → minute rollups → hour rollups → day rollups,
 * merging sketches (never summing unique counts), then retention. Synchronous SQL over the
 * aggregator's tables; the aggregator schedules it.
 */
export class RollupCompaction {
  readonly #store: RollupStore;
  readonly #pushes: PushStore;
  /**
   * The admitted templates: every (method, path) some rollup holds, `(other)` aside. Derived
   * from the rollups rather than kept in a table of their own, so admitting one writes no row
   * beyond the rollup itself; read once, then kept in memory (null: read at next need).
   */
  #known: Set<string> | null = null;
  /** The oldest day kept when `#known` was read: pruning a day past it may free templates. */
  #knownDayFloor = 0;

  constructor(store: RollupStore, pushes: PushStore) {
    this.#store = store;
    this.#pushes = pushes;
  }

  /**
   * Rebuilds every dirty minute that has closed (see MINUTE_CLOSE_GRACE_MS) from its shard
   * partials, closes finished hours and days, rebuilds dirty hours (from minutes) and days
   * (from hours), then applies retention. Every rebuild replaces its bucket, so running this
   * twice changes nothing. Returns when the earliest minute left dirty closes, or null.
   */
  compact(config: PathConfig, nowMs: number): number | null {
    try {
      return this.#compact(config, nowMs);
    } catch (error) {
      // A rebuild rolled back may have admitted templates in memory only: read them again.
      this.#known = null;
      throw error;
    }
  }

  /** Forgets the admitted templates held in memory (after a restore wrote the tables). */
  forgetTemplates(): void {
    this.#known = null;
  }

  #compact(config: PathConfig, nowMs: number): number | null {
    for (const granularity of GRANULARITIES) {
      if (granularity === "minute") {
        this.#rebuildClosedMinutes(config, nowMs);
        continue;
      }
      closeFinishedBuckets(this.#store, granularity, nowMs, CLOSE_GRACE_MS);
      rebuildDirtyBuckets(this.#store, granularity, (bucket) => this.#rebuild(granularity, bucket, config, nowMs));
    }
    this.#applyRetention(config, nowMs);
    const open = maybeOne<{ b: number | null }>(this.#store.sql, "SELECT MIN(bucket_ms) AS b FROM dirty WHERE granularity = 'minute'")?.b;
    return open == null ? null : minuteClosesAt(open);
  }

  /**
   * As rebuildDirtyBuckets for minutes, but a minute still open stays dirty: pushes arrive all
   * through it, and building it before they are in would build it again at every later push.
   */
  #rebuildClosedMinutes(config: PathConfig, nowMs: number): void {
    const { sql } = this.#store;
    const dirty = all<{ bucket_ms: number }>(
      sql,
      "SELECT bucket_ms FROM dirty WHERE granularity = 'minute' AND bucket_ms <= ? ORDER BY bucket_ms",
      nowMs - MINUTE_MS - MINUTE_CLOSE_GRACE_MS,
    );
    for (const { bucket_ms: bucket } of dirty) {
      this.#store.transactionSync(() => {
        this.#rebuild("minute", bucket, config, nowMs);
        run(sql, "DELETE FROM dirty WHERE granularity = 'minute' AND bucket_ms = ?", bucket);
        // A late minute of an hour already compacted: that hour is built again.
        if (bucket < rollupWatermark(sql, "hour")) markRollupDirty(sql, "hour", floorTo(bucket, HOUR_MS));
      });
    }
  }

  #rebuild(granularity: Granularity, bucket: number, config: PathConfig, nowMs: number): void {
    const sql = this.#store.sql;
    const bundle = new Bundle();
    if (granularity === "minute") {
      const merged = new Partial();
      for (const partial of this.#pushes.partialsOf(bucket)) merged.merge(Partial.deserialize(partial));
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
    }
  }

  /**
   * Keeps known templates, admits new ones while under `PATH_MAX_TEMPLATES` (busiest first),
   * and folds the rest into `(other)`. Admitted templates stay admitted (their rollups keep
   * them), so a rebuild maps paths exactly as the first build did.
   */
  #capTemplates(paths: Map<string, Aggregate>, config: PathConfig, nowMs: number): Map<string, Aggregate> {
    const known = this.#admitted(config, nowMs);
    const out = new Map<string, Aggregate>();
    const entries = [...paths].sort(([ka, a], [kb, b]) => b.requests - a.requests || (ka < kb ? -1 : 1));
    for (const [key, aggregate] of entries) {
      const { method, path } = splitPathKey(key);
      let target = key;
      if (path !== OTHER_TEMPLATE && !known.has(key)) {
        if (known.size < config.maxTemplates) {
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

  /**
   * The admitted templates. A template holds its place while any rollup has it: the day rollups
   * keep it for the whole day retention after it was last seen (finer rollups are pruned only
   * once the coarser ones hold them), so only a day pruned since the last read can free one.
   */
  #admitted(config: PathConfig, nowMs: number): Set<string> {
    const dayFloor = floorTo(nowMs - config.retention.days, DAY_MS);
    if (this.#known === null || dayFloor > this.#knownDayFloor) {
      const rows = all<{ method: string; path: string }>(
        this.#store.sql,
        "SELECT DISTINCT method, path FROM rollups WHERE method <> '' AND path <> ?",
        OTHER_TEMPLATE,
      );
      this.#known = new Set(rows.map((row) => pathKey(row.method, row.path)));
      this.#knownDayFloor = dayFloor;
    }
    return this.#known;
  }

  #applyRetention(config: PathConfig, nowMs: number): void {
    const { retention } = config;
    const sql = this.#store.sql;
    this.#store.transactionSync(() => {
      const { minuteFloor } = pruneExpiredRollups(sql, retention, nowMs);
      // A minute's partials go once both its rollup has and a push for it would be refused.
      this.#pushes.pruneBefore(Math.min(minuteFloor, nowMs - ACCEPT_WINDOW_MS - HOUR_MS));
      // Admitted templates are read from the rollups now; what an older version kept ages out.
      run(sql, "DELETE FROM templates WHERE last_seen_ms < ?", nowMs - retention.days);
    });
  }
}
