import * as v from "valibot";
import type { Rule } from "../../rpc/rate-limits";
import { SLIDING_LOG_MAX_LIMIT } from "./algorithms/sliding-log";
import { idempotencyKey, integer, objectName, text } from "../platform/schemas";

/** Bounds that keep every limiter computation exact in 53-bit integers (docs/rate-limits.md). */
export const RULE_BOUNDS = {
  maxLimit: 1_000_000_000,
  maxPeriodMs: 366 * 24 * 3_600_000,
  maxCost: 1_000_000_000,
  maxRulesPerCheck: 16,
  maxSlidingLogLimit: SLIDING_LOG_MAX_LIMIT,
  maxLeases: 10_000,
  maxLeaseTtlMs: 7 * 24 * 3_600_000,
  maxSubjectsPerCheck: 8,
} as const;

/** A rule name is written into IETF `RateLimit` headers, so it is a structured-field key. */
const ruleName = v.pipe(v.string(), v.regex(/^[a-z][a-z0-9_.-]{0,63}$/, "must match [a-z][a-z0-9_.-]* and be at most 64 characters"));

export const ruleSchema = v.pipe(
  v.strictObject({
    name: ruleName,
    algorithm: v.picklist(["fixed_window", "sliding_window", "sliding_log", "token_bucket", "gcra"]),
    limit: integer(1, RULE_BOUNDS.maxLimit),
    periodMs: integer(1, RULE_BOUNDS.maxPeriodMs),
    burst: v.optional(integer(1, RULE_BOUNDS.maxLimit)),
    blockMs: v.optional(integer(1, RULE_BOUNDS.maxPeriodMs)),
    shadow: v.optional(v.boolean()),
    countDenied: v.optional(v.boolean()),
  }),
  v.check((rule) => Number.isSafeInteger(rule.limit * rule.periodMs), "limit * periodMs must be a safe integer"),
  v.forward(
    v.check(
      (rule) => rule.algorithm !== "sliding_log" || rule.limit <= SLIDING_LOG_MAX_LIMIT,
      `sliding_log keeps one entry per call, so its limit is at most ${SLIDING_LOG_MAX_LIMIT}; use sliding_window or gcra above that`,
    ),
    ["limit"],
  ),
  v.forward(
    v.check(
      (rule) => rule.burst === undefined || rule.algorithm === "token_bucket" || rule.algorithm === "gcra",
      "burst applies to token_bucket and gcra only",
    ),
    ["burst"],
  ),
  v.forward(
    v.check(
      (rule) => rule.burst === undefined || Number.isSafeInteger(rule.burst * rule.periodMs),
      "burst * periodMs must be a safe integer",
    ),
    ["burst"],
  ),
);

export const rulesSchema = v.pipe(
  v.array(ruleSchema),
  v.minLength(1, "must name at least one rule"),
  v.maxLength(RULE_BOUNDS.maxRulesPerCheck, `must have at most ${RULE_BOUNDS.maxRulesPerCheck} rules`),
  v.check((rules) => new Set(rules.map((rule) => rule.name)).size === rules.length, "rule names must be unique"),
);

export const policyName = ruleName;

const ruleSource = {
  subject: objectName,
  rules: v.optional(rulesSchema),
  policy: v.optional(policyName),
};

export const checkInputSchema = v.strictObject({
  ...ruleSource,
  cost: v.optional(integer(0, RULE_BOUNDS.maxCost)),
  idempotencyKey: v.optional(idempotencyKey),
});

export const peekInputSchema = v.strictObject(ruleSource);

export const resetInputSchema = v.strictObject({
  subject: objectName,
  rule: v.optional(ruleName),
});

export const refundInputSchema = v.strictObject({
  ...ruleSource,
  cost: integer(1, RULE_BOUNDS.maxCost),
  idempotencyKey,
});

const leaseId = text(1, 64);

export const acquireInputSchema = v.strictObject({
  subject: objectName,
  limit: integer(1, RULE_BOUNDS.maxLeases),
  ttlMs: integer(1, RULE_BOUNDS.maxLeaseTtlMs),
  idempotencyKey: v.optional(idempotencyKey),
});

export const releaseInputSchema = v.strictObject({ subject: objectName, leaseId });

export const heartbeatInputSchema = v.strictObject({
  subject: objectName,
  leaseId,
  ttlMs: integer(1, RULE_BOUNDS.maxLeaseTtlMs),
});

export const setOverrideInputSchema = v.strictObject({ subject: objectName, rules: rulesSchema });

export const subjectInputSchema = v.strictObject({ subject: objectName });
export const checkCountsInputSchema = v.strictObject({ subject: objectName, sinceMs: integer(0, Number.MAX_SAFE_INTEGER) });

export const blockInputSchema = v.strictObject({
  subject: objectName,
  untilMs: integer(0, Number.MAX_SAFE_INTEGER),
  reason: text(1, 256),
});

/** Per-subject keys are derived from a checkMany key (`<key>#<index>`), so it is a little shorter. */
export const checkManyInputSchema = v.strictObject({
  checks: v.pipe(
    v.array(v.strictObject({ ...ruleSource, cost: v.optional(integer(0, RULE_BOUNDS.maxCost)) })),
    v.minLength(1, "must hold at least one check"),
    v.maxLength(RULE_BOUNDS.maxSubjectsPerCheck, `must hold at most ${RULE_BOUNDS.maxSubjectsPerCheck} checks`),
    v.check(
      (checks) => new Set(checks.map((check) => check.subject)).size === checks.length,
      "subjects must be distinct (put several rules for one subject in one check)",
    ),
  ),
  idempotencyKey: v.optional(text(1, 112)),
});

export const policiesSchema = v.record(policyName, rulesSchema);

// The schemas and the public contract must describe the same shapes.
type Assert<T extends true> = T;
export type RuleSchemaMatchesContract = Assert<v.InferOutput<typeof ruleSchema> extends Rule ? true : false>;
export type ContractMatchesRuleSchema = Assert<Rule extends v.InferOutput<typeof ruleSchema> ? true : false>;
