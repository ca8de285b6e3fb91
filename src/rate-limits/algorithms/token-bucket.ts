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
 * Token bucket with whole refills: the bucket holds up to `burst` tokens (default `limit`)
 * and gains `limit` tokens every `periodMs`, counted from when it first dropped below full
 * (the refill clock does not run while the bucket is full). A call takes `cost` tokens.
 * This is the bucket of Envoy's local rate limit and Upstash's `tokenBucket`: bursts up to
 * `burst`, then `limit` per period. Exact integers throughout.
 */
export function evaluateTokenBucket(rule: Rule, stored: LimiterState | undefined, nowMs: number, cost: number): RuleOutcome {
  const { limit, periodMs } = rule;
  const capacity = rule.burst ?? limit;
  const { tokens, cycleStartMs } = refill(rule, stored, nowMs);
  const allowed = cost <= tokens;
  const left = tokens - cost;
  const after = allowed ? left : tokens;
  const fullAt = (level: number) => (level >= capacity ? nowMs : cycleStartMs + ceilDiv(capacity - level, limit) * periodMs);
  let retryAfterMs = 0;
  if (!allowed) {
    retryAfterMs =
      cost > capacity ? Math.max(fullAt(tokens) - nowMs, periodMs) : cycleStartMs + ceilDiv(cost - tokens, limit) * periodMs - nowMs;
  }
  return {
    allowed,
    remaining: after,
    resetAt: fullAt(after),
    retryAfterMs,
    charged: { algorithm: "token_bucket", periodMs, level: Math.max(0, left), atMs: cycleStartMs },
    expiresAtMs: fullAt(Math.max(0, left)),
  };
}

/** Puts back up to `cost` tokens; never beyond a full bucket. */
export function refundTokenBucket(rule: Rule, stored: LimiterState | undefined, nowMs: number, cost: number): RefundOutcome {
  const capacity = rule.burst ?? rule.limit;
  const { tokens, cycleStartMs } = refill(rule, stored, nowMs);
  const refunded = Math.min(cost, capacity - tokens);
  const level = tokens + refunded;
  return {
    refunded,
    state: { algorithm: "token_bucket", periodMs: rule.periodMs, level, atMs: level >= capacity ? nowMs : cycleStartMs },
    expiresAtMs: level >= capacity ? nowMs : cycleStartMs + ceilDiv(capacity - level, rule.limit) * rule.periodMs,
  };
}

/** `countDenied`: a denied call still takes what tokens are left, emptying the bucket at worst. */
export function chargeDeniedTokenBucket(rule: Rule, stored: LimiterState | undefined, nowMs: number, cost: number): StateChange {
  const capacity = rule.burst ?? rule.limit;
  const { tokens, cycleStartMs } = refill(rule, stored, nowMs);
  const level = Math.max(0, tokens - cost);
  return {
    state: { algorithm: "token_bucket", periodMs: rule.periodMs, level, atMs: cycleStartMs },
    expiresAtMs: level >= capacity ? nowMs : cycleStartMs + ceilDiv(capacity - level, rule.limit) * rule.periodMs,
  };
}

/**
 * The bucket at `nowMs`: whole refills since the cycle start are added. A full bucket's
 * cycle starts now, since a refill that finds it full is lost.
 */
function refill(rule: Rule, stored: LimiterState | undefined, nowMs: number): { tokens: number; cycleStartMs: number } {
  const capacity = rule.burst ?? rule.limit;
  const state = compatibleState(stored, "token_bucket", rule.periodMs);
  if (state === undefined || state.level >= capacity) return { tokens: capacity, cycleStartMs: nowMs };
  const cycles = nowMs > state.atMs ? floorDiv(nowMs - state.atMs, rule.periodMs) : 0;
  if (cycles >= ceilDiv(capacity - state.level, rule.limit)) return { tokens: capacity, cycleStartMs: nowMs };
  return { tokens: state.level + cycles * rule.limit, cycleStartMs: state.atMs + cycles * rule.periodMs };
}
