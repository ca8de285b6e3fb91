import type { Rule } from "../../../rpc/rate-limits";
import {
  ceilDiv,
  compatibleState,
  floorDiv,
  type LimiterState,
  type RefundOutcome,
  type RuleOutcome,
  type StateChange,
} from "./rule-state";

/**
 * GCRA (generic cell rate algorithm, as in redis-cell): one unit is emitted every
 * `periodMs / limit` ms, smoothly, and up to `burst` units (default `limit`) may be taken
 * at once. The state is the theoretical arrival time (TAT); a call of `cost` is admitted iff
 * `max(TAT, now) + cost * periodMs / limit <= now + burst * periodMs / limit`.
 *
 * `periodMs / limit` is rarely a whole number of ms, so everything is scaled by `limit`:
 * the stored `level` is the debt `(TAT - now) * limit`, i.e. units still owed times periodMs,
 * at most `burst * periodMs` (a safe integer by validation). No float, no drift.
 */
export function evaluateGcra(rule: Rule, stored: LimiterState | undefined, nowMs: number, cost: number): RuleOutcome {
  const { limit, periodMs } = rule;
  const capacity = (rule.burst ?? limit) * periodMs;
  const debt = debtAt(rule, stored, nowMs);
  // cost * periodMs may exceed 2^53 only when cost > burst, which can never be admitted.
  const allowed = cost <= (rule.burst ?? limit) && cost * periodMs <= capacity - debt;
  const after = allowed ? debt + cost * periodMs : debt;
  let retryAfterMs = 0;
  if (!allowed) {
    retryAfterMs =
      cost > (rule.burst ?? limit)
        ? Math.max(ceilDiv(debt, limit), ceilDiv(periodMs, limit))
        : ceilDiv(debt + cost * periodMs - capacity, limit);
  }
  return {
    allowed,
    // After a limit shrank (adaptive limits, a new policy), the debt can exceed the allowance.
    remaining: after >= capacity ? 0 : floorDiv(capacity - after, periodMs),
    resetAt: nowMs + ceilDiv(after, limit),
    retryAfterMs,
    charged: { algorithm: "gcra", periodMs, level: after, atMs: nowMs },
    expiresAtMs: nowMs + ceilDiv(after, limit),
  };
}

/** Forgives up to `cost` units of debt; never below none (a full allowance). */
export function refundGcra(rule: Rule, stored: LimiterState | undefined, nowMs: number, cost: number): RefundOutcome {
  const debt = debtAt(rule, stored, nowMs);
  const refunded = Math.min(cost, ceilDiv(debt, rule.periodMs));
  const level = Math.max(0, debt - refunded * rule.periodMs);
  return {
    refunded,
    state: { algorithm: "gcra", periodMs: rule.periodMs, level, atMs: nowMs },
    expiresAtMs: nowMs + ceilDiv(level, rule.limit),
  };
}

/**
 * `countDenied`: a denied call still adds its cost to the debt, up to the full allowance, so
 * a client that calls faster than one unit per emission interval stays denied until it pauses.
 */
export function chargeDeniedGcra(rule: Rule, stored: LimiterState | undefined, nowMs: number, cost: number): StateChange {
  const capacity = (rule.burst ?? rule.limit) * rule.periodMs;
  const debt = debtAt(rule, stored, nowMs);
  // min() before multiplying keeps the product a safe integer.
  const level = Math.min(capacity, debt + Math.min(cost, rule.burst ?? rule.limit) * rule.periodMs);
  return {
    state: { algorithm: "gcra", periodMs: rule.periodMs, level, atMs: nowMs },
    expiresAtMs: nowMs + ceilDiv(level, rule.limit),
  };
}

/** The debt at `nowMs`: what was owed at `atMs`, less `limit` per elapsed ms, never below 0. */
function debtAt(rule: Rule, stored: LimiterState | undefined, nowMs: number): number {
  const state = compatibleState(stored, "gcra", rule.periodMs);
  if (state === undefined) return 0;
  const elapsed = Math.max(0, nowMs - state.atMs);
  // elapsed * limit may exceed 2^53; compare before multiplying.
  if (elapsed >= ceilDiv(state.level, rule.limit)) return 0;
  return state.level - elapsed * rule.limit;
}
