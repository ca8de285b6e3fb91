/**
 * The cost section's model: the budgets, list prices, and the per-operation summary of
 * what the bench Worker counted (bench/workers/cost-meter.ts). Neutral: used by the cost
 * scenario, the report and the targets, on the Node side and in the driver's bundle.
 */
import type { Json, Row } from "./types";

/** What one bucket of the meter counted: rows keyed `kind|phase|table`, requests `kind.method`. */
export interface BucketCounts {
  rows: Record<string, [written: number, read: number]>;
  requests: Record<string, number>;
  deleteAlarms: number;
  statements: number;
}

export interface CostSnapshot {
  clockMs: number;
  objects: number;
  buckets: Record<string, BucketCounts>;
}

export interface CostDrainInput {
  /** The isolate clock (ms) to drain up to. */
  untilMs: number;
  /** Move the clock to `untilMs` first: every alarm due by then runs once, at that time. */
  jump?: boolean;
  /**
   * Whose alarms run. `idle`: every object no operation owns (the shared ones, earlier scenarios'
   * subjects), and `owner`'s. `operation`: `owner`'s limiters and ledgers, and the shared objects
   * called in the current window. `owned`: `owner`'s only.
   */
  runs: "idle" | "operation" | "owned";
  owner?: string;
  maxSteps: number;
  maxWallMs: number;
}

export interface CostDrainResult {
  steps: number;
  errors: number;
  firstError?: string;
  done: boolean;
  clockMs: number;
  nextDueMs: number | null;
}

/** The part of COST_PRICES (wrangler.toml) the cost section uses. */
export interface CostPricesLike {
  source: string;
  durableObjectRequests: { usd: number; per: number; includedPerMonth: number };
  sqliteRowsRead: { usd: number; per: number; includedPerMonth: number };
  sqliteRowsWritten: { usd: number; per: number; includedPerMonth: number };
}

/** Workers KV list prices (https://developers.cloudflare.com/kv/platform/pricing/): USD per million. */
export const KV_PRICES = { readsPerMillion: 0.5, writesPerMillion: 5.0 };

/** What one unit (an operation, or a hit for recordMany) costs, as counted. */
export interface UnitCost {
  rowsWritten: number;
  rowsRead: number;
  requests: number;
}

/** USD per million units at list prices, allowances ignored. */
export function usdPerMillion(cost: UnitCost, prices: CostPricesLike): number {
  const unit = (price: { usd: number; per: number }) => price.usd / price.per;
  return (
    1_000_000 *
    (cost.rowsWritten * unit(prices.sqliteRowsWritten) +
      cost.rowsRead * unit(prices.sqliteRowsRead) +
      cost.requests * unit(prices.durableObjectRequests))
  );
}

/** One budget line of the issue: which cost row it reads, which figure, and the bound. */
export interface CostBudget {
  id: string;
  rowId: string;
  description: string;
  metric: "rowsWritten" | "requests";
  max: number;
}

export const COST_BUDGETS: readonly CostBudget[] = [
  {
    id: "cost-check-sequential",
    rowId: "cost.check.sequential",
    description: "check, 1 rule, one subject, sequential: rows written ≤ 1.0",
    metric: "rowsWritten",
    max: 1.0,
  },
  {
    id: "cost-check-concurrent",
    rowId: "cost.check.concurrent",
    description: "check, 1 rule, one subject, 16 callers: rows written ≤ 0.25",
    metric: "rowsWritten",
    max: 0.25,
  },
  {
    id: "cost-record",
    rowId: "cost.record",
    description: "record, one hit (20 clients): rows written ≤ 0.5",
    metric: "rowsWritten",
    max: 0.5,
  },
  {
    id: "cost-record-many",
    rowId: "cost.record-many",
    description: "recordMany, 100 hits of one client over 10 paths: rows written ≤ 0.15 per hit",
    metric: "rowsWritten",
    max: 0.15,
  },
  {
    id: "cost-authorize-cost",
    rowId: "cost.authorize.cost",
    description: "authorize(cost), key + per-IP policy, hit included: rows written ≤ 4",
    metric: "rowsWritten",
    max: 4,
  },
  {
    id: "cost-authorize-settle",
    rowId: "cost.authorize-settle",
    description: "authorize(estimate) + settle, hit included: rows written ≤ 7",
    metric: "rowsWritten",
    max: 7,
  },
  {
    id: "cost-gateway-requests",
    rowId: "cost.authorize-settle",
    description: "object requests per gateway request (authorize + settle + hit) ≤ 3",
    metric: "requests",
    max: 3,
  },
];

/** What the scenario knows about one measured operation besides the meter's counts. */
export interface MeasuredOperation {
  id: string;
  label: string;
  concurrency: number;
  calls: number;
  errors: number;
  firstError?: string;
  /** Units per call: 1, or the hits of one recordMany call. */
  unitsPerCall: number;
  unit: "call" | "hit";
  drainNote?: string;
}

const round = (value: number, digits = 3) => Math.round(value * 10 ** digits) / 10 ** digits;

/** Sums `entries` by `keyOf`, divides by `units`, and keeps the largest `limit`, largest first. */
function top(entries: Array<[string, number]>, keyOf: (key: string) => string, units: number, limit: number): Array<[string, number]> {
  const sums = new Map<string, number>();
  for (const [key, value] of entries) sums.set(keyOf(key), (sums.get(keyOf(key)) ?? 0) + value);
  return [...sums]
    .filter(([, value]) => value > 0)
    .sort((a, b) => b[1] - a[1])
    .slice(0, limit)
    .map(([key, value]) => [key, round(value / units)]);
}

const phaseGroup = (phase: string) => (phase.startsWith("alarm:") ? "alarms" : phase === "constructor" ? "object creation" : "calls");

/** The cost row of one operation: per-unit figures, dollars, and where the rows went. */
export function costRow(op: MeasuredOperation, counts: BucketCounts | undefined, prices: CostPricesLike): Row {
  const units = Math.max(1, op.calls * op.unitsPerCall);
  const rows = Object.entries(counts?.rows ?? {});
  const requests = Object.entries(counts?.requests ?? {});
  const written = rows.map(([key, [w]]) => [key, w] as [string, number]);
  const read = rows.map(([key, [, r]]) => [key, r] as [string, number]);
  const sum = (list: Array<[string, number]>) => list.reduce((total, [, value]) => total + value, 0);
  const perUnit: UnitCost = { rowsWritten: sum(written) / units, rowsRead: sum(read) / units, requests: sum(requests) / units };
  const [kind, phase, table] = [0, 1, 2].map((i) => (key: string) => key.split("|")[i]!);
  const extra: Record<string, Json> = {
    unit: op.unit,
    calls: op.calls,
    units: op.calls * op.unitsPerCall,
    rowsWritten: round(perUnit.rowsWritten),
    rowsRead: round(perUnit.rowsRead),
    requests: round(perUnit.requests),
    alarmRequests: round(sum(requests.filter(([key]) => key.endsWith(".alarm"))) / units),
    usdPerMillion: round(usdPerMillion(perUnit, prices), 4),
    setAlarms: round(sum(written.filter(([key]) => table!(key) === "(setAlarm)")) / units),
    deleteAlarms: counts?.deleteAlarms ?? 0,
    statements: round((counts?.statements ?? 0) / units),
    writtenByObject: top(written, kind!, units, 10),
    writtenByTable: top(written, (key) => `${kind!(key)}.${table!(key)}`, units, 16),
    writtenByPhase: top(written, (key) => phaseGroup(phase!(key)), units, 3),
    writtenByMethod: top(written, (key) => `${kind!(key)}.${phase!(key)}`, units, 10),
    readByTable: top(read, (key) => `${kind!(key)}.${table!(key)}`, units, 5),
    requestsByMethod: top(requests, (key) => key, units, 10),
  };
  const notes = [...(op.errors > 0 ? [`${op.errors} calls failed: ${op.firstError ?? "?"}`] : []), ...(op.drainNote ? [op.drainNote] : [])];
  return {
    id: op.id,
    group: "cost",
    label: op.label,
    concurrency: op.concurrency,
    extra,
    ...(notes.length > 0 ? { note: notes.join("; ") } : {}),
  };
}

/** The designs tollgate replaces, at list prices, as rows beside the measured ones. */
export function baselineRows(prices: CostPricesLike): Row[] {
  const seedsDo: UnitCost = { rowsWritten: 1, rowsRead: 1, requests: 1 };
  return [
    {
      id: "cost.baseline.kv",
      group: "cost: baselines",
      label: "seeds' KV design: one KV read + one KV write per request",
      extra: { usdPerMillion: KV_PRICES.readsPerMillion + KV_PRICES.writesPerMillion },
      note: `model, KV list prices: $${KV_PRICES.readsPerMillion.toFixed(2)}/M reads + $${KV_PRICES.writesPerMillion.toFixed(2)}/M writes`,
    },
    {
      id: "cost.baseline.seeds-do",
      group: "cost: baselines",
      label: "seeds' DO sample: one storage.get + one storage.put per request",
      extra: { ...seedsDo, usdPerMillion: round(usdPerMillion(seedsDo, prices), 4) },
      note: "model (bench/workers/seed-limiter-do.ts): 1 object request, 1 row read, 1 row written per request",
    },
  ];
}

/** The figure a budget reads from its row, or undefined when the row was not measured. */
export function budgetValue(budget: CostBudget, rows: readonly Row[]): number | undefined {
  const row = rows.find((candidate) => candidate.id === budget.rowId);
  const value = row?.extra?.[budget.metric];
  return typeof value === "number" && Number(row?.extra?.calls ?? 0) > 0 ? value : undefined;
}
