/** Metrics and the cost report (Admin and capnweb AdminApi). Types only. */
import type { StatsRange } from "./path-stats";

/** Where a call was counted: a Durable Object method, or a Worker entrypoint / capnweb method. */
export type MetricsSurface = "object" | "entrypoint";

/** Latency percentiles in ms, within 1% relative error; `null` when there were no calls. */
export interface CallLatency {
  p50: number | null;
  p90: number | null;
  p99: number | null;
}

export interface MethodMetrics {
  method: string;
  calls: number;
  /** Calls per outcome: `"ok"`, or the ServiceError code thrown (any other throw is `INTERNAL`). */
  outcomes: Record<string, number>;
  /** Share of calls whose outcome is not `"ok"`. */
  errorRate: number;
  /**
   * For objects: time spent awaiting I/O only (a Worker's clock stands still while code runs).
   * For entrypoints: the whole call, object round trips included.
   */
  latencyMs: CallLatency;
  /** SQLite rows read and written, from the cursors' own counters (0 for entrypoints). */
  rowsRead: number;
  rowsWritten: number;
}

/** One object class (`RateLimiterDO`) or entrypoint (`RateLimits`, `AdminApi`), with its methods. */
export interface SurfaceMetrics extends Omit<MethodMetrics, "method"> {
  kind: string;
  methods: MethodMetrics[];
}

export interface MetricsInput {
  range: StatsRange;
}

export interface MetricsReport {
  /** The range answered: widened to whole minutes (hours, days) where finer data has been compacted. */
  range: { from: number; to: number };
  objects: SurfaceMetrics[];
  entrypoints: SurfaceMetrics[];
  generatedAt: number;
}

export type CostItemName =
  | "workersRequests"
  | "durableObjectRequests"
  | "sqliteRowsRead"
  | "sqliteRowsWritten"
  | "sqliteStoredGbMonths"
  | "subscription";

export interface CostItem {
  item: CostItemName;
  /** What was measured in the range (GB-months for storage, months for the subscription). */
  quantity: number;
  /** USD per `unitSize` units beyond the monthly allowance. */
  unitPriceUsd: number;
  unitSize: number;
  /** Units included per month (prorated over the range for `costUsd`). */
  includedPerMonth: number;
  /** The range's cost, allowance prorated to the range. */
  costUsd: number;
  /** The range's quantity extrapolated to 30 days. */
  monthlyQuantity: number;
  monthlyCostUsd: number;
}

export interface CostReport {
  range: { from: number; to: number };
  items: CostItem[];
  /** The objects' SQLite bytes: the sum of each object's latest `databaseSize` sample. */
  storedBytes: number;
  totalUsd: number;
  monthlyTotalUsd: number;
  /** Present when COST_BUDGET_USD is set. */
  budget?: { monthlyUsd: number; exceeded: boolean };
  /** Requests and rows per object class / entrypoint and method, the figures the items sum. */
  byMethod: { surface: MetricsSurface; kind: string; method: string; requests: number; rowsRead: number; rowsWritten: number }[];
  /** What the estimate leaves out, in words (e.g. Durable Object duration). */
  notIncluded: string[];
  /** Where the prices come from (COST_PRICES). */
  pricesSource: string;
  generatedAt: number;
}

export interface MetricsApi {
  metrics(input: MetricsInput): Promise<MetricsReport>;
  costReport(input: MetricsInput): Promise<CostReport>;
}
