import type { CostItem, CostItemName, CostReport, MetricsSurface } from "../../../rpc/metrics";
import { type CostPrices, loadCostBudget, loadCostPrices, MONTH_MS, type PricedItem } from "../../platform/metering/config";
import type { Env } from "../../platform/env";
import { DAY_MS, MINUTE_MS, floorTo } from "../../platform/buckets";
import type { MetricRow } from "../../platform/metering/model";
import { queryShards } from "./query";

/** Bytes in a GB, as Cloudflare bills storage (decimal). */
const GB = 1_000_000_000;

/** What the estimate leaves out, stated in every report. */
export const NOT_INCLUDED = [
  "Durable Object duration (GB-s): workerd does not expose an object's wall-clock residency, so it is not estimated.",
  "Workers CPU time: not measurable from inside the Worker (its clock stands still while code runs).",
  "Calls from sibling Workers through service bindings: Cloudflare bills them to the calling Worker's request, so only HTTP requests to tollgate (Gateway.fetch: capnweb, dashboard) count as Workers requests.",
  "The metrics rollup objects' own requests and rows (one push per active isolate per METRICS_BUFFER_MS window; per shard one journal row per window, one row per minute, method and outcome, and an hourly compaction). The counted objects write nothing for their metrics.",
];

/** Rounds away floating-point noise (to 1e-9: stored GB-months of a short range are tiny). */
const round = (value: number) => Math.round(value * 1e9) / 1e9;

/** The figures a cost report prices, from metric rows and the objects' stored bytes. */
export interface Measured {
  rows: readonly MetricRow[];
  storedBytes: number;
}

/**
 * Prices what was measured in `range`: each item's quantity, its cost over the range (the
 * monthly allowance prorated to the range) and the range extrapolated to 30 days.
 */
export function priceUsage(
  measured: Measured,
  range: { from: number; to: number },
  prices: CostPrices,
  budgetUsd: number | null,
  nowMs: number,
): CostReport {
  const share = (range.to - range.from) / MONTH_MS;
  const sum = (pick: (row: MetricRow) => number, keep: (row: MetricRow) => boolean) =>
    measured.rows.reduce((total, row) => (keep(row) ? total + pick(row) : total), 0);
  const isObject = (row: MetricRow) => row.surface === "object";
  const quantities: Record<PricedItem, number> = {
    workersRequests: sum(
      (r) => r.calls,
      (r) => r.surface === "entrypoint" && r.kind === "Gateway" && r.method === "fetch",
    ),
    durableObjectRequests: sum((r) => r.calls, isObject),
    sqliteRowsRead: sum((r) => r.rowsRead, isObject),
    sqliteRowsWritten: sum((r) => r.rowsWritten, isObject),
    sqliteStoredGbMonths: (measured.storedBytes / GB) * share,
  };
  const items: CostItem[] = (Object.keys(quantities) as PricedItem[]).map((item) => {
    const price = prices[item];
    const quantity = quantities[item];
    const monthlyQuantity = share === 0 ? 0 : quantity / share;
    return {
      item,
      quantity: round(quantity),
      unitPriceUsd: price.usd,
      unitSize: price.per,
      includedPerMonth: price.includedPerMonth,
      costUsd: round((Math.max(0, quantity - price.includedPerMonth * share) * price.usd) / price.per),
      monthlyQuantity: round(monthlyQuantity),
      monthlyCostUsd: round((Math.max(0, monthlyQuantity - price.includedPerMonth) * price.usd) / price.per),
    };
  });
  items.push({
    item: "subscription" satisfies CostItemName,
    quantity: round(share),
    unitPriceUsd: prices.subscriptionUsdPerMonth,
    unitSize: 1,
    includedPerMonth: 0,
    costUsd: round(prices.subscriptionUsdPerMonth * share),
    monthlyQuantity: 1,
    monthlyCostUsd: prices.subscriptionUsdPerMonth,
  });
  const monthlyTotalUsd = round(items.reduce((total, item) => total + item.monthlyCostUsd, 0));
  const report: CostReport = {
    range,
    items,
    storedBytes: measured.storedBytes,
    totalUsd: round(items.reduce((total, item) => total + item.costUsd, 0)),
    monthlyTotalUsd,
    byMethod: byMethod(measured.rows),
    notIncluded: NOT_INCLUDED,
    pricesSource: prices.source,
    generatedAt: nowMs,
  };
  if (budgetUsd !== null) report.budget = { monthlyUsd: budgetUsd, exceeded: monthlyTotalUsd > budgetUsd };
  return report;
}

function byMethod(rows: readonly MetricRow[]): CostReport["byMethod"] {
  const out = new Map<
    string,
    { surface: MetricsSurface; kind: string; method: string; requests: number; rowsRead: number; rowsWritten: number }
  >();
  for (const row of rows) {
    const key = `${row.surface}\u0000${row.kind}\u0000${row.method}`;
    const entry = out.get(key) ?? { surface: row.surface, kind: row.kind, method: row.method, requests: 0, rowsRead: 0, rowsWritten: 0 };
    entry.requests += row.calls;
    entry.rowsRead += row.rowsRead;
    entry.rowsWritten += row.rowsWritten;
    out.set(key, entry);
  }
  return [...out.values()].sort((a, b) => (a.surface + a.kind + a.method < b.surface + b.kind + b.method ? -1 : 1));
}

/** The cost report of a resolved range (whole minutes). */
export async function costReportFor(env: Env, range: { from: number; to: number }, nowMs: number): Promise<CostReport> {
  const answer = await queryShards(env, range);
  const storedBytes = answer.storedBytes.reduce((total, kind) => total + kind.bytes, 0);
  return priceUsage({ rows: answer.rows, storedBytes }, answer.range, loadCostPrices(env), loadCostBudget(env), nowMs);
}

/**
 * The monthly cost projected from the last 24 hours, and the configured budget (COST_BUDGET_USD,
 * `null` when unset). For the budget alert: compare `monthlyUsd` with `budgetUsd`.
 */
export async function monthlyCostProjection(env: Env, nowMs: number): Promise<{ monthlyUsd: number; budgetUsd: number | null }> {
  const to = floorTo(nowMs, MINUTE_MS) + MINUTE_MS;
  const report = await costReportFor(env, { from: to - DAY_MS, to }, nowMs);
  return { monthlyUsd: report.monthlyTotalUsd, budgetUsd: loadCostBudget(env) };
}
