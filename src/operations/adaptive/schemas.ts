import * as v from "valibot";
import type { AdaptiveHistoryInput, AdaptivePolicy } from "../../../rpc/adaptive";
import { integer } from "../../platform/schemas";
import { METHODS } from "../../path-stats/normalize";
import { rangeSchema } from "../../path-stats/schemas";
import { policyName } from "../../rate-limits/schemas";

/** Bounds of adaptive policies (docs/adaptive-limits.md). */
export const ADAPTIVE_BOUNDS = {
  maxPolicies: 20,
  maxStages: 8,
  maxRulesPerStage: 16,
  minWindowMs: 60_000,
  maxWindowMs: 3_600_000,
  minDwellMs: 1_000,
  maxDwellMs: 24 * 3_600_000,
  minEvaluateEveryMs: 1_000,
  maxEvaluateEveryMs: 300_000,
  defaultEvaluateEveryMs: 15_000,
  defaultWindowMs: 60_000,
  defaultMinRequests: 20,
  maxThreshold: 1_000_000_000,
  maxHistory: 1_000,
} as const;

const windowMs = v.optional(
  v.pipe(
    integer(ADAPTIVE_BOUNDS.minWindowMs, ADAPTIVE_BOUNDS.maxWindowMs),
    v.check((ms) => ms % 60_000 === 0, "must be whole minutes (a multiple of 60000)"),
  ),
);
const minRequests = v.optional(integer(0, 1_000_000_000));
const threshold = v.pipe(
  v.number("must be a number"),
  v.finite("must be finite"),
  v.minValue(0, "must be at least 0"),
  v.maxValue(ADAPTIVE_BOUNDS.maxThreshold, `must be at most ${ADAPTIVE_BOUNDS.maxThreshold}`),
);
/** A path template as path statistics store it (it is matched exactly, never normalized here). */
const templatePath = v.pipe(v.string(), v.regex(/^\/[^\p{Cc}]{0,1023}$/u, 'must start with "/" and be at most 1024 printable characters'));

export const signalSchema = v.variant("kind", [
  v.strictObject({ kind: v.literal("error_rate"), windowMs, minRequests }),
  v.strictObject({ kind: v.literal("request_rate"), windowMs }),
  v.strictObject({
    kind: v.literal("p99_latency"),
    path: v.optional(templatePath),
    method: v.optional(v.picklist(METHODS, `must be one of ${METHODS.join(", ")} (upper case)`)),
    windowMs,
    minRequests,
  }),
]);

export const stageSchema = v.strictObject({
  policy: policyName,
  rules: v.optional(
    v.pipe(
      v.array(policyName),
      v.minLength(1, "must name at least one rule (omit it for all)"),
      v.maxLength(ADAPTIVE_BOUNDS.maxRulesPerStage, `must name at most ${ADAPTIVE_BOUNDS.maxRulesPerStage} rules`),
      v.check((rules) => new Set(rules).size === rules.length, "rule names must be unique"),
    ),
  ),
  factor: v.pipe(
    v.number("must be a number"),
    v.finite("must be finite"),
    v.gtValue(0, "must be more than 0"),
    v.ltValue(1, "must be less than 1 (a stage only tightens)"),
  ),
});

export const adaptivePolicySchema = v.pipe(
  v.strictObject({
    name: policyName,
    signal: signalSchema,
    tightenAbove: threshold,
    relaxBelow: threshold,
    dwellMs: integer(ADAPTIVE_BOUNDS.minDwellMs, ADAPTIVE_BOUNDS.maxDwellMs),
    stages: v.pipe(
      v.array(stageSchema),
      v.minLength(1, "must have at least one stage"),
      v.maxLength(ADAPTIVE_BOUNDS.maxStages, `must have at most ${ADAPTIVE_BOUNDS.maxStages} stages`),
    ),
    evaluateEveryMs: v.optional(integer(ADAPTIVE_BOUNDS.minEvaluateEveryMs, ADAPTIVE_BOUNDS.maxEvaluateEveryMs)),
  }),
  v.forward(
    v.check((policy) => policy.relaxBelow < policy.tightenAbove, "must be below tightenAbove (hysteresis)"),
    ["relaxBelow"],
  ),
  v.forward(
    v.check((policy) => policy.signal.kind !== "error_rate" || policy.tightenAbove <= 1, "an error rate is a fraction: at most 1"),
    ["tightenAbove"],
  ),
);

export const policyNameInputSchema = v.strictObject({ name: policyName });

export const historyInputSchema = v.optional(
  v.strictObject({
    range: v.optional(rangeSchema),
    policy: v.optional(policyName),
    limit: v.optional(integer(1, ADAPTIVE_BOUNDS.maxHistory)),
  }),
  {},
);

type Assert<T extends true> = T;
export type PolicySchemaMatchesContract = Assert<v.InferOutput<typeof adaptivePolicySchema> extends AdaptivePolicy ? true : false>;
export type HistorySchemaMatchesContract = Assert<v.InferOutput<typeof historyInputSchema> extends AdaptiveHistoryInput ? true : false>;
