import * as v from "valibot";
import type { CostItemName } from "../../../rpc/metrics";
import { ServiceError } from "../errors";
import { DAY_MS } from "../buckets";
import { parseJsonVar } from "../json-var";
import { parseNamedDurations } from "../durations";
import { DEFAULT_ROLLUP_RETENTION, MIN_ROLLUP_RETENTION } from "../rollup-compaction";

/** The variables metrics and the cost report read (wrangler.toml `[vars]`). */
export interface MetricsVars {
  METRICS_SHARDS?: string;
  METRICS_RETENTION?: string;
  METRICS_FLUSH_MS?: string;
  METRICS_BUFFER_MS?: string;
  COST_PRICES?: string;
  COST_BUDGET_USD?: string;
}

export interface MetricsRetention {
  minutes: number;
  hours: number;
  days: number;
}

export interface MetricsConfig {
  /** Rollup objects `metrics:0..shards-1`; an object pushes to the one its id hashes to. */
  shards: number;
  retention: MetricsRetention;
  /** An isolate flushes its entrypoint counts at most this often (0: after every call). */
  flushMs: number;
  /**
   * How long call counts wait in memory, at most, before they move on: an isolate's object counts
   * are pushed to their rollup shard this long after the window's first count, and a shard
   * writes what it received this long after the first push since its last write (0: at once).
   */
  bufferMs: number;
}

export const MAX_METRICS_SHARDS = 64;
const DEFAULTS: MetricsConfig = {
  shards: 4,
  retention: { ...DEFAULT_ROLLUP_RETENTION },
  flushMs: 5_000,
  bufferMs: 5_000,
};

/** The last configuration read, and the variables it was read from: every counted call asks, with the same ones. */
let last: { vars: MetricsVars; config: MetricsConfig } | undefined;

const sameVars = (a: MetricsVars, b: MetricsVars) =>
  a.METRICS_SHARDS === b.METRICS_SHARDS &&
  a.METRICS_RETENTION === b.METRICS_RETENTION &&
  a.METRICS_FLUSH_MS === b.METRICS_FLUSH_MS &&
  a.METRICS_BUFFER_MS === b.METRICS_BUFFER_MS;

/** Reads and checks the metrics configuration once per isolate (again only if the variables change); a malformed value is `INTERNAL`. */
export function loadMetricsConfig(vars: MetricsVars): MetricsConfig {
  if (last !== undefined && sameVars(last.vars, vars)) return last.config;
  const { METRICS_SHARDS, METRICS_RETENTION, METRICS_FLUSH_MS, METRICS_BUFFER_MS } = vars;
  try {
    const config: MetricsConfig = {
      shards: intVar("METRICS_SHARDS", METRICS_SHARDS, DEFAULTS.shards, 1, MAX_METRICS_SHARDS),
      retention: retention(METRICS_RETENTION),
      flushMs: intVar("METRICS_FLUSH_MS", METRICS_FLUSH_MS, DEFAULTS.flushMs, 0, 60_000),
      // At most 5 s: the window a crashed object can lose (docs/metrics.md).
      bufferMs: intVar("METRICS_BUFFER_MS", METRICS_BUFFER_MS, DEFAULTS.bufferMs, 0, 5_000),
    };
    last = { vars: { METRICS_SHARDS, METRICS_RETENTION, METRICS_FLUSH_MS, METRICS_BUFFER_MS }, config };
    return config;
  } catch (error) {
    console.error(`metrics misconfigured: ${(error as Error).message}`);
    throw new ServiceError("INTERNAL", "metrics are misconfigured");
  }
}

const blank = (raw: string | undefined) => raw === undefined || raw.trim() === "";

function intVar(name: string, raw: string | undefined, fallback: number, min: number, max: number): number {
  if (blank(raw)) return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < min || value > max) throw new Error(`${name} must be an integer in ${min}..${max}`);
  return value;
}

/** Same format and floors as PATH_RETENTION (minutes ≥ 25h so a late push can rebuild its hour). */
function retention(raw: string | undefined): MetricsRetention {
  return parseNamedDurations(raw, {
    variable: "METRICS_RETENTION",
    defaults: DEFAULTS.retention,
    bounds: (name) => ({ min: MIN_ROLLUP_RETENTION[name] }),
  });
}

const price = v.strictObject({
  /** USD per `per` units beyond the allowance. */
  usd: v.pipe(v.number(), v.finite(), v.minValue(0)),
  per: v.pipe(v.number(), v.safeInteger(), v.minValue(1)),
  /** Units included per month. */
  includedPerMonth: v.pipe(v.number(), v.finite(), v.minValue(0)),
});

const pricesSchema = v.strictObject({
  source: v.pipe(v.string(), v.maxLength(2_000)),
  /** Workers Paid: the monthly subscription, USD. */
  subscriptionUsdPerMonth: v.pipe(v.number(), v.finite(), v.minValue(0)),
  workersRequests: price,
  durableObjectRequests: price,
  sqliteRowsRead: price,
  sqliteRowsWritten: price,
  /** Per GB-month (`per` = 1). */
  sqliteStoredGbMonths: price,
});

export type CostPrices = v.InferOutput<typeof pricesSchema>;
export type PricedItem = Exclude<CostItemName, "subscription">;

/**
 * Cloudflare's published Workers Paid prices (see docs/metrics.md for the pages): used when
 * COST_PRICES is unset. wrangler.toml carries the same values so an operator can edit them.
 */
export const DEFAULT_COST_PRICES: CostPrices = {
  source:
    "https://developers.cloudflare.com/workers/platform/pricing/ and https://developers.cloudflare.com/durable-objects/platform/pricing/",
  subscriptionUsdPerMonth: 5,
  workersRequests: { usd: 0.3, per: 1_000_000, includedPerMonth: 10_000_000 },
  durableObjectRequests: { usd: 0.15, per: 1_000_000, includedPerMonth: 1_000_000 },
  sqliteRowsRead: { usd: 0.001, per: 1_000_000, includedPerMonth: 25_000_000_000 },
  sqliteRowsWritten: { usd: 1, per: 1_000_000, includedPerMonth: 50_000_000 },
  sqliteStoredGbMonths: { usd: 0.2, per: 1, includedPerMonth: 5 },
};

export function loadCostPrices(vars: MetricsVars): CostPrices {
  return parseJsonVar("COST_PRICES", vars.COST_PRICES, JSON.stringify(DEFAULT_COST_PRICES), pricesSchema);
}

/** The monthly budget in USD, or `null` when COST_BUDGET_USD is unset or empty. */
export function loadCostBudget(vars: MetricsVars): number | null {
  if (blank(vars.COST_BUDGET_USD)) return null;
  const value = Number(vars.COST_BUDGET_USD);
  if (!Number.isFinite(value) || value < 0) {
    console.error("COST_BUDGET_USD must be a number ≥ 0");
    throw new ServiceError("INTERNAL", "COST_BUDGET_USD is misconfigured");
  }
  return value;
}

/** 30 days: the month the cost report projects to, as Cloudflare's GB-month does. */
export const MONTH_MS = 30 * DAY_MS;
