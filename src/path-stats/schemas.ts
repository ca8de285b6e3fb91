import * as v from "valibot";
import { MAX_RAW_PATH, METHODS, normalizeMethod } from "./normalize";
import { parseIp } from "./ip";
import { MAX_RANGE_MS, NAMED_RANGES } from "../platform/buckets";
import { integer, text } from "../platform/schemas";

/** Bounds of path statistics input (docs/path-stats.md). */
export const PATH_BOUNDS = {
  /** Most hits one `recordMany` call takes. */
  maxBatch: 1_000,
  /** Largest latency accepted: one hour, in ms. */
  maxLatencyMs: 3_600_000,
  /** A hit's `at` may be this far in the past… */
  maxAgeMs: 3_600_000,
  /** …or this far in the future (clock skew between Workers). */
  maxSkewMs: 60_000,
  /** User agents are truncated to this many characters, never rejected for length. */
  maxUserAgent: 256,
  maxLimit: 1_000,
} as const;

const ip = v.pipe(
  v.string("must be a string"),
  v.maxLength(64, "must be at most 64 characters"),
  v.check((value) => parseIp(value) !== null, "must be an IPv4 or IPv6 address"),
);

const method = v.pipe(
  v.string("must be a string"),
  v.maxLength(16, "must be at most 16 characters"),
  v.check((value) => normalizeMethod(value) !== null, `must be one of ${METHODS.join(", ")}`),
);

const latencyMs = v.pipe(
  v.number("must be a number"),
  v.finite("must be finite"),
  v.minValue(0, "must be at least 0"),
  v.maxValue(PATH_BOUNDS.maxLatencyMs, `must be at most ${PATH_BOUNDS.maxLatencyMs}`),
);

const userAgent = v.pipe(
  v.string("must be a string"),
  v.maxLength(8_192, "must be at most 8192 characters"),
  v.regex(/^[^\p{Cc}]*$/u, "must not contain control characters"),
  v.transform((value) => value.slice(0, PATH_BOUNDS.maxUserAgent)),
);

/** One hit as callers send it. `at` is checked against the clock by whoever receives it. */
export const hitSchema = v.strictObject({
  ip,
  method,
  path: v.pipe(text(1, MAX_RAW_PATH), v.startsWith("/", 'must start with "/"')),
  status: v.optional(integer(100, 599)),
  latencyMs: v.optional(latencyMs),
  country: v.optional(v.pipe(v.string(), v.regex(/^[A-Za-z0-9]{2}$/, "must be a two-letter country code"))),
  userAgent: v.optional(userAgent),
  at: v.optional(integer(0, Number.MAX_SAFE_INTEGER)),
});

export const recordManySchema = v.strictObject({
  hits: v.pipe(v.array(hitSchema, "must be an array"), v.maxLength(PATH_BOUNDS.maxBatch, `must have at most ${PATH_BOUNDS.maxBatch} hits`)),
});

export const rangeSchema = v.union(
  [
    v.picklist(Object.keys(NAMED_RANGES) as (keyof typeof NAMED_RANGES)[]),
    v.pipe(
      v.strictObject({ from: integer(0, Number.MAX_SAFE_INTEGER), to: integer(0, Number.MAX_SAFE_INTEGER) }),
      v.check((r) => r.from < r.to, "from must be before to"),
      v.check((r) => r.to - r.from <= MAX_RANGE_MS, "must span at most 400 days"),
    ),
  ],
  'must be "1h", "24h", "7d", "30d" or { from, to }',
);

const limit = v.optional(integer(1, PATH_BOUNDS.maxLimit));

export const globalStatsSchema = v.strictObject({ range: rangeSchema });
export const timeSeriesSchema = v.strictObject({ range: rangeSchema });
export const topPathsSchema = v.strictObject({
  range: rangeSchema,
  limit,
  sortBy: v.optional(v.picklist(["requests", "clients", "errors", "p99"])),
});
export const topClientsSchema = v.strictObject({ range: rangeSchema, limit });
export const pathDetailSchema = v.strictObject({ range: rangeSchema, method: v.optional(method), path: text(1, MAX_RAW_PATH) });
export const clientStatsSchema = v.strictObject({ ip, range: v.optional(rangeSchema) });
export const exportSchema = v.strictObject({ range: rangeSchema, format: v.picklist(["json", "csv"]) });
export const exportPageSchema = v.strictObject({
  range: rangeSchema,
  cursor: v.optional(v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{1,4096}$/, "must be a cursor this export returned"))),
  limit: v.optional(integer(1, 5_000)),
});

/** What the service hands a collector: hits already normalized and privacy-transformed. */
export const normalizedHitSchema = v.strictObject({
  client: text(1, 128),
  method: v.picklist(METHODS),
  path: text(1, 1_024),
  status: v.union([v.literal(0), integer(100, 599)]),
  latencyMs: v.optional(latencyMs),
  country: v.optional(v.pipe(v.string(), v.regex(/^[A-Z0-9]{2}$/))),
  userAgent: v.optional(text(0, PATH_BOUNDS.maxUserAgent)),
  at: integer(0, Number.MAX_SAFE_INTEGER),
});

export const ingestHitsSchema = v.strictObject({
  hits: v.pipe(v.array(normalizedHitSchema), v.maxLength(PATH_BOUNDS.maxBatch)),
  /** Each hit's address as the caller gave it, for anomaly blocking only: never stored (docs/protection.md). */
  ips: v.optional(v.pipe(v.array(ip), v.maxLength(PATH_BOUNDS.maxBatch))),
});

export const clientQuerySchema = v.strictObject({ client: text(1, 128), range: v.optional(rangeSchema) });

/** A collector's `prune` takes no options: its retention and clock are its own. */
export const pruneSchema = v.strictObject({});

/** A collector's push: one closed minute of one shard, from one flush. */
export const pushSchema = v.strictObject({
  shard: integer(0, 1_023),
  bucketMs: integer(0, Number.MAX_SAFE_INTEGER),
  flushId: integer(1, Number.MAX_SAFE_INTEGER),
  partial: v.instance(Uint8Array),
});

/** Most partials one `pushMany` carries (a collector catching up after an outage sends several). */
export const MAX_PUSH_BATCH = 100;

export const pushManySchema = v.strictObject({
  shard: integer(0, 1_023),
  items: v.pipe(
    v.array(
      v.strictObject({
        bucketMs: integer(0, Number.MAX_SAFE_INTEGER),
        flushId: integer(1, Number.MAX_SAFE_INTEGER),
        partial: v.instance(Uint8Array),
      }),
    ),
    v.minLength(1),
    v.maxLength(MAX_PUSH_BATCH),
  ),
});
