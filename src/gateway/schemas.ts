import * as v from "valibot";
import { REQUIRED_SCOPE_PATTERN } from "../credits/keys";
import { LEDGER_BOUNDS, accountId, commitSchema, usageSchema } from "../credits/schemas";
import { hitSchema, PATH_BOUNDS } from "../path-stats/schemas";
import { idempotencyKey, integer } from "../platform/schemas";

/** Bounds of the gateway hot path (docs/gateway.md). */
export const GATEWAY_BOUNDS = {
  /** Longest `apiKey` accepted for parsing; a longer one is simply not a key (401). */
  maxApiKeyLength: 1_024,
} as const;

const amount = integer(1, LEDGER_BOUNDS.maxAmount);

/** `authorize`: the request as the gateway saw it. `cost`, `estimate` and `usage` exclude each other. */
export const authorizeSchema = v.pipe(
  v.strictObject({
    apiKey: v.optional(
      v.pipe(v.string(), v.maxLength(GATEWAY_BOUNDS.maxApiKeyLength, `must be at most ${GATEWAY_BOUNDS.maxApiKeyLength} characters`)),
    ),
    ip: hitSchema.entries.ip,
    method: hitSchema.entries.method,
    path: hitSchema.entries.path,
    scope: v.optional(v.pipe(v.string(), v.regex(REQUIRED_SCOPE_PATTERN, "must be a concrete resource.action"))),
    cost: v.optional(amount),
    estimate: v.optional(amount),
    usage: v.optional(usageSchema),
    holdTtlMs: v.optional(integer(1, LEDGER_BOUNDS.maxTtlMs)),
  }),
  v.check(
    (input) => [input.cost, input.estimate, input.usage].filter((given) => given !== undefined).length <= 1,
    "give at most one of cost (a fixed debit), estimate (a hold) and usage (a hold priced by the price book)",
  ),
  v.check(
    (input) => input.holdTtlMs === undefined || input.estimate !== undefined || input.usage !== undefined,
    "holdTtlMs goes with estimate or usage",
  ),
);

export const settleSchema = v.pipe(
  v.strictObject({
    accountId,
    holdId: commitSchema.pipe[0].entries.holdId,
    actualCost: v.optional(integer(0, LEDGER_BOUNDS.maxAmount)),
    usage: v.optional(usageSchema),
    capAtHold: v.optional(v.boolean()),
    status: integer(100, 599),
    latencyMs: v.pipe(
      v.number("must be a number"),
      v.finite("must be finite"),
      v.minValue(0, "must be at least 0"),
      v.maxValue(PATH_BOUNDS.maxLatencyMs, `must be at most ${PATH_BOUNDS.maxLatencyMs}`),
    ),
    idempotencyKey,
  }),
  v.check((input) => (input.actualCost === undefined) !== (input.usage === undefined), "give actualCost or usage, exactly one"),
);
