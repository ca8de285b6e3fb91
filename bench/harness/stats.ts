/** Summaries of driver results. Neutral: used by the Node side and by scenario files. */
import type { DriveResult, Params, Row } from "./types";

/** Nearest-rank percentile of an ascending array; 0 for an empty one. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/** Throughput and latency over one or more driver results (e.g. every round of a measurement). */
export function summarize(results: readonly DriveResult[]): NonNullable<Row["measured"]> {
  const latencies = results.flatMap((result) => result.latenciesMs).sort((a, b) => a - b);
  const ops = results.reduce((sum, result) => sum + result.ops, 0);
  const errors = results.reduce((sum, result) => sum + result.errors, 0);
  const elapsedMs = results.reduce((sum, result) => sum + result.elapsedMs, 0);
  return {
    ops,
    errors,
    opsPerSec: elapsedMs > 0 ? (ops * 1_000) / elapsedMs : 0,
    meanMs: latencies.length === 0 ? 0 : latencies.reduce((sum, ms) => sum + ms, 0) / latencies.length,
    p50Ms: percentile(latencies, 50),
    p90Ms: percentile(latencies, 90),
    p99Ms: percentile(latencies, 99),
  };
}

/** The subject a call uses: `subjects` objects, taken round-robin, under one prefix. */
export function subjectAt(params: Params, index: number): string {
  const count = typeof params.subjects === "number" && params.subjects > 0 ? params.subjects : 1;
  return `${String(params.prefix)}:${index % count}`;
}

/**
 * Releases an RPC result now instead of at garbage collection (workerd warns about results
 * left undisposed). Results without a disposer are left alone.
 */
export function disposeResult(result: unknown): void {
  if (result === null || typeof result !== "object") return;
  const key = (Symbol as unknown as { dispose?: symbol }).dispose;
  const disposer = key === undefined ? undefined : (result as Record<symbol, unknown>)[key];
  if (typeof disposer === "function") disposer.call(result);
}
