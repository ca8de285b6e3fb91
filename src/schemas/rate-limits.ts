import * as v from "valibot";
import type { Rule } from "../../rpc/rate-limits";
import { idempotencyKey, integer, objectName } from "./common";

/** Bounds that keep every limiter computation exact in 53-bit integers (docs/rate-limits.md). */
export const RULE_BOUNDS = {
  maxLimit: 1_000_000_000,
  maxPeriodMs: 366 * 24 * 3_600_000,
  maxCost: 1_000_000_000,
  maxRulesPerCheck: 16,
} as const;

/** A rule name is written into IETF `RateLimit` headers, so it is a structured-field key. */
const ruleName = v.pipe(
  v.string(),
  v.regex(/^[a-z][a-z0-9_.-]{0,63}$/, "must match [a-z][a-z0-9_.-]* and be at most 64 characters"),
);

export const ruleSchema = v.pipe(
  v.strictObject({
    name: ruleName,
    algorithm: v.picklist(["fixed_window", "sliding_window", "sliding_log", "token_bucket", "gcra"]),
    limit: integer(1, RULE_BOUNDS.maxLimit),
    periodMs: integer(1, RULE_BOUNDS.maxPeriodMs),
    burst: v.optional(integer(1, RULE_BOUNDS.maxLimit)),
    blockMs: v.optional(integer(1, RULE_BOUNDS.maxPeriodMs)),
    shadow: v.optional(v.boolean()),
  }),
  v.check(
    (rule) => Number.isSafeInteger(rule.limit * rule.periodMs),
    "limit * periodMs must be a safe integer",
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

export const policiesSchema = v.record(policyName, rulesSchema);

// The schemas and the public contract must describe the same shapes.
type Assert<T extends true> = T;
export type RuleSchemaMatchesContract = Assert<v.InferOutput<typeof ruleSchema> extends Rule ? true : false>;
export type ContractMatchesRuleSchema = Assert<Rule extends v.InferOutput<typeof ruleSchema> ? true : false>;
