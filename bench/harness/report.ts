/** Renders results as a console table and as the Markdown section of docs/benchmarks.md. */
import { renderCostMarkdown, renderCostText } from "./cost-report";
import type { BenchResults } from "./runner";
import type { Row } from "./types";

const HEADERS = ["scenario", "route", "conc", "ops/s", "mean ms", "p50 ms", "p90 ms", "p99 ms", "× ceiling", "mean × ceil", "notes"];
/** Columns right-aligned (numbers). */
const NUMERIC = new Set([2, 3, 4, 5, 6, 7, 8, 9]);

const ms = (value: number) => (value < 10 ? value.toFixed(2) : value.toFixed(1));
const int = (value: number) => Math.round(value).toLocaleString("en-US");
const mib = (bytes: number | null | undefined) => (bytes == null ? "n/a" : `${(bytes / 1_048_576).toFixed(1)} MiB`);
const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;

function notes(row: Row): string {
  const extra = row.extra ?? {};
  const parts: string[] = [];
  if (extra.survived !== undefined) {
    parts.push(`${int(Number(extra.counted))}/${int(Number(extra.increments))} counted (${(Number(extra.survived) * 100).toFixed(1)}%)`);
  }
  if (extra.entries !== undefined && extra.entriesAfter !== undefined) {
    parts.push(`window ${int(Number(extra.entries))}→${int(Number(extra.entriesAfter))}`);
  }
  for (const [key, value] of Object.entries(extra)) {
    if (key.startsWith("× ")) parts.push(`${Number(value).toFixed(2)} ${key}`);
  }
  if (typeof extra.storedBytes === "number") parts.push(`${kib(extra.storedBytes)} stored/subject`);
  if (row.note) parts.push(row.note);
  return parts.join("; ");
}

function cells(row: Row): string[] {
  const m = row.measured;
  if (!m) return [row.label, row.route ?? "", "", "—", "—", "—", "—", "—", "—", "—", notes(row)];
  return [
    row.label,
    row.route ?? "",
    String(row.concurrency ?? ""),
    int(m.opsPerSec),
    ms(m.meanMs),
    ms(m.p50Ms),
    ms(m.p90Ms),
    ms(m.p99Ms),
    m.ratioToCeiling === undefined ? "" : m.ratioToCeiling.toFixed(2),
    m.meanRatioToCeiling === undefined ? "" : m.meanRatioToCeiling.toFixed(2),
    notes(row),
  ];
}

function groups(rows: readonly Row[]): Map<string, Row[]> {
  const byGroup = new Map<string, Row[]>();
  for (const row of rows) {
    // Memory and cost have sections of their own.
    if (row.group === "memory" || row.group.startsWith("cost")) continue;
    byGroup.set(row.group, [...(byGroup.get(row.group) ?? []), row]);
  }
  return byGroup;
}

function machineLine(results: BenchResults): string {
  const m = results.machine;
  return (
    `${m.cpus} × ${m.cpuModel}, ${mib(m.memoryBytes)} RAM, ${m.platform}, Node ${m.node}, workerd ${m.workerd} ` +
    `(miniflare ${m.miniflare}); Durable Object storage ${m.storage === "memory" ? "on tmpfs" : "on disk"}; ` +
    `load average at start ${m.loadAverageAtStart.join(" / ")}`
  );
}

function memoryLines(results: BenchResults): string[] {
  const lines = [
    `workerd peak RSS (VmHWM): ${mib(results.memory.workerdPeakRssBytes)}; at the end: ${mib(results.memory.workerdRssAtEndBytes)}`,
    `peak RSS while each scenario ran: ${results.memory.byScenario.map((s) => `${s.scenario} ${mib(s.peakRssBytes)}`).join(", ")}`,
  ];
  for (const row of results.rows.filter((r) => r.group === "memory")) {
    lines.push(`${row.label}: ${typeof row.extra?.storedBytes === "number" ? kib(row.extra.storedBytes) : "n/a"}`);
  }
  return lines;
}

/** The plain-text report printed at the end of a run. */
export function renderText(results: BenchResults): string {
  const body: string[][] = [];
  for (const [group, rows] of groups(results.rows)) {
    body.push([`[${group}]`, ...HEADERS.slice(1).map(() => "")]);
    for (const row of rows) body.push(cells(row).map((cell, i) => (i === 0 ? `  ${cell}` : cell)));
  }
  const widths = HEADERS.map((header, i) => Math.max(header.length, ...body.map((line) => line[i]!.length)));
  const pad = (line: string[]) =>
    line
      .map((cell, i) => (NUMERIC.has(i) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  const out = [
    `tollgate bench (${results.mode}) ${results.date}, ${(results.durationMs / 1000).toFixed(0)} s`,
    machineLine(results),
    "",
    pad(HEADERS),
    pad(widths.map((w) => "-".repeat(w))),
    ...body.map(pad),
    "",
    "memory",
    ...memoryLines(results).map((line) => `  ${line}`),
    ...renderCostText(results.rows),
    "",
    "targets (reported, never failing the build)",
    ...results.targets.map((t) => `  ${t.status.padEnd(4)}  ${t.description}: ${t.detail}`),
  ];
  if (results.skipped.length > 0) out.push("", `skipped (run budget spent): ${results.skipped.join(", ")}`);
  return out.join("\n");
}

/** The Markdown section written into docs/benchmarks.md. */
export function renderMarkdown(results: BenchResults): string {
  const escapeCell = (cell: string) => cell.replaceAll("|", "\\|");
  const lines = [
    `Run: \`npm run bench${results.mode === "quick" ? " -- --quick" : ""}\` on ${results.date} (${(results.durationMs / 1000).toFixed(0)} s).`,
    `Machine: ${machineLine(results)}.`,
    "",
    `| ${HEADERS.join(" | ")} |`,
    `|${HEADERS.map((_, i) => (NUMERIC.has(i) ? "---:" : "---")).join("|")}|`,
  ];
  for (const [group, rows] of groups(results.rows)) {
    lines.push(`| **${escapeCell(group)}** |${" |".repeat(HEADERS.length - 1)}`);
    for (const row of rows) lines.push(`| ${cells(row).map(escapeCell).join(" | ")} |`);
  }
  lines.push("", "Memory:", "", ...memoryLines(results).map((line) => `- ${line}`), ...renderCostMarkdown(results.rows));
  lines.push("", "Targets (reported, never failing the build):", "");
  lines.push("| status | target | measured |", "|---|---|---|");
  for (const t of results.targets) lines.push(`| ${t.status} | ${escapeCell(t.description)} | ${escapeCell(t.detail)} |`);
  if (results.skipped.length > 0) lines.push("", `Skipped (run budget spent): ${results.skipped.join(", ")}.`);
  return lines.join("\n");
}
