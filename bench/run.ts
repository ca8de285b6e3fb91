/**
 * `npm run bench [-- --quick] [--only=check,kv-counter] [--disk] [--no-write]`
 *
 * Starts tollgate and the load driver on workerd (loopback only), runs every registered
 * scenario, prints the table, writes bench/results.json (bench/results-quick.json for
 * --quick) and refreshes the matching section of docs/benchmarks.md. Exits 0 whatever the
 * targets say: speed is reported, never a build failure.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { renderMarkdown, renderText } from "./harness/report";
import { type BenchResults, runBench } from "./harness/runner";

const root = join(import.meta.dirname, "..");
const args = process.argv.slice(2);
const quick = args.includes("--quick");
const write = !args.includes("--no-write");
const only = args
  .find((arg) => arg.startsWith("--only="))
  ?.slice("--only=".length)
  .split(",")
  .filter(Boolean);

process.env.WRANGLER_SEND_METRICS ??= "false";

const storage = args.includes("--disk") ? "disk" : undefined;
const results = await runBench({
  mode: quick ? "quick" : "full",
  ...(only ? { only } : {}),
  ...(storage ? { storage } : {}),
  log: (line) => console.log(line),
});
console.log(`\n${renderText(results)}`);

if (write) {
  const resultsFile = join(import.meta.dirname, quick ? "results-quick.json" : "results.json");
  writeFileSync(resultsFile, `${JSON.stringify(results, null, 2)}\n`);
  refreshDocs(results);
  console.log(`\nwrote ${resultsFile} and docs/benchmarks.md`);
}

/** Replaces the section between this mode's markers; the rest of the page is hand-written. */
function refreshDocs(run: BenchResults): void {
  const path = join(root, "docs", "benchmarks.md");
  if (!existsSync(path)) return;
  const marker = run.mode === "quick" ? "quick" : "full";
  const start = `<!-- bench:${marker}:start -->`;
  const end = `<!-- bench:${marker}:end -->`;
  const page = readFileSync(path, "utf8");
  const from = page.indexOf(start);
  const to = page.indexOf(end);
  if (from === -1 || to === -1 || to < from) {
    console.warn(`docs/benchmarks.md has no ${start} … ${end} markers; left unchanged`);
    return;
  }
  const section = only ? `${renderMarkdown(run)}\n\n(Partial run: --only=${only.join(",")}.)` : renderMarkdown(run);
  writeFileSync(path, `${page.slice(0, from + start.length)}\n${section}\n${page.slice(to)}`);
}
