import type {
  AnsweredRange,
  ExportRow,
  GlobalStats,
  PathDetail,
  PathStat,
  StatsRange,
  TimeSeries,
  TimeSeriesPoint,
  TopClients,
  TopPaths,
  TopPathsInput,
} from "../../rpc/path-stats";
import { loadPathConfig } from "./config";
import type { Env } from "../platform/env";
import { invalidArgument } from "../platform/errors";
import { GRANULARITY_MS, type Granularity, type Plan, floorTo, planRange, resolveRange } from "../platform/buckets";
import { Aggregate, pathKey, splitPathKey } from "./partial";
import { latencySummary, pathStat, statusClasses } from "./report";
import { asBytes, ByteReader } from "../sketches/bytes";
import { HLL_EXACT_LIMIT } from "../sketches/hyperloglog";
import { rollupCoverage } from "../platform/rollup-compaction";
import { all } from "../platform/sql";
import { Bundle, decodeAggregate, GRANULARITIES, type RollupRow } from "./aggregator-rollups";

/** A time series is drawn per minute, hour or day: the finest with at most this many points. */
export const TIME_SERIES_MAX_POINTS = 400;

type Selection = "total" | "paths" | { path: string; method: string | undefined };

/**
 * The aggregator's queries, over its rollups only: each range is covered with the fewest
 * day, hour and minute buckets, so a query's cost grows with the buckets and paths in the
 * range, never with the number of clients, and it never calls a collector. Inputs arrive
 * already validated by the aggregator.
 */
export class RollupQueries {
  readonly #sql: SqlStorage;
  readonly #env: Env;

  constructor(sql: SqlStorage, env: Env) {
    this.#sql = sql;
    this.#env = env;
  }

  globalStats(range: StatsRange, nowMs: number): GlobalStats {
    const plan = this.#plan(range, nowMs);
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
  timeSeries(range: StatsRange, nowMs: number): TimeSeries {
    const plan = this.#plan(range, nowMs);
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
          this.#sql,
          "SELECT bucket_ms, aggregate FROM rollups WHERE granularity = ? AND bucket_ms >= ? AND bucket_ms < ? AND method = ''",
          granularity,
          segment.from,
          segment.to,
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
  topPaths(input: TopPathsInput, nowMs: number): TopPaths {
    const plan = this.#plan(input.range, nowMs);
    const sortBy = input.sortBy ?? "requests";
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
      const metric =
        sortBy === "requests"
          ? aggregate.requests
          : sortBy === "errors"
            ? aggregate.errors
            : sortBy === "clients"
              ? aggregate.clients.estimate()
              : (aggregate.latency.quantile(0.99) ?? -1);
      return { key, metric, requests: aggregate.requests };
    });
    ranked.sort((a, b) => b.metric - a.metric || b.requests - a.requests || (a.key < b.key ? -1 : 1));
    const paths: PathStat[] = ranked.slice(0, input.limit ?? 20).map(({ key }) => {
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

  topClients(range: StatsRange, limit: number | undefined, nowMs: number): TopClients {
    const plan = this.#plan(range, nowMs);
    const bundle = this.#load(plan, "total");
    const bound = bundle.top.errorBound;
    return {
      clients: bundle.top.top(limit ?? 20).map((hitter) => ({ client: hitter.item, requests: hitter.count, maxRequests: hitter.upper })),
      errorBound: bound,
      totalRequests: bundle.total.requests,
      approximate: bound > 0,
      range: answered(plan),
      generatedAt: nowMs,
    };
  }

  /** One normalized path, per method (every method when `method` is undefined). */
  pathDetail(path: string, method: string | undefined, range: StatsRange, nowMs: number): PathDetail {
    const plan = this.#plan(range, nowMs);
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
  exportPage(
    input: { range: StatsRange; cursor?: string; limit?: number },
    nowMs: number,
  ): { rows: ExportRow[]; cursor?: string; range: AnsweredRange } {
    const limit = input.limit ?? 500;
    const plan = this.#plan(input.range, nowMs);
    let after: [number, string, string] = [-1, "", ""];
    if (input.cursor !== undefined) {
      try {
        const decoded = JSON.parse(fromBase64Url(input.cursor)) as unknown;
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
          this.#sql,
          `SELECT bucket_ms, method, path, aggregate, top_clients FROM rollups
           WHERE granularity = ? AND bucket_ms >= ? AND bucket_ms < ? AND method <> ''
             AND (bucket_ms, method, path) > (?, ?, ?)
           ORDER BY bucket_ms, method, path LIMIT ?`,
          granularity,
          segment.from,
          segment.to,
          after[0],
          after[1],
          after[2],
          limit + 1,
        );
        for (const row of found) rows.push({ ...row, granularity });
      }
    }
    const order = (x: string, y: string) => (x < y ? -1 : x > y ? 1 : 0);
    rows.sort((a, b) => a.bucket_ms - b.bucket_ms || order(a.method, b.method) || order(a.path, b.path));
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

  #plan(range: StatsRange, nowMs: number): Plan {
    const { retention } = loadPathConfig(this.#env);
    return planRange(resolveRange(range, nowMs), rollupCoverage(this.#sql, retention, nowMs));
  }

  /** Merges the rollups a plan names: the totals only, every path, or one path. */
  #load(plan: Plan, what: Selection): Bundle {
    const bundle = new Bundle();
    for (const row of this.#rows(plan, what)) bundle.addRow(row);
    return bundle;
  }

  /** The rollup rows a plan names. */
  #rows(plan: Plan, what: Selection): RollupRow[] {
    const out: RollupRow[] = [];
    const filter =
      what === "total"
        ? "AND method = ''"
        : what === "paths"
          ? "AND method <> ''"
          : what.method === undefined
            ? "AND method <> '' AND path = ?"
            : "AND method = ? AND path = ?";
    const extra = typeof what === "object" ? (what.method === undefined ? [what.path] : [what.method, what.path]) : [];
    for (const granularity of GRANULARITIES) {
      for (const segment of plan.segments[granularity]) {
        const rows = all<RollupRow>(
          this.#sql,
          `SELECT bucket_ms, method, path, aggregate, top_clients FROM rollups
           WHERE granularity = ? AND bucket_ms >= ? AND bucket_ms < ? ${filter}`,
          granularity,
          segment.from,
          segment.to,
          ...extra,
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
          this.#sql,
          "SELECT DISTINCT method, path FROM rollups WHERE granularity = ? AND bucket_ms >= ? AND bucket_ms < ? AND method <> ''",
          granularity,
          segment.from,
          segment.to,
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
