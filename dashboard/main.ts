// The operator dashboard: talks to tollgate through the same capnweb client as Node programs
// (rpc/client.ts), over HTTP batch. Each refresh is one round trip: every query below is made
// before the first `await`, so they travel, pipelined behind `authenticate`, in one batch.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { AdminApi } from "../rpc/admin";
import { connect } from "../rpc/client";
import type { UsageReport } from "../rpc/credits";
import { errorCodeOf } from "../rpc/errors";
import type { CostReport, MetricsReport } from "../rpc/metrics";
import type { GlobalStats, PathDetail, StatsRange, TimeSeries, TopClients, TopPaths } from "../rpc/path-stats";

type Range = Extract<StatsRange, string>;

/** How many top paths are asked for their status counts (the 429 table). */
const DENIAL_PATHS = 10;

const rpcUrl = new URL("/rpc", location.href).toString();
let token: string | undefined;
let range: Range = "1h";
let accountId = "";
const charts = new Map<string, uPlot>();

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

$("sign-in").addEventListener("submit", (event) => {
  event.preventDefault();
  void signIn($<HTMLInputElement>("token").value);
});
$("sign-out").addEventListener("click", () => {
  token = undefined;
  $<HTMLInputElement>("token").value = "";
  show(false);
});
$("refresh").addEventListener("click", () => void refresh());
const rangeButtons = Array.from(document.querySelectorAll<HTMLButtonElement>("#range button"));
for (const button of rangeButtons) {
  button.addEventListener("click", () => {
    range = button.dataset.range as Range;
    for (const other of rangeButtons) other.setAttribute("aria-pressed", String(other === button));
    void refresh();
  });
}
$("account-form").addEventListener("submit", (event) => {
  event.preventDefault();
  accountId = $<HTMLInputElement>("account").value.trim();
  void refresh();
});

function api(): ReturnType<typeof connect<AdminApi>> {
  return connect<AdminApi>(rpcUrl, { token: token!, transport: "http-batch" });
}

async function signIn(candidate: string): Promise<void> {
  const error = $("sign-in-error");
  error.textContent = "";
  try {
    // An API key authenticates too, but as its own account: this page needs the admin.
    const who = await connect<AdminApi>(rpcUrl, { token: candidate }).whoami();
    if (who.role !== "admin") throw new Error("this is an API key; the dashboard needs the admin token");
    token = candidate;
    show(true);
    await refresh();
  } catch (cause) {
    error.textContent = errorCodeOf(cause) === "UNAUTHENTICATED" ? "The token is not valid." : messageOf(cause);
  }
}

function show(signedIn: boolean): void {
  $("sign-in").hidden = signedIn;
  $("dashboard").hidden = !signedIn;
  $("controls").hidden = !signedIn;
}

async function refresh(): Promise<void> {
  if (token === undefined) return;
  const status = $("status");
  status.textContent = "Loading…";
  const admin = api();
  const stats = admin.pathStats();
  const series = stats.timeSeries({ range });
  const global = stats.globalStats({ range });
  const paths = stats.topPaths({ range, limit: 10 });
  const clients = stats.topClients({ range, limit: 10 });
  const usage = accountId === "" ? undefined : admin.credits().usage({ accountId, range, groupBy: "day" });
  const byModel = accountId === "" ? undefined : admin.credits().usage({ accountId, range, groupBy: "model" });
  // The status counts of the busiest paths, pipelined on the top-paths answer (same batch).
  const details = paths.paths.map((p) => stats.pathDetail({ range, path: p.path, method: p.method }));
  const metrics = admin.metrics({ range });
  const cost = admin.costReport({ range });
  const [seriesR, globalR, pathsR, clientsR, usageR, detailsR, metricsR, costR, byModelR] = await Promise.allSettled([
    series,
    global,
    paths,
    clients,
    usage ?? Promise.resolve(undefined),
    details,
    metrics,
    cost,
    byModel ?? Promise.resolve(undefined),
  ]);
  if (seriesR.status === "rejected" && errorCodeOf(seriesR.reason) === "UNAUTHENTICATED") {
    token = undefined;
    show(false);
    $("sign-in-error").textContent = "The token is no longer valid.";
    return;
  }
  const failures: string[] = [];
  const use = <T>(result: PromiseSettledResult<T>, draw: (value: T) => void, what: string) => {
    if (result.status === "fulfilled") draw(result.value);
    else failures.push(`${what}: ${messageOf(result.reason)}`);
  };
  use(seriesR, drawSeries, "requests over time");
  use(globalR, drawGlobal, "totals");
  use(pathsR, drawTopPaths, "top paths");
  use(clientsR, drawTopClients, "top clients");
  use(detailsR, (value) => drawDenials(value as PathDetail[]), "denials by path");
  use(metricsR, (value) => drawMetrics(value as MetricsReport), "service metrics");
  use(costR, (value) => drawCost(value as CostReport), "cost report");
  if (usage === undefined) clearBurn();
  else use(usageR, (value) => drawBurn(value as UsageReport), "credit burn");
  if (byModel === undefined) $("burn-models").querySelector("tbody")!.replaceChildren();
  else use(byModelR, (value) => drawBurnByModel(value as UsageReport), "credit burn by model");
  status.textContent =
    failures.length > 0 ? `Some panels failed: ${failures.join("; ")}` : `Range ${range}, updated ${new Date().toLocaleTimeString()}.`;
  status.classList.toggle("error", failures.length > 0);
}

function drawGlobal(stats: GlobalStats): void {
  $("total-requests").textContent = fmt(stats.totalRequests);
  $("total-errors").textContent = fmt(stats.errors);
  $("unique-clients").textContent = `${stats.uniqueClientsExact ? "" : "≈"}${fmt(stats.uniqueClients)}`;
  const rows: [string, number | null][] = [
    ["p50", stats.latency.p50],
    ["p90", stats.latency.p90],
    ["p99", stats.latency.p99],
    ["min", stats.latency.min],
    ["max", stats.latency.max],
  ];
  const body = $("latency").querySelector("tbody")!;
  body.replaceChildren(
    ...rows.map(([name, value]) => row([name, value === null ? "–" : `${value.toFixed(1)} ms`], [false, true])),
    row(["hits with a latency", fmt(stats.latency.count)], [false, true]),
  );
}

function drawSeries(series: TimeSeries): void {
  const totals = series.points.reduce((sum, p) => ({ requests: sum.requests + p.requests, rateLimited: sum.rateLimited + p.rateLimited }), {
    requests: 0,
    rateLimited: 0,
  });
  $("total-denials").textContent = fmt(totals.rateLimited);
  const chart = $("requests-chart");
  chart.dataset.points = String(series.points.length);
  chart.dataset.requests = String(totals.requests);
  const step = series.stepMs >= 86_400_000 ? "day" : series.stepMs >= 3_600_000 ? "hour" : "minute";
  $("requests-note").textContent =
    `Per ${step}, from ${new Date(series.range.from).toLocaleString()} to ${new Date(series.range.to).toLocaleString()}.`;
  const data: uPlot.AlignedData = [
    series.points.map((p) => p.at / 1000),
    series.points.map((p) => p.requests),
    series.points.map((p) => p.errors),
    series.points.map((p) => p.rateLimited),
  ];
  plot("requests-chart", data, [
    { label: "requests", stroke: "#3567d6", fill: "rgba(53, 103, 214, 0.12)", width: 2, points: { show: false } },
    { label: "5xx", stroke: "#b3261e", width: 1.5, points: { show: false } },
    { label: "429", stroke: "#e08a00", width: 1.5, points: { show: false } },
  ]);
}

function drawTopPaths(top: TopPaths): void {
  const max = Math.max(1, ...top.paths.map((p) => p.requests));
  $("top-paths")
    .querySelector("tbody")!
    .replaceChildren(...top.paths.map((p) => row([p.method, p.path, fmt(p.requests), bar(p.requests / max)], [false, false, true])));
}

function drawTopClients(top: TopClients): void {
  const max = Math.max(1, ...top.clients.map((c) => c.maxRequests));
  $("top-clients")
    .querySelector("tbody")!
    .replaceChildren(
      ...top.clients.map((c) =>
        row(
          [c.client, c.requests === c.maxRequests ? fmt(c.requests) : `${fmt(c.requests)}–${fmt(c.maxRequests)}`, bar(c.requests / max)],
          [false, true],
        ),
      ),
    );
  $("top-clients-note").textContent = top.approximate
    ? `Counts are bounds: every client with more than ${fmt(top.errorBound)} requests is listed.`
    : "Counts are exact.";
}

function drawDenials(details: PathDetail[]): void {
  const rows = details
    .flatMap((d) => d.methods.map((m) => ({ label: `${m.method} ${d.path}`, denials: m.statuses?.["429"] ?? 0 })))
    .filter((r) => r.denials > 0)
    .sort((a, b) => b.denials - a.denials);
  const body = $("denials").querySelector("tbody")!;
  body.replaceChildren(
    ...(rows.length > 0
      ? rows.map((r) => row([r.label, fmt(r.denials)], [false, true]))
      : [row([`No 429s among the ${DENIAL_PATHS} busiest paths.`, ""], [false, true])]),
  );
}

function drawMetrics(report: MetricsReport): void {
  const ms = (value: number | null) => (value === null ? "–" : `${value} ms`);
  const rows = [
    ...report.entrypoints.map((kind) => ({ kind, rows: false })),
    ...report.objects.map((kind) => ({ kind, rows: true })),
  ].flatMap(({ kind, rows: withRows }) =>
    kind.methods.map((m) =>
      row(
        [
          kind.kind,
          m.method,
          fmt(m.calls),
          `${(m.errorRate * 100).toFixed(1)}%`,
          ms(m.latencyMs.p50),
          ms(m.latencyMs.p99),
          withRows ? fmt(m.rowsRead) : "–",
          withRows ? fmt(m.rowsWritten) : "–",
        ],
        [false, false, true, true, true, true, true, true],
      ),
    ),
  );
  $("metrics")
    .querySelector("tbody")!
    .replaceChildren(...(rows.length > 0 ? rows : [row(["No calls counted in this range.", ""], [false, true])]));
}

function drawCost(report: CostReport): void {
  const budget =
    report.budget === undefined
      ? ""
      : ` Budget $${report.budget.monthlyUsd.toFixed(2)}: ${report.budget.exceeded ? "exceeded" : "within"}.`;
  $("cost-note").textContent =
    `Estimated Cloudflare cost: $${report.totalUsd.toFixed(4)} in this range, $${report.monthlyTotalUsd.toFixed(2)} per month projected (duration not included).${budget}`;
}

function drawBurn(report: UsageReport): void {
  const total = report.items.reduce((sum, item) => sum + item.amount, 0);
  const count = report.items.reduce((sum, item) => sum + item.count, 0);
  $("burn-summary").textContent =
    `Account ${accountId}: ${fmt(total)} credits over ${fmt(count)} calls, per UTC day (usage is rolled up daily, so short ranges show whole days).`;
  const chart = $("burn-chart");
  chart.dataset.credits = String(total);
  const days: number[] = [];
  for (let day = report.from; day < report.to; day += 86_400_000) days.push(day);
  const byDay = new Map(report.items.map((item) => [Date.parse(`${item.group}T00:00:00Z`), item.amount]));
  // Half a day of margin each side, so a single day's bar is drawn whole.
  const x: [number, number] = [report.from / 1000 - 43_200, report.to / 1000 - 43_200];
  plot(
    "burn-chart",
    [days.map((d) => d / 1000), days.map((d) => byDay.get(d) ?? 0)],
    [{ label: "credits", stroke: "#7b3fd6", fill: "#7b3fd6", paths: uPlot.paths.bars!({ size: [0.6, 60] }) }],
    x,
  );
}

/** Tokens and credits per model: LLM calls priced from their usage (docs/llm-gateway.md); other spends have no tokens. */
function drawBurnByModel(report: UsageReport): void {
  const items = [...report.items].sort((a, b) => b.amount - a.amount);
  $("burn-models")
    .querySelector("tbody")!
    .replaceChildren(
      ...(items.length > 0
        ? items.map((item) =>
            row(
              [
                item.group,
                fmt(item.count),
                fmt(item.inputTokens),
                fmt(item.cachedTokens),
                fmt(item.cacheWriteTokens),
                fmt(item.outputTokens),
                fmt(item.amount),
              ],
              [false, true, true, true, true, true, true],
            ),
          )
        : [row(["No spend in this range.", "", "", "", "", "", ""], [false, true, true, true, true, true, true])]),
    );
}

function clearBurn(): void {
  charts.get("burn-chart")?.destroy();
  charts.delete("burn-chart");
  $("burn-chart").replaceChildren();
  $("burn-summary").textContent = "Enter an account id to see its credits spent per day.";
}

/** Draws (or redraws) a time chart in the element `id`. */
function plot(id: string, data: uPlot.AlignedData, series: uPlot.Series[], x?: [number, number]): void {
  const element = $(id);
  charts.get(id)?.destroy();
  const chart = new uPlot(
    {
      width: Math.max(320, element.clientWidth),
      height: 240,
      series: [{}, ...series],
      scales: {
        x: x === undefined ? { time: true } : { time: true, range: () => x },
        y: { range: (_u, _min, max) => [0, Math.max(1, max) * 1.1] },
      },
      axes: [{}, { size: 60 }],
    },
    data,
    element,
  );
  charts.set(id, chart);
}

function row(cells: (string | Node)[], numeric: boolean[]): HTMLTableRowElement {
  const tr = document.createElement("tr");
  cells.forEach((cell, i) => {
    const td = document.createElement("td");
    if (numeric[i]) td.className = "num";
    if (cell instanceof Node) {
      td.className = "bar";
      td.append(cell);
    } else {
      // textContent, never innerHTML: paths and client ids come from recorded traffic.
      td.textContent = cell;
    }
    tr.append(td);
  });
  return tr;
}

function bar(fraction: number): HTMLElement {
  const span = document.createElement("span");
  span.style.width = `${Math.max(1, Math.round(fraction * 100))}%`;
  return span;
}

function fmt(n: number): string {
  return n.toLocaleString("en-US");
}

function messageOf(error: unknown): string {
  const code = errorCodeOf(error);
  const message = error instanceof Error ? error.message : String(error);
  return code === undefined ? message : `[${code}] ${message}`;
}

addEventListener("resize", () => {
  for (const [id, chart] of charts) chart.setSize({ width: Math.max(320, $(id).clientWidth), height: 240 });
});
