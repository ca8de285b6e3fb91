import type {
  AnsweredRange, ExportRow, GlobalStats, PathDetail, PathStat, StatsRange, TimeSeries, TimeSeriesPoint, TopClients, TopPaths,
  TopPathsInput,
} from "../../rpc/path-stats";
import { loadPathConfig, type PathConfig } from "./config";
import type { Env } from "../platform/env";
import { invalidArgument } from "../platform/errors";
import {
  DAY_MS, GRANULARITY_MS, type Granularity, HOUR_MS, MINUTE_MS, type Plan, floorTo, planRange, resolveRange,
} from "./buckets";
import { normalizeMethod, normalizePath, OTHER_TEMPLATE } from "./normalize";
import { Aggregate, Partial, pathKey, splitPathKey } from "./partial";
import { latencySummary, pathStat, statusClasses } from "./report";
import { asBytes, ByteReader, ByteWriter } from "../sketches/bytes";
import { HLL_EXACT_LIMIT } from "../sketches/hyperloglog";
import { TopK } from "../sketches/top-k";
import { parseInput } from "../platform/schemas";
import {
  exportPageSchema, globalStatsSchema, pathDetailSchema, pushManySchema, pushSchema, timeSeriesSchema, topClientsSchema,
  topPathsSchema,
} from "./schemas";
import type { TaskHandlers } from "../platform/task-scheduler";
import type { Migration } from "../platform/migrations";
import {
  closeFinishedBuckets, markRollupDirty, pruneExpiredRollups, rebuildDirtyBuckets, rollupCoverage, type RollupStore,
} from "../platform/rollup-compaction";
import { all, run } from "../platform/sql";
import { TollgateObject } from "../platform/tollgate-object";

/** Pushes for minutes older than this are refused (their hour may already be final). */
export const ACCEPT_WINDOW_MS = 24 * HOUR_MS;
/** A time series is drawn per minute, hour or day: the finest with at most this many points. */
export const TIME_SERIES_MAX_POINTS = 400;
/** Pushed minutes are compacted this long after they arrive, batching a minute's pushes. */
export const COMPACT_DELAY_MS = 2_000;
/** An hour (day) is compacted this long after it ends, when its last pushes are in. */
export const CLOSE_GRACE_MS = 5 * MINUTE_MS;

const GLOBAL = "";
const GRANULARITIES: readonly Granularity[] = ["minute", "hour", "day"];
const FINER: Record<Granularity, Granularity | null> = { minute: null, hour: "minute", day: "hour" };

const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "shard partials, rollups, dirty buckets, templates",
    up(sql) {
      // Keyed minute first: a minute's rebuild and retention both read by minute, so the key
      // serves them and no secondary index doubles each write.
      sql.exec(`CREATE TABLE shard_partials (
        bucket_ms INTEGER NOT NULL,
        shard INTEGER NOT NULL,
        flush_id INTEGER NOT NULL,
        partial BLOB NOT NULL,
        received_at_ms INTEGER NOT NULL,
        PRIMARY KEY (bucket_ms, shard, flush_id)
      ) WITHOUT ROWID`);
      // method = path = '' is the bucket's total, which also carries the top clients.
      sql.exec(`CREATE TABLE rollups (
        granularity TEXT NOT NULL,
        bucket_ms INTEGER NOT NULL,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        aggregate BLOB NOT NULL,
        top_clients TEXT,
        PRIMARY KEY (granularity, bucket_ms, method, path)
      ) WITHOUT ROWID`);
      sql.exec("CREATE TABLE dirty (granularity TEXT NOT NULL, bucket_ms INTEGER NOT NULL, PRIMARY KEY (granularity, bucket_ms)) WITHOUT ROWID");
      sql.exec(`CREATE TABLE templates (
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        last_seen_ms INTEGER NOT NULL,
        PRIMARY KEY (method, path)
      ) WITHOUT ROWID`);
      sql.exec("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID");
    },
  },
];

type RollupRow = { bucket_ms: number; method: string; path: string; aggregate: ArrayBuffer; top_clients: string | null };

/** A bucket's (or a range's) statistics while being merged. */
class Bundle {
  total = new Aggregate();
  top = new TopK();
  paths = new Map<string, Aggregate>();

  addRow(row: RollupRow): void {
    const aggregate = decodeAggregate(row.aggregate);
    if (row.method === GLOBAL) {
      this.total.merge(aggregate);
      if (row.top_clients !== null) this.top.merge(TopK.deserialize(row.top_clients));
      return;
    }
    const key = pathKey(row.method, row.path);
    const mine = this.paths.get(key);
    if (mine === undefined) this.paths.set(key, aggregate);
    else mine.merge(aggregate);
  }
}

function encodeAggregate(aggregate: Aggregate): Uint8Array {
  const writer = new ByteWriter();
  aggregate.write(writer);
  return writer.finish();
}

function decodeAggregate(blob: ArrayBuffer | Uint8Array): Aggregate {
  return Aggregate.read(new ByteReader(asBytes(blob)));
}

/**
 * The one aggregator of a deployment (named "global"). It stores what collectors push,
 * keyed by (shard, minute, flush id) so a retried push replaces, and compacts by alarm:
 * shard partials → minute rollups → hour rollups → day rollups, merging sketches (never
 * summing unique counts). Every query reads rollups only, choosing days, hours and minutes
 * to cover its range with the fewest buckets: its cost grows with the buckets and paths in
 * the range, never with the number of clients, and it never calls a collector.
 */
export class AggregatorDO extends TollgateObject {
  /** The rollup tables as the shared compaction sees them (see storage/rollup-compaction). */
  readonly #rollups: RollupStore = { sql: this.sql, transactionSync: (closure) => this.ctx.storage.transactionSync(closure) };

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env, { component: "aggregator", migrations: MIGRATIONS });
  }

  /** The clock; test subclasses pin it. */
  protected now(): number {
    return Date.now();
  }

  /** Takes one shard's closed minute. Replaces an earlier push of the same (shard, minute, flush). */
  async push(input: unknown): Promise<{ stored: boolean }> {
    const parsed = parseInput(pushSchema, input, "push input");
    const nowMs = this.now();
    const refusal = this.#refusal(parsed.bucketMs, parsed.partial, nowMs);
    if (refusal !== null) throw invalidArgument(refusal);
    this.ctx.storage.transactionSync(() => this.#store(parsed.shard, parsed, nowMs));
    await this.scheduler.schedule("compact", nowMs + COMPACT_DELAY_MS, null, "compact", "earliest");
    return { stored: true };
  }

  /**
   * Takes several closed minutes of one shard in one call (how collectors push). A minute
   * outside the acceptance window is refused as a value, so the collector can drop it while
   * the rest are stored; a corrupt partial is a caller bug and fails the whole call.
   */
  async pushMany(input: unknown): Promise<{ stored: number; refused: { bucketMs: number; flushId: number; reason: string }[] }> {
    const parsed = parseInput(pushManySchema, input, "pushMany input");
    const nowMs = this.now();
    const refused: { bucketMs: number; flushId: number; reason: string }[] = [];
    const accepted = parsed.items.filter((item) => {
      const reason = this.#refusal(item.bucketMs, item.partial, nowMs);
      if (reason === null) return true;
      if (reason.startsWith("partial")) throw invalidArgument(reason);
      refused.push({ bucketMs: item.bucketMs, flushId: item.flushId, reason });
      return false;
    });
    this.ctx.storage.transactionSync(() => {
      for (const item of accepted) this.#store(parsed.shard, item, nowMs);
    });
    if (accepted.length > 0) await this.scheduler.schedule("compact", nowMs + COMPACT_DELAY_MS, null, "compact", "earliest");
    return { stored: accepted.length, refused };
  }

  /** Why a pushed minute cannot be taken, or `null` when it can. */
  #refusal(bucketMs: number, partial: Uint8Array, nowMs: number): string | null {
    try {
      Partial.deserialize(partial);
    } catch (error) {
      return `partial is not a valid partial: ${(error as Error).message}`;
    }
    if (bucketMs % MINUTE_MS !== 0) return "bucketMs must be the start of a minute";
    if (bucketMs < nowMs - ACCEPT_WINDOW_MS || bucketMs > nowMs + 2 * MINUTE_MS) {
      return "bucketMs is outside the aggregator's 24-hour acceptance window";
    }
    return null;
  }

  #store(shard: number, item: { bucketMs: number; flushId: number; partial: Uint8Array }, nowMs: number): void {
    run(
      this.sql,
      "INSERT OR REPLACE INTO shard_partials (shard, bucket_ms, flush_id, partial, received_at_ms) VALUES (?, ?, ?, ?, ?)",
      shard,
      item.bucketMs,
      item.flushId,
      item.partial,
      nowMs,
    );
    markRollupDirty(this.sql, "minute", item.bucketMs);
  }

  async globalStats(input: unknown): Promise<GlobalStats> {
    const parsed = parseInput(globalStatsSchema, input, "globalStats input");
    const nowMs = this.now();
    const plan = this.#plan(parsed.range, nowMs);
    const bundle = this.#load(plan, "total");
    const total = bundle.total;
    const uniquePaths = this.#distinctPaths(plan);
    return {
      range: answered(plan),
      totalRequests: total.requests,
      errors: total.errors,
      errorRate: total.requests === 0 ? 0 : total.errors / total.requests,
      uniqueClients: total.clients.estimate(),
      uniqueClientsExact: total.clients.exact,
      uniquePaths,
      statusClasses: statusClasses(total.statuses),
      latency: latencySummary(total.latency),
      firstSeen: total.requests === 0 ? null : total.firstSeen,
      lastSeen: total.requests === 0 ? null : total.lastSeen,
      generatedAt: nowMs,
    };
  }

  /**
   * The global totals per step, read from the same rollups `globalStats` merges (the
   * `method = ''` rows), so the points of a range sum to its `totalRequests`.
   */
  async timeSeries(input: unknown): Promise<TimeSeries> {
    const parsed = parseInput(timeSeriesSchema, input, "timeSeries input");
    const nowMs = this.now();
    const plan = this.#plan(parsed.range, nowMs);
    // The finest step that keeps the series short, but never finer than a rollup read (a
    // stored hour cannot be split into minutes).
    const span = plan.range.to - plan.range.from;
    const wanted = GRANULARITIES.find((g) => span / GRANULARITY_MS[g] <= TIME_SERIES_MAX_POINTS) ?? "day";
    const coarsest = [...GRANULARITIES].reverse().find((g) => plan.segments[g].length > 0) ?? "minute";
    const stepMs = Math.max(GRANULARITY_MS[wanted], GRANULARITY_MS[coarsest]);
    const first = floorTo(plan.range.from, stepMs);
    const points: TimeSeriesPoint[] = [];
    for (let at = first; at < plan.range.to; at += stepMs) points.push({ at, requests: 0, errors: 0, rateLimited: 0 });
    for (const granularity of GRANULARITIES) {
      for (const segment of plan.segments[granularity]) {
        const rows = all<{ bucket_ms: number; aggregate: ArrayBuffer }>(
          this.sql,
          "SELECT bucket_ms, aggregate FROM rollups WHERE granularity = ? AND bucket_ms >= ? AND bucket_ms < ? AND method = ''",
          granularity, segment.from, segment.to,
        );
        for (const row of rows) {
          const point = points[Math.floor((row.bucket_ms - first) / stepMs)];
          if (point === undefined) continue;
          const aggregate = decodeAggregate(row.aggregate);
          point.requests += aggregate.requests;
          point.errors += aggregate.errors;
          point.rateLimited += aggregate.statuses.get(429) ?? 0;
        }
      }
    }
    return { stepMs, points, range: answered(plan), generatedAt: nowMs };
  }

  /**
   * Ranks every path by the metric asked for, decoding only the sketch that metric needs,
   * then fully decodes just the paths returned: a page of 20 paths merges 20 paths' client
   * sketches, however many paths and clients the range holds.
   */
  async topPaths(input: unknown): Promise<TopPaths> {
    const parsed = parseInput(topPathsSchema, input, "topPaths input") as TopPathsInput;
    const nowMs = this.now();
    const plan = this.#plan(parsed.range, nowMs);
    const sortBy = parsed.sortBy ?? "requests";
    const rowsByPath = new Map<string, ArrayBuffer[]>();
    for (const row of this.#rows(plan, "paths")) {
      const key = pathKey(row.method, row.path);
      const list = rowsByPath.get(key);
      if (list === undefined) rowsByPath.set(key, [row.aggregate]);
      else list.push(row.aggregate);
    }
    const merge = (blobs: ArrayBuffer[], sketches: { latency: boolean; clients: boolean }) => {
      const merged = new Aggregate();
      for (const blob of blobs) merged.merge(Aggregate.read(new ByteReader(asBytes(blob)), sketches));
      return merged;
    };
    const needs = { latency: sortBy === "p99", clients: sortBy === "clients" };
    const ranked = [...rowsByPath].map(([key, blobs]) => {
      const aggregate = merge(blobs, needs);
      const metric = sortBy === "requests" ? aggregate.requests
        : sortBy === "errors" ? aggregate.errors
        : sortBy === "clients" ? aggregate.clients.estimate()
        : aggregate.latency.quantile(0.99) ?? -1;
      return { key, metric, requests: aggregate.requests };
    });
    ranked.sort((a, b) => b.metric - a.metric || b.requests - a.requests || (a.key < b.key ? -1 : 1));
    const paths: PathStat[] = ranked.slice(0, parsed.limit ?? 20).map(({ key }) => {
      const { method, path } = splitPathKey(key);
      return pathStat(method, path, merge(rowsByPath.get(key)!, { latency: true, clients: true }));
    });
    return {
      paths,
      range: answered(plan),
      generatedAt: nowMs,
      approximate: sortBy === "p99" || (sortBy === "clients" && paths.some((stat) => stat.clients! > HLL_EXACT_LIMIT)),
    };
  }

  async topClients(input: unknown): Promise<TopClients> {
    const parsed = parseInput(topClientsSchema, input, "topClients input");
    const nowMs = this.now();
    const plan = this.#plan(parsed.range, nowMs);
    const bundle = this.#load(plan, "total");
    const bound = bundle.top.errorBound;
    return {
      clients: bundle.top.top(parsed.limit ?? 20).map((hitter) => ({ client: hitter.item, requests: hitter.count, maxRequests: hitter.upper })),
      errorBound: bound,
      totalRequests: bundle.total.requests,
      approximate: bound > 0,
      range: answered(plan),
      generatedAt: nowMs,
    };
  }

  async pathDetail(input: unknown): Promise<PathDetail> {
    const parsed = parseInput(pathDetailSchema, input, "pathDetail input");
    const config = loadPathConfig(this.env);
    const path = parsed.path === OTHER_TEMPLATE ? OTHER_TEMPLATE : normalizePath(parsed.path, config.routes);
    if (path === null) throw invalidArgument('path must start with "/"');
    const method = parsed.method === undefined ? undefined : normalizeMethod(parsed.method)!;
    const nowMs = this.now();
    const plan = this.#plan(parsed.range, nowMs);
    const bundle = this.#load(plan, { path, method });
    const methods = [...bundle.paths]
      .map(([key, aggregate]) => pathStat(splitPathKey(key).method, path, aggregate, true))
      .sort((a, b) => b.requests - a.requests || (a.method < b.method ? -1 : 1));
    return { path, methods, range: answered(plan), generatedAt: nowMs };
  }

  /**
   * One page of an export: rows ordered by bucket, method and path, after `cursor`. The
   * `PathStats` service strings pages into a stream, so no export is ever built in memory.
   */
  async exportPage(input: unknown): Promise<{ rows: ExportRow[]; cursor?: string; range: AnsweredRange }> {
    const parsed = parseInput(exportPageSchema, input, "exportPage input");
    const limit = parsed.limit ?? 500;
    const plan = this.#plan(parsed.range, this.now());
    let after: [number, string, string] = [-1, "", ""];
    if (parsed.cursor !== undefined) {
      try {
        const decoded = JSON.parse(fromBase64Url(parsed.cursor)) as unknown;
        if (!Array.isArray(decoded) || decoded.length !== 3 || typeof decoded[0] !== "number") throw new Error("shape");
        after = [decoded[0], String(decoded[1]), String(decoded[2])];
      } catch {
        throw invalidArgument("cursor is not one this export returned");
      }
    }
    const rows: (RollupRow & { granularity: Granularity })[] = [];
    for (const granularity of GRANULARITIES) {
      for (const segment of plan.segments[granularity]) {
        const found = all<RollupRow>(
          this.sql,
          `SELECT bucket_ms, method, path, aggregate, top_clients FROM rollups
           WHERE granularity = ? AND bucket_ms >= ? AND bucket_ms < ? AND method <> ''
             AND (bucket_ms, method, path) > (?, ?, ?)
           ORDER BY bucket_ms, method, path LIMIT ?`,
          granularity, segment.from, segment.to, after[0], after[1], after[2], limit + 1,
        );
        for (const row of found) rows.push({ ...row, granularity });
      }
    }
    rows.sort((a, b) => a.bucket_ms - b.bucket_ms || (a.method < b.method ? -1 : a.method > b.method ? 1 : 0) || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const page = rows.slice(0, limit);
    const out: ExportRow[] = page.map((row) => {
      const aggregate = decodeAggregate(row.aggregate);
      const latency = latencySummary(aggregate.latency);
      return {
        bucketStart: row.bucket_ms,
        granularity: row.granularity,
        method: row.method,
        path: row.path,
        requests: aggregate.requests,
        errors: aggregate.errors,
        clients: aggregate.clients.estimate(),
        p50: latency.p50,
        p90: latency.p90,
        p99: latency.p99,
      };
    });
    const last = page.at(-1);
    const result: { rows: ExportRow[]; cursor?: string; range: AnsweredRange } = { rows: out, range: answered(plan) };
    if (rows.length > limit && last !== undefined) result.cursor = toBase64Url(JSON.stringify([last.bucket_ms, last.method, last.path]));
    return result;
  }

  protected override taskHandlers(): TaskHandlers {
    return { compact: (_payload, nowMs) => this.compact(nowMs) };
  }

  /**
   * Rebuilds every dirty minute from its shard partials, closes finished hours and days,
   * rebuilds dirty hours (from minutes) and days (from hours), then applies retention.
   * Every rebuild replaces its bucket, so running this twice changes nothing.
   */
  protected async compact(nowMs: number): Promise<void> {
    const config = loadPathConfig(this.env);
    for (const granularity of GRANULARITIES) {
      if (granularity !== "minute") closeFinishedBuckets(this.#rollups, granularity, nowMs, CLOSE_GRACE_MS);
      rebuildDirtyBuckets(this.#rollups, granularity, (bucket) => this.#rebuild(granularity, bucket, config, nowMs));
    }
    this.#applyRetention(config, nowMs);
    // Recurring: the next hour closes then. "replace" because this run's own row is due in
    // the past and would be deleted on completion if the reschedule did not bump it.
    await this.scheduler.schedule("compact", floorTo(nowMs, HOUR_MS) + HOUR_MS + CLOSE_GRACE_MS, null, "compact", "replace");
  }

  #rebuild(granularity: Granularity, bucket: number, config: PathConfig, nowMs: number): void {
    const bundle = new Bundle();
    if (granularity === "minute") {
      const partials = all<{ partial: ArrayBuffer }>(this.sql, "SELECT partial FROM shard_partials WHERE bucket_ms = ?", bucket);
      const merged = new Partial();
      for (const row of partials) merged.merge(Partial.deserialize(asBytes(row.partial)));
      bundle.total = merged.total;
      bundle.top = merged.top;
      bundle.paths = this.#capTemplates(merged.paths, config, nowMs);
    } else {
      const finer = FINER[granularity]!;
      const rows = all<RollupRow>(
        this.sql,
        "SELECT bucket_ms, method, path, aggregate, top_clients FROM rollups WHERE granularity = ? AND bucket_ms >= ? AND bucket_ms < ?",
        finer, bucket, bucket + GRANULARITY_MS[granularity],
      );
      for (const row of rows) bundle.addRow(row);
    }
    run(this.sql, "DELETE FROM rollups WHERE granularity = ? AND bucket_ms = ?", granularity, bucket);
    if (bundle.total.requests === 0) return;
    run(
      this.sql,
      "INSERT INTO rollups (granularity, bucket_ms, method, path, aggregate, top_clients) VALUES (?, ?, '', '', ?, ?)",
      granularity, bucket, encodeAggregate(bundle.total), bundle.top.serialize(),
    );
    for (const [key, aggregate] of bundle.paths) {
      const { method, path } = splitPathKey(key);
      run(
        this.sql,
        "INSERT INTO rollups (granularity, bucket_ms, method, path, aggregate, top_clients) VALUES (?, ?, ?, ?, ?, NULL)",
        granularity, bucket, method, path, encodeAggregate(aggregate),
      );
      if (granularity === "day") {
        run(this.sql, "UPDATE templates SET last_seen_ms = MAX(last_seen_ms, ?) WHERE method = ? AND path = ?", bucket + DAY_MS, method, path);
      }
    }
  }

  /**
   * Keeps known templates, admits new ones while under `PATH_MAX_TEMPLATES` (busiest first),
   * and folds the rest into `(other)`. Admitted templates stay admitted, so a rebuild maps
   * paths exactly as the first build did.
   */
  #capTemplates(paths: Map<string, Aggregate>, config: PathConfig, nowMs: number): Map<string, Aggregate> {
    const known = new Set(all<{ method: string; path: string }>(this.sql, "SELECT method, path FROM templates").map((r) => pathKey(r.method, r.path)));
    const out = new Map<string, Aggregate>();
    const entries = [...paths].sort(([ka, a], [kb, b]) => b.requests - a.requests || (ka < kb ? -1 : 1));
    for (const [key, aggregate] of entries) {
      const { method, path } = splitPathKey(key);
      let target = key;
      if (path !== OTHER_TEMPLATE && !known.has(key)) {
        if (known.size < config.maxTemplates) {
          run(this.sql, "INSERT INTO templates (method, path, last_seen_ms) VALUES (?, ?, ?)", method, path, nowMs);
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
    this.ctx.storage.transactionSync(() => {
      const { minuteFloor } = pruneExpiredRollups(this.sql, retention, nowMs);
      // A minute's partials go once both its rollup has and a push for it would be refused.
      run(this.sql, "DELETE FROM shard_partials WHERE bucket_ms < ?", Math.min(minuteFloor, nowMs - ACCEPT_WINDOW_MS - HOUR_MS));
      // A template unseen for the whole day retention no longer holds a place under the cap.
      run(this.sql, "DELETE FROM templates WHERE last_seen_ms < ?", nowMs - retention.days);
    });
  }

  #plan(range: StatsRange, nowMs: number): Plan {
    const { retention } = loadPathConfig(this.env);
    return planRange(resolveRange(range, nowMs), rollupCoverage(this.sql, retention, nowMs));
  }

  /** Merges the rollups a plan names: the totals only, every path, or one path. */
  #load(plan: Plan, what: "total" | "paths" | { path: string; method: string | undefined }): Bundle {
    const bundle = new Bundle();
    for (const row of this.#rows(plan, what)) bundle.addRow(row);
    return bundle;
  }

  /** The rollup rows a plan names. */
  #rows(plan: Plan, what: "total" | "paths" | { path: string; method: string | undefined }): RollupRow[] {
    const out: RollupRow[] = [];
    const filter = what === "total" ? "AND method = ''"
      : what === "paths" ? "AND method <> ''"
      : what.method === undefined ? "AND method <> '' AND path = ?" : "AND method = ? AND path = ?";
    const extra = typeof what === "object" ? (what.method === undefined ? [what.path] : [what.method, what.path]) : [];
    for (const granularity of GRANULARITIES) {
      for (const segment of plan.segments[granularity]) {
        const rows = all<RollupRow>(
          this.sql,
          `SELECT bucket_ms, method, path, aggregate, top_clients FROM rollups
           WHERE granularity = ? AND bucket_ms >= ? AND bucket_ms < ? ${filter}`,
          granularity, segment.from, segment.to, ...extra,
        );
        for (const row of rows) out.push(row);
      }
    }
    return out;
  }

  #distinctPaths(plan: Plan): number {
    const keys = new Set<string>();
    for (const granularity of GRANULARITIES) {
      for (const segment of plan.segments[granularity]) {
        const rows = all<{ method: string; path: string }>(
          this.sql,
          "SELECT DISTINCT method, path FROM rollups WHERE granularity = ? AND bucket_ms >= ? AND bucket_ms < ? AND method <> ''",
          granularity, segment.from, segment.to,
        );
        for (const row of rows) keys.add(pathKey(row.method, row.path));
      }
    }
    return keys.size;
  }
}

/** Cursors are opaque: base64url of UTF-8 JSON (paths may hold any printable character). */
function toBase64Url(text: string): string {
  let binary = "";
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromBase64Url(cursor: string): string {
  const binary = atob(cursor.replace(/-/g, "+").replace(/_/g, "/"));
  return new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
}

function answered(plan: Plan): AnsweredRange {
  return { from: plan.range.from, to: plan.range.to, buckets: plan.buckets };
}
