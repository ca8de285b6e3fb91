import type { Rule } from "../../../rpc/rate-limits";
import { compatibleState, type LimiterState, type RefundOutcome, type RuleOutcome, type StateChange, windowStart } from "./rule-state";

/**
 * Fixed window: at most `limit` units per epoch-aligned window of `periodMs`. Exact: the
 * count is the true number of admitted units in the window. Bursts of up to 2x the limit
 * are possible across a window boundary; that is the algorithm, not an error.
 */
export function evaluateFixedWindow(rule: Rule, stored: LimiterState | undefined, nowMs: number, cost: number): RuleOutcome {
  const { limit, periodMs } = rule;
  const start = windowStart(nowMs, periodMs);
  const state = compatibleState(stored, "fixed_window", periodMs);
  const count = state && state.windowStartMs === start ? state.count : 0;
  const allowed = count + cost <= limit;
  const after = allowed ? count + cost : count;
  const resetAt = start + periodMs;
  return {
    allowed,
    remaining: Math.max(0, limit - after),
    resetAt,
    retryAfterMs: allowed ? 0 : resetAt - nowMs,
    charged: { algorithm: "fixed_window", periodMs, windowStartMs: start, count: count + cost, previousCount: 0 },
    expiresAtMs: resetAt,
  };
}

/** Gives back up to `cost` units of the current window; an earlier window's units no longer matter. */
export function refundFixedWindow(rule: Rule, stored: LimiterState | undefined, nowMs: number, cost: number): RefundOutcome {
  const start = windowStart(nowMs, rule.periodMs);
  const state = compatibleState(stored, "fixed_window", rule.periodMs);
  const count = state && state.windowStartMs === start ? state.count : 0;
  const refunded = Math.min(cost, count);
  return {
    refunded,
    state: { algorithm: "fixed_window", periodMs: rule.periodMs, windowStartMs: start, count: count - refunded, previousCount: 0 },
    expiresAtMs: start + rule.periodMs,
  };
}

/** `countDenied`: a denied call still counts, up to a full window (never beyond the limit). */
export function chargeDeniedFixedWindow(rule: Rule, stored: LimiterState | undefined, nowMs: number, cost: number): StateChange {
  const start = windowStart(nowMs, rule.periodMs);
  const state = compatibleState(stored, "fixed_window", rule.periodMs);
  const count = state && state.windowStartMs === start ? state.count : 0;
  const after = Math.min(rule.limit, count + cost);
  return {
    state: { algorithm: "fixed_window", periodMs: rule.periodMs, windowStartMs: start, count: after, previousCount: 0 },
    expiresAtMs: start + rule.periodMs,
  };
}
