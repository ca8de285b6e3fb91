/**
 * A metrics rollup row as the shard keeps it: one (bucket, surface, kind, method, code) with its
 * calls, rows read and written, and its latency distribution as counts per DDSketch bucket in
 * the same row. One row per method and outcome, however spread the latencies: rows written are
 * billed, and a minute of one method used to take a row per latency bucket. Pure.
 */
import type { MetricsSurface } from "../../../rpc/metrics";
import { type MetricRow, ZERO_BUCKET } from "../../platform/metering/model";

export interface RollupGroup {
  /** The minute (hour, day) the counts belong to. */
  bucketMs: number;
  surface: MetricsSurface;
  kind: string;
  method: string;
  code: string;
  calls: number;
  rowsRead: number;
  rowsWritten: number;
  /** Calls per latency bucket. */
  latency: Map<number, number>;
}

export const groupKey = (group: Pick<RollupGroup, "bucketMs" | "surface" | "kind" | "method" | "code">): string =>
  `${group.bucketMs}\u0000${group.surface}\u0000${group.kind}\u0000${group.method}\u0000${group.code}`;

/** Adds `from`'s counts to `group` (whatever their keys). */
export function mergeCounts(group: RollupGroup, from: Pick<RollupGroup, "calls" | "rowsRead" | "rowsWritten" | "latency">): void {
  group.calls += from.calls;
  group.rowsRead += from.rowsRead;
  group.rowsWritten += from.rowsWritten;
  for (const [bucket, calls] of from.latency) group.latency.set(bucket, (group.latency.get(bucket) ?? 0) + calls);
}

/** Adds `from`'s counts to the group of the same key in `into` (a copy of `from` when missing). */
export function addGroup(into: Map<string, RollupGroup>, from: RollupGroup): void {
  const key = groupKey(from);
  const group = into.get(key);
  if (group === undefined) into.set(key, { ...from, latency: new Map(from.latency) });
  else mergeCounts(group, from);
}

/** Calls per latency bucket as a JSON object, `{"<bucket>": calls, …}` (the latency column), and back. */
function latencyRecord(latency: ReadonlyMap<number, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [bucket, calls] of latency) out[String(bucket)] = calls;
  return out;
}

function latencyMap(record: Record<string, number>): Map<number, number> {
  const out = new Map<number, number>();
  for (const [bucket, calls] of Object.entries(record)) out.set(Number(bucket), calls);
  return out;
}

export const latencyJson = (latency: ReadonlyMap<number, number>): string => JSON.stringify(latencyRecord(latency));
export const parseLatency = (json: string): Map<number, number> => latencyMap(JSON.parse(json) as Record<string, number>);

/**
 * The group as the report's rows: one per latency bucket with its calls. Rows read and written
 * are kept per method and outcome, not per latency bucket, so they ride on the first row.
 */
export function toMetricRows(group: RollupGroup): MetricRow[] {
  const rows: MetricRow[] = [];
  if (group.latency.size === 0) {
    // Rows only, no call (work a call left running wrote them after its count was pushed).
    const { surface, kind, method, code, rowsRead, rowsWritten } = group;
    return [{ surface, kind, method, code, bucket: ZERO_BUCKET, calls: 0, rowsRead, rowsWritten }];
  }
  for (const [bucket, calls] of [...group.latency].sort((a, b) => a[0] - b[0])) {
    const first = rows.length === 0;
    rows.push({
      surface: group.surface,
      kind: group.kind,
      method: group.method,
      code: group.code,
      bucket,
      calls,
      rowsRead: first ? group.rowsRead : 0,
      rowsWritten: first ? group.rowsWritten : 0,
    });
  }
  return rows;
}

/** A group as a JSON value (the journal's), and back. */
export type GroupTuple = [number, MetricsSurface, string, string, string, number, number, number, Record<string, number>];

export function groupToTuple(group: RollupGroup): GroupTuple {
  return [
    group.bucketMs,
    group.surface,
    group.kind,
    group.method,
    group.code,
    group.calls,
    group.rowsRead,
    group.rowsWritten,
    latencyRecord(group.latency),
  ];
}

export function tupleToGroup([bucketMs, surface, kind, method, code, calls, rowsRead, rowsWritten, latency]: GroupTuple): RollupGroup {
  return { bucketMs, surface, kind, method, code, calls, rowsRead, rowsWritten, latency: latencyMap(latency) };
}

/** A `rollups` row as SQL returns it. */
export type StoredRollupRow = {
  bucket_ms: number;
  surface: MetricsSurface;
  kind: string;
  method: string;
  code: string;
  calls: number;
  rows_read: number;
  rows_written: number;
  latency: string;
};

/** The columns of `StoredRollupRow`, for SELECTs. */
export const STORED_ROLLUP_COLUMNS = "bucket_ms, surface, kind, method, code, calls, rows_read, rows_written, latency";

/** A stored row as a group; `bucketMs` overrides its bucket (a coarser one it is summed into). */
export function fromStoredRow(row: StoredRollupRow, bucketMs: number = row.bucket_ms): RollupGroup {
  return {
    bucketMs,
    surface: row.surface,
    kind: row.kind,
    method: row.method,
    code: row.code,
    calls: row.calls,
    rowsRead: row.rows_read,
    rowsWritten: row.rows_written,
    latency: parseLatency(row.latency),
  };
}
