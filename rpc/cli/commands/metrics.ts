import type { CostReport, MetricsReport, SurfaceMetrics } from "../../metrics";
import type { StatsRange } from "../../path-stats";
import { UsageError } from "../args";
import type { Command } from "../command";
import { table } from "../format";

const RANGES = new Set(["1h", "24h", "7d", "30d"]);

function range(option: unknown): StatsRange {
  const value = (option as string | undefined) ?? "1h";
  if (!RANGES.has(value)) throw new UsageError(`--range is one of ${[...RANGES].join(", ")}`);
  return value as StatsRange;
}

const ms = (value: number | null) => (value === null ? "-" : `${value}ms`);
const pct = (value: number) => `${(value * 100).toFixed(2)}%`;
const codes = (outcomes: Record<string, number>) =>
  Object.entries(outcomes)
    .filter(([code]) => code !== "ok")
    .map(([code, calls]) => `${code}:${calls}`)
    .join(" ");

function rows(kinds: SurfaceMetrics[], withRows: boolean): unknown[][] {
  return kinds.flatMap((kind) =>
    kind.methods.map((m) => [
      kind.kind,
      m.method,
      m.calls,
      pct(m.errorRate),
      codes(m.outcomes),
      ms(m.latencyMs.p50),
      ms(m.latencyMs.p99),
      ...(withRows ? [m.rowsRead, m.rowsWritten] : []),
    ]),
  );
}

function renderMetrics(report: MetricsReport): string {
  const parts: string[] = [];
  if (report.entrypoints.length > 0) {
    parts.push(
      `entrypoints\n${table(["entrypoint", "method", "calls", "errors", "codes", "p50", "p99"], rows(report.entrypoints, false))}`,
    );
  }
  if (report.objects.length > 0) {
    parts.push(
      `objects\n${table(["object", "method", "calls", "errors", "codes", "p50", "p99", "rows read", "rows written"], rows(report.objects, true))}`,
    );
  }
  return parts.length === 0 ? "no calls counted in this range" : parts.join("\n\n");
}

const usd = (value: number) => `$${value.toFixed(4)}`;

function renderCost(report: CostReport): string {
  const lines = table(
    ["item", "quantity", "price", "cost in range", "per month", "monthly cost"],
    report.items.map((item) => [
      item.item,
      item.quantity,
      `${usd(item.unitPriceUsd)}/${item.unitSize}`,
      usd(item.costUsd),
      item.monthlyQuantity,
      usd(item.monthlyCostUsd),
    ]),
  );
  const budget =
    report.budget === undefined ? "" : `\nbudget ${usd(report.budget.monthlyUsd)}/month: ${report.budget.exceeded ? "EXCEEDED" : "within"}`;
  return `${lines}\n\ntotal ${usd(report.totalUsd)} in range, ${usd(report.monthlyTotalUsd)} projected per month${budget}\nnot included: ${report.notIncluded.join(" ")}`;
}

export const metricsCommands: Command[] = [
  {
    name: "metrics",
    usage: "metrics [--range 1h|24h|7d|30d]",
    summary: "calls, error codes, latency and SQLite rows per entrypoint, object class and method",
    options: { range: { type: "string" } },
    async run({ api, options, print }) {
      print(await api.metrics({ range: range(options.range) }), renderMetrics);
      return 0;
    },
  },
  {
    name: "cost",
    usage: "cost [--range 1h|24h|7d|30d]",
    summary: "the Cloudflare bill estimated from measured usage, with a monthly projection",
    options: { range: { type: "string" } },
    async run({ api, options, print }) {
      print(await api.costReport({ range: range(options.range) }), renderCost);
      return 0;
    },
  },
];
