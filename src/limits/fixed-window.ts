import type { Rule } from "../../rpc/rate-limits";
import { compatibleState, type RuleOutcome, type WindowState, windowStart } from "./rule-state";

/**
 * Fixed window: at most `limit` units per epoch-aligned window of `periodMs`. Exact: the
 * count is the true number of admitted units in the window. Bursts of up to 2x the limit
 * are possible across a window boundary; that is the algorithm, not an error.
 */
export function evaluateFixedWindow(
  rule: Rule,
  stored: WindowState | undefined,
  nowMs: number,
  cost: number,
): RuleOutcome {
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
