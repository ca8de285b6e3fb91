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
  /** Objects whose stored bytes one push reports. */
  maxSizes: 5_000,
} as const;

const count = integer(0, Number.MAX_SAFE_INTEGER);

const surfaceSchema = v.picklist(["object", "entrypoint"]);

export const metricRowSchema = v.pipe(
  v.strictObject({
    minuteMs: integer(0, Number.MAX_SAFE_INTEGER),
    /** The push's own surface when left out (an isolate's one push carries both). */
    surface: v.optional(surfaceSchema),
    kind: text(1, 64),
    method: text(1, 128),
    code: v.pipe(v.string(), v.regex(/^(ok|[A-Z_]{1,32})$/, 'must be "ok" or an error code')),
    bucket: integer(-1_000_000, METRICS_BOUNDS.maxBucket),
    /** 0 for rows written by work a call left running, after the call's count was pushed. */
    calls: count,
    rowsRead: count,
    rowsWritten: count,
  }),
  v.check((row) => row.calls > 0 || row.rowsRead > 0 || row.rowsWritten > 0, "must count a call or a row"),
);

/**
 * One push to a metrics rollup object, from an isolate's buffer (its entrypoints' counts, or
 * its objects'). A source numbers its batches 1, 2, … and every push carries all its batches
 * not yet acknowledged, in order: the shard stores a batch only above the highest push id it
 * holds for the source, so a doubled or retried push changes nothing.
 */
export const metricsPushSchema = v.strictObject({
  source: text(1, 128),
  surface: surfaceSchema,
  /** Objects' SQLite sizes (`databaseSize`) as they last reported them, for the storage estimate. */
  sizes: v.optional(
    v.pipe(
      v.array(v.strictObject({ object: text(1, 128), kind: text(1, 64), bytes: count })),
      v.maxLength(METRICS_BOUNDS.maxSizes, `must have at most ${METRICS_BOUNDS.maxSizes} sizes`),
    ),
  ),
  batches: v.pipe(
    v.array(
      v.strictObject({
        // From 1: the shard takes a batch only above the highest id it holds for the source (0 when none).
        pushId: integer(1, Number.MAX_SAFE_INTEGER),
        rows: v.pipe(v.array(metricRowSchema), v.maxLength(METRICS_BOUNDS.maxRows, `must have at most ${METRICS_BOUNDS.maxRows} rows`)),
      }),
    ),
    v.maxLength(METRICS_BOUNDS.maxBatches, `must have at most ${METRICS_BOUNDS.maxBatches} batches`),
    // The shard keeps a source's highest push id: a batch out of order would be taken for a duplicate.
    v.check((batches) => batches.every((batch, i) => i === 0 || batch.pushId > batches[i - 1]!.pushId), "push ids must ascend"),
  ),
});

export type MetricsPush = v.InferOutput<typeof metricsPushSchema>;

/** `Admin.metrics` / `Admin.costReport` input: a range like path statistics' ranges. */
export const metricsQuerySchema = v.strictObject({ range: rangeSchema });

/** What a rollup shard answers for a range (the Admin merges the shards). */
export const shardQuerySchema = v.strictObject({
  range: v.strictObject({ from: integer(0, Number.MAX_SAFE_INTEGER), to: integer(0, Number.MAX_SAFE_INTEGER) }),
});
