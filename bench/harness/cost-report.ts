/** Renders the cost section (rows of group "cost…", bench/scenarios/cost.ts) as text and Markdown. */
import { COST_BUDGETS, type CostBudget } from "./cost";
import type { Json, Row } from "./types";

const HEADERS = ["operation", "callers", "calls", "rows written", "rows read", "object requests", "$ / M", "budget", "status"];
const NUMERIC = new Set([1, 2, 3, 4, 5, 6]);
/** Gateway requests a month, for the projection. */
const MONTHLY = [10_000_000, 100_000_000, 1_000_000_000];

/** Two decimals, three below 1 (a budget of 0.15 or 0.25 is judged on more than its rounding). */
const num = (value: Json | undefined) => (typeof value === "number" ? value.toFixed(Math.abs(value) < 1 ? 3 : 2) : "");
const usd = (value: number) => (value >= 100 ? `$${Math.round(value).toLocaleString("en-US")}` : `$${value.toFixed(2)}`);
const perUnit = (row: Row) => (row.extra?.unit === "hit" ? "hit" : "call");

function verdict(budget: CostBudget | undefined, row: Row): [string, string] {
  if (budget === undefined) return ["", ""];
  const value = row.extra?.[budget.metric];
  const bound = `${budget.metric === "requests" ? "requests" : "written"} ≤ ${budget.max}`;
  if (typeof value !== "number" || Number(row.extra?.calls ?? 0) === 0) return [bound, "n/a"];
  return [bound, value <= budget.max ? "PASS" : "FAIL"];
}

/** One table line per budget row of the issue, then the baselines. */
function lines(rows: readonly Row[]): string[][] {
  const out: string[][] = [];
  for (const row of rows.filter((candidate) => candidate.group === "cost")) {
    const budget = COST_BUDGETS.find((candidate) => candidate.rowId === row.id && candidate.metric === "rowsWritten");
    const e = row.extra ?? {};
    out.push([
      row.label,
      String(row.concurrency ?? ""),
      String(e.calls ?? ""),
      num(e.rowsWritten),
      num(e.rowsRead),
      num(e.requests),
      num(e.usdPerMillion),
      ...verdict(budget, row),
    ]);
  }
  const settle = rows.find((row) => row.id === "cost.authorize-settle");
  const requestsBudget = COST_BUDGETS.find((budget) => budget.metric === "requests")!;
  if (settle) {
    const e = settle.extra ?? {};
    out.push([
      "object requests per gateway request (authorize + settle + hit)",
      String(settle.concurrency ?? ""),
      String(e.calls ?? ""),
      "",
      "",
      num(e.requests),
      "",
      ...verdict(requestsBudget, settle),
    ]);
  }
  for (const row of rows.filter((candidate) => candidate.group === "cost: baselines")) {
    const e = row.extra ?? {};
    out.push([row.label, "", "", num(e.rowsWritten), num(e.rowsRead), num(e.requests), num(e.usdPerMillion), "", ""]);
  }
  return out;
}

const pairs = (value: Json | undefined) =>
  Array.isArray(value) ? (value as Array<[string, number]>).map(([name, amount]) => `${name} ${amount.toFixed(2)}`).join(", ") : "";

/** Where each operation's rows and requests went, per call (per hit for recordMany). */
function breakdown(rows: readonly Row[]): string[] {
  return rows
    .filter((row) => row.group === "cost")
    .map((row) => {
      const e = row.extra ?? {};
      const parts = [
        `${row.label}, per ${perUnit(row)}:`,
        `  written by phase: ${pairs(e.writtenByPhase)}; setAlarm ${num(e.setAlarms)}; alarm runs ${num(e.alarmRequests)} of the requests`,
        `  written by object: ${pairs(e.writtenByObject)}`,
        `  written by table: ${pairs(e.writtenByTable)}`,
        `  written by method or task: ${pairs(e.writtenByMethod)}`,
        `  read by table: ${pairs(e.readByTable)}`,
        `  requests: ${pairs(e.requestsByMethod)}`,
      ];
      if (row.note) parts.push(`  note: ${row.note}`);
      return parts.join("\n");
    });
}

function monthly(rows: readonly Row[]): string[] {
  const settle = rows.find((row) => row.id === "cost.authorize-settle")?.extra?.usdPerMillion;
  const authorize = rows.find((row) => row.id === "cost.authorize.cost")?.extra?.usdPerMillion;
  const line = (label: string, perMillion: Json | undefined) =>
    typeof perMillion === "number"
      ? `${label}: ${MONTHLY.map((n) => `${(n / 1e6).toLocaleString("en-US")} M ${usd((perMillion * n) / 1e6)}`).join(", ")}`
      : undefined;
  return [
    line("authorize(estimate) + settle + hit", settle),
    line("authorize(cost) + hit", authorize),
    ...rows.filter((row) => row.group === "cost: baselines").map((row) => line(row.label, row.extra?.usdPerMillion)),
  ].filter((entry): entry is string => entry !== undefined);
}

const INTRO =
  "Counted by the bench Worker (SqlStorage.exec cursors' rowsWritten/rowsRead, 1 row per setAlarm; object requests = calls " +
  "into an object from outside it, alarm runs included), alarms' later work included; dollars at COST_PRICES list prices " +
  "(rows written, rows read, object requests), included allowances and the subscription ignored.";

export function hasCost(rows: readonly Row[]): boolean {
  return rows.some((row) => row.group === "cost");
}

const idleLine = (idle: Row) => `${idle.extra?.rowsWritten} rows written, ${idle.extra?.requests} object requests`;

export function renderCostText(rows: readonly Row[]): string[] {
  if (!hasCost(rows)) return [];
  const body = lines(rows);
  const widths = HEADERS.map((header, i) => Math.max(header.length, ...body.map((line) => line[i]!.length)));
  const pad = (line: string[]) =>
    line
      .map((cell, i) => (NUMERIC.has(i) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  const idle = rows.find((row) => row.id === "cost.idle");
  return [
    "",
    "cost per operation (per hit for recordMany)",
    `  ${INTRO}`,
    "",
    pad(HEADERS),
    pad(widths.map((w) => "-".repeat(w))),
    ...body.map(pad),
    "",
    "where the rows go",
    ...breakdown(rows).map((block) => block.replace(/^/gm, "  ")),
    "",
    "a month of gateway requests at these figures",
    ...monthly(rows).map((line) => `  ${line}`),
    ...(idle ? ["", `  between operations (no operation's data, in no figure above): ${idleLine(idle)}`] : []),
  ];
}

export function renderCostMarkdown(rows: readonly Row[]): string[] {
  if (!hasCost(rows)) return [];
  const escapeCell = (cell: string) => cell.replaceAll("|", "\\|");
  return [
    "",
    `Cost per operation (per hit for recordMany); see docs/cost.md. ${INTRO}`,
    "",
    `| ${HEADERS.join(" | ")} |`,
    `|${HEADERS.map((_, i) => (NUMERIC.has(i) ? "---:" : "---")).join("|")}|`,
    ...lines(rows).map((line) => `| ${line.map(escapeCell).join(" | ")} |`),
    "",
    "Where the rows go:",
    "",
    ...breakdown(rows).map((block) => `\`\`\`\n${block}\n\`\`\``),
    "",
    "A month of gateway requests at these figures:",
    "",
    ...monthly(rows).map((line) => `- ${line}`),
  ];
}
