import * as v from "valibot";
import { formatCidr, parseCidr } from "./cidr";
import { integer, text } from "../../platform/schemas";
import { rangeSchema } from "../../path-stats/schemas";

/** Bounds of protection input (docs/protection.md). */
export const PROTECTION_BOUNDS = {
  /** Most entries one list holds: both lists are scanned on hot paths, so they stay short. */
  maxEntries: 1_000,
  maxLimit: 1_000,
  /** Longest block and deny: the limiter's own bound on a block. */
  maxPeriodMs: 366 * 24 * 60 * 60_000,
} as const;

/** A CIDR range (or a bare address), canonicalized: `2001:DB8::/32` becomes `2001:db8::/32`, `192.0.2.1` `192.0.2.1/32`. */
export const cidrSchema = v.pipe(
  v.string("must be a string"),
  v.maxLength(64, "must be at most 64 characters"),
  v.check(
    (value) => parseCidr(value) !== null,
    "must be a CIDR range (e.g. 203.0.113.0/24, 2001:db8::/32) with no bits set after the prefix",
  ),
  v.transform((value) => formatCidr(parseCidr(value)!)),
);

const real = (min: number, max: number) =>
  v.pipe(
    v.number("must be a number"),
    v.finite("must be finite"),
    v.minValue(min, `must be at least ${min}`),
    v.maxValue(max, `must be at most ${max}`),
  );

/** Any subset of the policy's fields, each bounded; unknown fields are refused. */
export const policyPatchSchema = v.strictObject({
  enabled: v.optional(v.boolean("must be a boolean")),
  block: v.optional(v.boolean("must be a boolean")),
  blockMs: v.optional(integer(1_000, PROTECTION_BOUNDS.maxPeriodMs)),
  alpha: v.optional(
    v.pipe(
      real(0, 1),
      v.check((value) => value > 0, "must be more than 0"),
    ),
  ),
  rateK: v.optional(real(0.5, 100)),
  rateMinCount: v.optional(integer(1, 1_000_000)),
  rateMinSd: v.optional(real(0, 1_000_000)),
  rateMinRelativeSd: v.optional(real(0, 10)),
  scanK: v.optional(real(0.5, 100)),
  scanMinCount: v.optional(integer(1, 1_000_000)),
  scanMinShare: v.optional(real(0, 1)),
  scanMinSd: v.optional(real(0, 1)),
  priorRateMean: v.optional(real(0, 1_000_000)),
  priorRateSd: v.optional(real(0, 1_000_000)),
  priorScanShare: v.optional(real(0, 1)),
  priorScanSd: v.optional(real(0, 1)),
});

export const allowInputSchema = v.strictObject({ cidr: cidrSchema, note: v.optional(text(1, 256)) });
export const cidrInputSchema = v.strictObject({ cidr: cidrSchema });
export const denyInputSchema = v.strictObject({
  cidr: cidrSchema,
  untilMs: v.optional(integer(0, Number.MAX_SAFE_INTEGER)),
  reason: text(1, 256),
});
export const setPolicyInputSchema = v.strictObject({ policy: policyPatchSchema });
export const flaggedInputSchema = v.optional(
  v.strictObject({
    range: v.optional(rangeSchema),
    limit: v.optional(integer(1, PROTECTION_BOUNDS.maxLimit)),
    client: v.optional(text(1, 128)),
  }),
  {},
);

const count = integer(0, Number.MAX_SAFE_INTEGER);
const stat = real(0, Number.MAX_VALUE);

/** What a collector reports for each flag. */
export const reportFlagSchema = v.strictObject({
  client: text(1, 128),
  rule: v.picklist(["burst", "scan"]),
  at: integer(0, Number.MAX_SAFE_INTEGER),
  blocked: v.boolean(),
  allowListed: v.boolean(),
  blockedUntil: v.optional(integer(0, Number.MAX_SAFE_INTEGER)),
  evidence: v.strictObject({
    minuteMs: count,
    requests: count,
    clientErrors: count,
    notFound: count,
    serverErrors: count,
    rateMean: stat,
    rateSd: stat,
    scanShareMean: stat,
    scanShareSd: stat,
    threshold: stat,
    minutesSeen: count,
  }),
});
