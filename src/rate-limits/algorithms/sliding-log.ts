import type { Rule } from "../../../rpc/rate-limits";
import { compatibleState, type LimiterState, type LogEntry, type RefundOutcome, type RuleOutcome, type StateChange } from "./rule-state";

/**
 * The largest `limit` a `sliding_log` rule may have. The log keeps one entry per admitted call
 * (same-millisecond calls share an entry) in the subject's state row, which every write
 * rewrites whole; above this a counter algorithm is the better tool.
 */
export const SLIDING_LOG_MAX_LIMIT = 1_000;

/**
 * Sliding log: the exact trailing window. A call at `now` is admitted iff the units admitted
 * in `(now - periodMs, now]` plus `cost` are at most `limit`, so no interval of length
 * `periodMs` ever holds more than `limit` units. Exact, at the price of one stored entry per
 * admitted millisecond.
 */
export function evaluateSlidingLog(rule: Rule, stored: LimiterState | undefined, nowMs: number, cost: number): RuleOutcome {
  const { limit, periodMs } = rule;
  const live = liveEntries(stored, periodMs, nowMs);
  const used = total(live);
  const allowed = used + cost <= limit;
  const entries = cost > 0 ? append(live, nowMs, cost) : live;
  const kept = allowed ? entries : live;
  const lastAt = kept.at(-1)?.atMs;
  return {
    allowed,
    remaining: Math.max(0, limit - total(kept)),
    resetAt: lastAt === undefined ? nowMs : lastAt + periodMs,
    retryAfterMs: allowed ? 0 : waitUntilAdmitted(live, used, limit, periodMs, nowMs, cost),
    charged: { algorithm: "sliding_log", periodMs, entries },
    expiresAtMs: (entries.at(-1)?.atMs ?? nowMs) + periodMs,
  };
}

/** Gives back up to `cost` units, newest first; never more than the log holds. */
export function refundSlidingLog(rule: Rule, stored: LimiterState | undefined, nowMs: number, cost: number): RefundOutcome {
  const entries = liveEntries(stored, rule.periodMs, nowMs).map((entry) => ({ ...entry }));
  let left = cost;
  while (left > 0 && entries.length > 0) {
    const last = entries.at(-1)!;
    const take = Math.min(left, last.cost);
    last.cost -= take;
    left -= take;
    if (last.cost === 0) entries.pop();
  }
  return {
    refunded: cost - left,
    state: { algorithm: "sliding_log", periodMs: rule.periodMs, entries },
    expiresAtMs: (entries.at(-1)?.atMs ?? nowMs) + rule.periodMs,
  };
}

/**
 * `countDenied`: a denied call is logged at `now` anyway, and as many of the oldest units are
 * dropped as keep the log at `limit`: a client that keeps trying keeps its log full of recent
 * calls, and the log never grows beyond `limit` units.
 */
export function chargeDeniedSlidingLog(rule: Rule, stored: LimiterState | undefined, nowMs: number, cost: number): StateChange {
  const entries = liveEntries(stored, rule.periodMs, nowMs).map((entry) => ({ ...entry }));
  const added = Math.min(cost, rule.limit);
  let excess = total(entries) + added - rule.limit;
  while (excess > 0 && entries.length > 0) {
    const first = entries[0]!;
    const take = Math.min(excess, first.cost);
    first.cost -= take;
    excess -= take;
    if (first.cost === 0) entries.shift();
  }
  const after = added > 0 ? append(entries, nowMs, added) : entries;
  return {
    state: { algorithm: "sliding_log", periodMs: rule.periodMs, entries: after },
    expiresAtMs: (after.at(-1)?.atMs ?? nowMs) + rule.periodMs,
  };
}

/** Entries still inside `(now - periodMs, now]`, oldest first. */
export function liveEntries(stored: LimiterState | undefined, periodMs: number, nowMs: number): LogEntry[] {
  const state = compatibleState(stored, "sliding_log", periodMs);
  return state ? state.entries.filter((entry) => entry.atMs > nowMs - periodMs) : [];
}

function total(entries: readonly LogEntry[]): number {
  let sum = 0;
  for (const entry of entries) sum += entry.cost;
  return sum;
}

/** Calls in the same millisecond (or, if the clock stepped back, before the last entry) share its row. */
function append(entries: readonly LogEntry[], nowMs: number, cost: number): LogEntry[] {
  const last = entries.at(-1);
  if (last !== undefined && last.atMs >= nowMs) return [...entries.slice(0, -1), { atMs: last.atMs, cost: last.cost + cost }];
  return [...entries, { atMs: nowMs, cost }];
}

/**
 * The exact wait until enough of the oldest entries have left the window. A cost above the
 * limit can never be admitted; it is told to wait until the log has drained.
 */
function waitUntilAdmitted(live: readonly LogEntry[], used: number, limit: number, periodMs: number, nowMs: number, cost: number): number {
  if (cost > limit) return live.length === 0 ? periodMs : live.at(-1)!.atMs + periodMs - nowMs;
  let excess = used + cost - limit;
  for (const entry of live) {
    excess -= entry.cost;
    if (excess <= 0) return entry.atMs + periodMs - nowMs;
  }
  return periodMs;
}
