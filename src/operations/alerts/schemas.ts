import * as v from "valibot";
import type { AlertRule } from "../../../rpc/alerts";
import { KEY_ID_PATTERN } from "../../credits/keys";
import { MAX_RAW_PATH, METHODS, normalizeMethod } from "../../path-stats/normalize";
import { integer, objectName, text } from "../../platform/schemas";
import { accountId } from "../../credits/schemas";

/** Bounds of alert rules and queries. */
export const ALERT_BOUNDS = {
  minIntervalMs: 10_000,
  maxIntervalMs: 86_400_000,
  defaultIntervalMs: 60_000,
  minWindowMs: 60_000,
  maxWindowMs: 86_400_000,
  /** Most rules one deployment keeps: every rule is read by the one alerts object's alarm. */
  maxRules: 500,
  maxListLimit: 1_000,
  defaultListLimit: 50,
  maxMuteMs: 366 * 86_400_000,
  /** Balances and levels stay inside the ledger's range. */
  maxLevel: 2 ** 52,
  maxLatencyMs: 3_600_000,
  maxUsd: 1_000_000_000,
} as const;

export const ruleId = v.pipe(
  v.string("must be a string"),
  v.regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/, "must be 1-64 of [A-Za-z0-9._:-], starting with a letter or digit"),
);

/** `<ruleId>#<crossing>`. */
export const alertId = v.pipe(
  v.string("must be a string"),
  v.regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}#[1-9][0-9]{0,15}$/, "must be an alert id (<ruleId>#<n>)"),
);

/** A finite number in (0, 1]. */
const share = v.pipe(
  v.number("must be a number"),
  v.finite("must be finite"),
  v.gtValue(0, "must be above 0"),
  v.maxValue(1, "must be at most 1"),
);
/** A finite number in [0, 1]: a recovery point may be 0 (recover only when nothing is left). */
const recoverShare = v.pipe(
  v.number("must be a number"),
  v.finite("must be finite"),
  v.minValue(0, "must be at least 0"),
  v.maxValue(1, "must be at most 1"),
);
const level = integer(-ALERT_BOUNDS.maxLevel, ALERT_BOUNDS.maxLevel);
const windowMs = integer(ALERT_BOUNDS.minWindowMs, ALERT_BOUNDS.maxWindowMs);
const minRequests = integer(1, 1_000_000_000);
const usd = v.pipe(
  v.number("must be a number"),
  v.finite("must be finite"),
  v.minValue(0, "must be at least 0"),
  v.maxValue(ALERT_BOUNDS.maxUsd, `must be at most ${ALERT_BOUNDS.maxUsd}`),
);
const method = v.pipe(
  v.string("must be a string"),
  v.maxLength(16, "must be at most 16 characters"),
  v.check((value) => normalizeMethod(value) !== null, `must be one of ${METHODS.join(", ")}`),
);
const path = v.pipe(text(1, MAX_RAW_PATH), v.startsWith("/", 'must start with "/"'));

const common = {
  ruleId,
  description: v.optional(text(0, 200)),
  enabled: v.optional(v.boolean("must be a boolean")),
  intervalMs: v.optional(integer(ALERT_BOUNDS.minIntervalMs, ALERT_BOUNDS.maxIntervalMs)),
};

const ruleVariant = v.variant(
  "kind",
  [
    v.strictObject({ kind: v.literal("balance_below"), ...common, accountId, level, recoverAt: v.optional(level) }),
    v.strictObject({
      kind: v.literal("key_spend_share"),
      ...common,
      accountId,
      keyId: v.pipe(v.string(), v.regex(KEY_ID_PATTERN, "must be a key id (k + 16 hex digits)")),
      share,
      recoverAt: v.optional(recoverShare),
    }),
    v.strictObject({
      kind: v.literal("denial_rate"),
      ...common,
      subject: objectName,
      windowMs,
      threshold: share,
      minRequests,
      recoverAt: v.optional(recoverShare),
    }),
    v.strictObject({
      kind: v.literal("path_error_rate"),
      ...common,
      path,
      method: v.optional(method),
      windowMs,
      threshold: share,
      minRequests: v.optional(minRequests),
      recoverAt: v.optional(recoverShare),
    }),
    v.strictObject({
      kind: v.literal("path_p99"),
      ...common,
      path,
      method: v.optional(method),
      windowMs,
      threshold: integer(1, ALERT_BOUNDS.maxLatencyMs),
      minRequests: v.optional(minRequests),
      recoverAt: v.optional(integer(0, ALERT_BOUNDS.maxLatencyMs)),
    }),
    v.strictObject({ kind: v.literal("cost_projection"), ...common, threshold: v.optional(usd), recoverAt: v.optional(usd) }),
  ],
  'kind must be one of "balance_below", "key_spend_share", "denial_rate", "path_error_rate", "path_p99", "cost_projection"',
);

/** A rule's trigger: the value it fires at, and whether it fires below it (balance) or at/above it (the rest). */
export function triggerOf(rule: AlertRule): { threshold: number | undefined; below: boolean } {
  switch (rule.kind) {
    case "balance_below":
      return { threshold: rule.level, below: true };
    case "key_spend_share":
      return { threshold: rule.share, below: false };
    default:
      return { threshold: rule.threshold, below: false };
  }
}

/** A recovery point must lie on the safe side of the trigger, or the rule could never be OK. */
export const alertRuleSchema = v.pipe(
  ruleVariant,
  v.check((rule) => {
    if (rule.recoverAt === undefined) return true;
    const { threshold, below } = triggerOf(rule as AlertRule);
    if (threshold === undefined) return true;
    return below ? rule.recoverAt >= threshold : rule.recoverAt <= threshold;
  }, "recoverAt must be on the safe side of the trigger (at or above level for balance_below, at or below the threshold otherwise)"),
);

export const ruleRefSchema = v.strictObject({ ruleId });
export const alertRefSchema = v.strictObject({ alertId });
export const muteSchema = v.strictObject({ ruleId, untilMs: integer(0, Number.MAX_SAFE_INTEGER) });
export const listAlertsSchema = v.strictObject({
  status: v.optional(v.picklist(["firing", "acknowledged", "resolved"], 'must be "firing", "acknowledged" or "resolved"')),
  ruleId: v.optional(ruleId),
  limit: v.optional(integer(1, ALERT_BOUNDS.maxListLimit)),
});
/** `list()` may be called without an argument. */
export const listAlertsInputSchema = v.optional(listAlertsSchema, {});
/** `rules()` takes nothing (an empty object is accepted too). */
export const noInputSchema = v.optional(v.strictObject({}), {});
