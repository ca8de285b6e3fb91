import type { AlertRule, AlertRuleState } from "../../../rpc/alerts";
import { triggerOf } from "./schemas";

/** What one evaluation does to a rule. Only `fire` sends anything. */
export type Transition = "fire" | "resolve" | "none";

/**
 * The next state of a rule given its signal. Pure: no clock, no storage.
 *
 * - OK fires when the value is past the trigger (below `level` for `balance_below`; at or above
 *   the threshold for every other kind).
 * - FIRING stays FIRING, silently, until the value is back on the safe side of `recoverAt`
 *   (default: the trigger itself): at or above it for `balance_below`, below it otherwise.
 *   A `recoverAt` short of the trigger is hysteresis: a value hovering at the threshold does
 *   not fire, recover and fire again on every evaluation.
 * - `null` (too little data: no requests in the window, no cap, no budget) is never past the
 *   trigger, so an OK rule stays OK and a FIRING rule recovers.
 * - A rule with no trigger (a cost rule without threshold and without a budget) never fires.
 */
export function nextState(
  rule: AlertRule,
  state: AlertRuleState,
  value: number | null,
  threshold: number | undefined = triggerOf(rule).threshold,
): { state: AlertRuleState; transition: Transition } {
  const { below } = triggerOf(rule);
  if (state === "ok") {
    const past = value !== null && threshold !== undefined && (below ? value < threshold : value >= threshold);
    return past ? { state: "firing", transition: "fire" } : { state: "ok", transition: "none" };
  }
  const recoverAt = rule.recoverAt ?? threshold;
  const recovered = value === null || recoverAt === undefined || (below ? value >= recoverAt : value < recoverAt);
  return recovered ? { state: "ok", transition: "resolve" } : { state: "firing", transition: "none" };
}

/** A one-line description of a crossing, for the notification. */
export function crossingMessage(rule: AlertRule, value: number, threshold: number): string {
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  switch (rule.kind) {
    case "balance_below":
      return `account ${rule.accountId}: available balance ${value} is below ${threshold}`;
    case "key_spend_share":
      return `key ${rule.keyId} of account ${rule.accountId} has spent ${pct(value)} of its spend cap (alert at ${pct(threshold)})`;
    case "denial_rate":
      return `subject ${rule.subject}: ${pct(value)} of checks denied over the last ${rule.windowMs / 60_000} min (alert at ${pct(threshold)})`;
    case "path_error_rate":
      return `${rule.method ?? "*"} ${rule.path}: error rate ${pct(value)} over the last ${rule.windowMs / 60_000} min (alert at ${pct(threshold)})`;
    case "path_p99":
      return `${rule.method ?? "*"} ${rule.path}: p99 latency ${Math.round(value)} ms over the last ${rule.windowMs / 60_000} min (alert at ${threshold} ms)`;
    case "cost_projection":
      return `projected monthly cost $${value.toFixed(2)} is at or above $${threshold.toFixed(2)}`;
  }
}
