import type { Rule } from "../../../rpc/rate-limits";
import { compatibleState, type LimiterState, type RefundOutcome, type RuleOutcome, type StateChange, windowStart } from "./rule-state";

/**
 * Sliding window counter: the previous window's count, weighted by how much of it still
 * overlaps the trailing period, plus the current window's count:
 *
 *   estimate = previous * (periodMs - elapsed) / periodMs + current
 *
 * and a call is admitted when `estimate + cost <= limit`. The comparison is done in exact
 * integer arithmetic (both sides multiplied by periodMs, in BigInt), so decisions are
 * deterministic. The estimate assumes the previous window's units were spread evenly; it
 * is an approximation of a true sliding log, documented in docs/rate-limits.md.
 */
export function evaluateSlidingWindow(rule: Rule, stored: LimiterState | undefined, nowMs: number, cost: number): RuleOutcome {
  const { limit, periodMs } = rule;
  const start = windowStart(nowMs, periodMs);
  const { current, previous } = countsAt(compatibleState(stored, "sliding_window", periodMs), start, periodMs);
  const elapsed = nowMs - start;

  const P = BigInt(periodMs);
  const capacity = BigInt(limit) * P;
  const previousWeight = BigInt(previous) * BigInt(periodMs - elapsed);
  const allowed = previousWeight + BigInt(current + cost) * P <= capacity;
  const after = allowed ? current + cost : current;
  const headroom = capacity - previousWeight - BigInt(after) * P;

  return {
    allowed,
    remaining: headroom > 0n ? Number(headroom / P) : 0,
    resetAt: after > 0 ? start + 2 * periodMs : previous > 0 ? start + periodMs : nowMs,
    retryAfterMs: allowed ? 0 : waitUntilAdmitted(limit, periodMs, elapsed, current, previous, cost),
    charged: {
      algorithm: "sliding_window",
      periodMs,
      windowStartMs: start,
      count: current + cost,
      previousCount: previous,
    },
    expiresAtMs: start + 2 * periodMs,
  };
}

function countsAt(state: { windowStartMs: number; count: number; previousCount: number } | undefined, start: number, periodMs: number) {
  if (state?.windowStartMs === start) return { current: state.count, previous: state.previousCount };
  if (state?.windowStartMs === start - periodMs) return { current: 0, previous: state.count };
  return { current: 0, previous: 0 };
}

/**
 * Gives back up to `cost` units, from the current window first, then the previous one (whose
 * units still weigh on the estimate); never more than the two windows hold.
 */
export function refundSlidingWindow(rule: Rule, stored: LimiterState | undefined, nowMs: number, cost: number): RefundOutcome {
  const { periodMs } = rule;
  const start = windowStart(nowMs, periodMs);
  const { current, previous } = countsAt(compatibleState(stored, "sliding_window", periodMs), start, periodMs);
  const fromCurrent = Math.min(cost, current);
  const fromPrevious = Math.min(cost - fromCurrent, previous);
  return {
    refunded: fromCurrent + fromPrevious,
    state: {
      algorithm: "sliding_window",
      periodMs,
      windowStartMs: start,
      count: current - fromCurrent,
      previousCount: previous - fromPrevious,
    },
    expiresAtMs: start + 2 * periodMs,
  };
}

/**
 * `countDenied`: a denied call still counts in the current window, up to `limit`, so a client
 * that keeps trying also weighs on the next window.
 */
export function chargeDeniedSlidingWindow(rule: Rule, stored: LimiterState | undefined, nowMs: number, cost: number): StateChange {
  const { periodMs } = rule;
  const start = windowStart(nowMs, periodMs);
  const { current, previous } = countsAt(compatibleState(stored, "sliding_window", periodMs), start, periodMs);
  const after = Math.min(rule.limit, current + cost);
  return {
    state: { algorithm: "sliding_window", periodMs, windowStartMs: start, count: after, previousCount: previous },
    expiresAtMs: start + 2 * periodMs,
  };
}

/**
 * The shortest wait, in ms, after which the same call would be admitted if nothing else
 * is charged meanwhile. A cost above the limit can never be admitted; it is told to wait
 * until the rule's state has fully drained.
 */
function waitUntilAdmitted(limit: number, periodMs: number, elapsed: number, current: number, previous: number, cost: number): number {
  const P = BigInt(periodMs);
  if (cost > limit) return (current > 0 ? 2 * periodMs : periodMs) - elapsed;
  if (current + cost <= limit) {
    // Still this window: wait until the previous window's weight has decayed enough.
    const allowedWeight = (BigInt(limit - current - cost) * P) / BigInt(previous);
    return Number(P - allowedWeight) - elapsed;
  }
  // Next window, where the current count becomes the decaying previous one.
  const allowedWeight = (BigInt(limit - cost) * P) / BigInt(current);
  return periodMs - elapsed + Number(P - allowedWeight);
}
