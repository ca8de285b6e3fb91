/**
 * Metrics as plain rows, and the report built from them. Pure: no `cloudflare:*` imports.
 *
 * A metric row is one (minute, kind, method, code, latency bucket) with the calls that fell in
 * it and the SQLite rows they read and wrote (a row may carry rows and no call: what work a call
 * left running wrote after its count was pushed). Rows add, so minutes roll up into hours and days
 * by summing, and quantiles are answered from the per-bucket counts with DDSketch's mapping
 * (1% relative error).
 */
import type { CallLatency, MethodMetrics, MetricsSurface, SurfaceMetrics } from "../../../rpc/metrics";
import { ddsketchIndex, ddsketchValue } from "../../sketches/ddsketch";

/** The latency bucket of values below 1 µs (DDSketch's zero bucket); far below any real index. */
export const ZERO_BUCKET = -1_000_000;
/** The outcome of a call that returned (expected refusals such as `allowed: false` included). */
export const OK = "ok";

export interface MetricRow {
  surface: MetricsSurface;
  kind: string;
  method: string;
  code: string;
  bucket: number;
  calls: number;
  rowsRead: number;
  rowsWritten: number;
}

/**
 * One row of a push to a metrics rollup object: a minute's counts for one method, code and
 * latency bucket. `surface` defaults to the push's (an isolate's one push carries both).
 */
export interface PushedMetricRow extends Omit<MetricRow, "surface"> {
  minuteMs: number;
  surface?: MetricsSurface;
}

/** The latency bucket of `latencyMs` (negative or non-finite values count as zero). */
export function latencyBucket(latencyMs: number): number {
  return ddsketchIndex(latencyMs) ?? ZERO_BUCKET;
}

/**
 * The value of rank ⌊q·(n−1)⌋ from per-bucket counts, within 1% relative error; `null` when
 * there are no calls.
 */
export function quantileOf(buckets: ReadonlyMap<number, number>, q: number): number | null {
  let total = 0;
  for (const count of buckets.values()) total += count;
  if (total === 0) return null;
  const rank = Math.floor(q * (total - 1));
  let seen = 0;
  for (const index of [...buckets.keys()].sort((a, b) => a - b)) {
    seen += buckets.get(index)!;
    if (seen > rank) return index === ZERO_BUCKET ? 0 : round3(ddsketchValue(index));
  }
  return null;
}

const round3 = (value: number) => Math.round(value * 1_000) / 1_000;

function latencyOf(buckets: ReadonlyMap<number, number>): CallLatency {
  return { p50: quantileOf(buckets, 0.5), p90: quantileOf(buckets, 0.9), p99: quantileOf(buckets, 0.99) };
}

class Accumulator {
  calls = 0;
  rowsRead = 0;
  rowsWritten = 0;
  outcomes: Record<string, number> = {};
  buckets = new Map<number, number>();

  add(row: MetricRow): void {
    this.rowsRead += row.rowsRead;
    this.rowsWritten += row.rowsWritten;
    // Rows written by work a call left running (a group commit's flush) come without a call.
    if (row.calls === 0) return;
    this.calls += row.calls;
    this.outcomes[row.code] = (this.outcomes[row.code] ?? 0) + row.calls;
    this.buckets.set(row.bucket, (this.buckets.get(row.bucket) ?? 0) + row.calls);
  }

  summary(): Omit<MethodMetrics, "method"> {
    const ok = this.outcomes[OK] ?? 0;
    const outcomes: Record<string, number> = {};
    for (const code of Object.keys(this.outcomes).sort()) outcomes[code] = this.outcomes[code]!;
    return {
      calls: this.calls,
      outcomes,
      errorRate: this.calls === 0 ? 0 : (this.calls - ok) / this.calls,
      latencyMs: latencyOf(this.buckets),
      rowsRead: this.rowsRead,
      rowsWritten: this.rowsWritten,
    };
  }
}

/** Groups rows per surface kind (object class or entrypoint) and per method, sorted by name. */
export function summarize(rows: readonly MetricRow[], surface: MetricsSurface): SurfaceMetrics[] {
  const kinds = new Map<string, { total: Accumulator; methods: Map<string, Accumulator> }>();
  for (const row of rows) {
    if (row.surface !== surface) continue;
    let kind = kinds.get(row.kind);
    if (kind === undefined) kinds.set(row.kind, (kind = { total: new Accumulator(), methods: new Map() }));
    kind.total.add(row);
    let method = kind.methods.get(row.method);
    if (method === undefined) kind.methods.set(row.method, (method = new Accumulator()));
    method.add(row);
  }
  return [...kinds.keys()].sort().map((name) => {
    const kind = kinds.get(name)!;
    return {
      kind: name,
      ...kind.total.summary(),
      methods: [...kind.methods.keys()].sort().map((method) => ({ method, ...kind.methods.get(method)!.summary() })),
    };
  });
}
