import * as v from "valibot";
import { integer, text } from "../../platform/schemas";
import { rangeSchema } from "../../path-stats/schemas";

/** Bounds of what a metrics push may carry. */
export const METRICS_BOUNDS = {
  /** Batches (an object's minutes, an isolate's flushes) per push. */
  maxBatches: 120,
  /** Rows per batch. */
  maxRows: 5_000,
  /** A latency bucket index (DDSketch, γ = 1.01/0.99): 1 µs..1 h is about -345..760. */
  maxBucket: 10_000,
} as const;

const count = integer(0, Number.MAX_SAFE_INTEGER);

export const metricRowSchema = v.strictObject({
  minuteMs: integer(0, Number.MAX_SAFE_INTEGER),
  kind: text(1, 64),
  method: text(1, 128),
  code: v.pipe(v.string(), v.regex(/^(ok|[A-Z_]{1,32})$/, 'must be "ok" or an error code')),
  bucket: integer(-1_000_000, METRICS_BOUNDS.maxBucket),
  calls: integer(1, Number.MAX_SAFE_INTEGER),
  rowsRead: count,
  rowsWritten: count,
});

/**
 * One push to a metrics rollup object. Each batch is stored once per (source, pushId): a
 * doubled or retried push of the same batch changes nothing. An object's batch is one closed
 * minute (pushId = the minute); an isolate's is one flush (pushId = its sequence number).
 */
export const metricsPushSchema = v.strictObject({
  source: text(1, 128),
  surface: v.picklist(["object", "entrypoint"]),
  /** The pushing object's SQLite size now (`databaseSize`), for the storage estimate. */
  storedBytes: v.optional(v.strictObject({ kind: text(1, 64), bytes: count })),
  batches: v.pipe(
    v.array(
      v.strictObject({
        pushId: integer(0, Number.MAX_SAFE_INTEGER),
        rows: v.pipe(v.array(metricRowSchema), v.maxLength(METRICS_BOUNDS.maxRows, `must have at most ${METRICS_BOUNDS.maxRows} rows`)),
      }),
    ),
    v.maxLength(METRICS_BOUNDS.maxBatches, `must have at most ${METRICS_BOUNDS.maxBatches} batches`),
  ),
});

export type MetricsPush = v.InferOutput<typeof metricsPushSchema>;

/** `Admin.metrics` / `Admin.costReport` input: a range like path statistics' ranges. */
export const metricsQuerySchema = v.strictObject({ range: rangeSchema });

/** What a rollup shard answers for a range (the Admin merges the shards). */
export const shardQuerySchema = v.strictObject({
  range: v.strictObject({ from: integer(0, Number.MAX_SAFE_INTEGER), to: integer(0, Number.MAX_SAFE_INTEGER) }),
});
