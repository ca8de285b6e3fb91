import { describe, expect, it } from "vitest";
import type { Rule } from "../../../rpc/rate-limits";
import { evaluateRule, evaluateRules, refundRule } from "../../../src/rate-limits/algorithms/evaluate-rules";
import type { LimiterState, RuleOutcome } from "../../../src/rate-limits/algorithms/rule-state";

const minute = 60_000;
const T0 = 1_800_000_000_000 - (1_800_000_000_000 % minute);

/** Runs calls in order, keeping the state an admitted call leaves behind. */
function run(rule: Rule, calls: { at: number; cost?: number }[], initial?: LimiterState): RuleOutcome[] {
  let state = initial;
  return calls.map(({ at, cost = 1 }) => {
    const outcome = evaluateRule(rule, state, at, cost);
    if (outcome.allowed && cost > 0) state = outcome.charged;
    return outcome;
  });
}

function stateAfter(rule: Rule, calls: { at: number; cost?: number }[]): LimiterState | undefined {
  let state: LimiterState | undefined;
  for (const { at, cost = 1 } of calls) {
    const outcome = evaluateRule(rule, state, at, cost);
    if (outcome.allowed) state = outcome.charged;
  }
  return state;
}

describe("sliding log", () => {
  const rule: Rule = { name: "log", algorithm: "sliding_log", limit: 3, periodMs: minute };

  it("counts exactly the units of the trailing period", () => {
    const outcomes = run(rule, [
      { at: T0 },
      { at: T0 + 10_000 },
      { at: T0 + 20_000 },
      { at: T0 + 59_999 },
      { at: T0 + 60_000 },
      { at: T0 + 60_001 },
    ]);
    expect(outcomes.map((o) => o.allowed)).toEqual([true, true, true, false, true, false]);
    expect(outcomes[3]!.retryAfterMs).toBe(1);
    expect(outcomes[5]!.retryAfterMs).toBe(T0 + 10_000 + minute - (T0 + 60_001));
  });

  it("waits for enough of the oldest entries to leave when the cost is larger", () => {
    const state = stateAfter(rule, [{ at: T0 }, { at: T0 + 1_000 }, { at: T0 + 2_000 }]);
    const denied = evaluateRule(rule, state, T0 + 3_000, 2);
    expect(denied.retryAfterMs).toBe(T0 + 1_000 + minute - (T0 + 3_000));
    expect(evaluateRule(rule, state, T0 + 3_000 + denied.retryAfterMs, 2).allowed).toBe(true);
    expect(evaluateRule(rule, state, T0 + 3_000 + denied.retryAfterMs - 1, 2).allowed).toBe(false);
  });

  it("merges calls of the same millisecond into one entry", () => {
    const state = stateAfter(rule, [{ at: T0 }, { at: T0 }]);
    expect(state).toEqual({ algorithm: "sliding_log", periodMs: minute, entries: [{ atMs: T0, cost: 2 }] });
  });

  it("refunds newest first and never more than the log holds", () => {
    const state = stateAfter(rule, [{ at: T0, cost: 2 }, { at: T0 + 5 }]);
    const refund = refundRule(rule, state, T0 + 10, 5);
    expect(refund.refunded).toBe(3);
    expect(refund.state).toEqual({ algorithm: "sliding_log", periodMs: minute, entries: [] });
    const partial = refundRule(rule, state, T0 + 10, 2);
    expect(partial.state).toEqual({ algorithm: "sliding_log", periodMs: minute, entries: [{ atMs: T0, cost: 1 }] });
  });
});

describe("token bucket", () => {
  const rule: Rule = { name: "tb", algorithm: "token_bucket", limit: 2, periodMs: 10_000, burst: 5 };

  it("allows a burst of `burst`, then `limit` more every period", () => {
    const outcomes = run(rule, [
      ...Array.from({ length: 6 }, () => ({ at: T0 })),
      { at: T0 + 9_999 },
      { at: T0 + 10_000 },
      { at: T0 + 10_000 },
      { at: T0 + 10_000 },
    ]);
    expect(outcomes.map((o) => o.allowed)).toEqual([true, true, true, true, true, false, false, true, true, false]);
    expect(outcomes[5]!.retryAfterMs).toBe(10_000);
    expect(outcomes[9]!.retryAfterMs).toBe(10_000);
    expect(outcomes[8]!.remaining).toBe(0);
  });

  it("stops the refill clock while the bucket is full", () => {
    const state = stateAfter(rule, [{ at: T0, cost: 5 }, { at: T0 + 100_000 }]);
    // Full again long before T0 + 100s; the cycle restarts at the call, so 4 tokens are left.
    expect(evaluateRule(rule, state, T0 + 100_000, 0).remaining).toBe(4);
    expect(evaluateRule(rule, state, T0 + 109_999, 0).remaining).toBe(4);
    expect(evaluateRule(rule, state, T0 + 110_000, 0).remaining).toBe(5);
  });

  it("reports when the bucket is full again", () => {
    const [outcome] = run(rule, [{ at: T0, cost: 5 }]);
    expect(outcome!.resetAt).toBe(T0 + 30_000);
    expect(outcome!.expiresAtMs).toBe(T0 + 30_000);
  });

  it("refunds up to a full bucket", () => {
    const state = stateAfter(rule, [{ at: T0, cost: 3 }]);
    expect(refundRule(rule, state, T0 + 1, 10).refunded).toBe(3);
    expect(refundRule(rule, state, T0 + 10_000, 10).refunded).toBe(1);
  });
});

describe("gcra", () => {
  const rule: Rule = { name: "g", algorithm: "gcra", limit: 3, periodMs: 1_000, burst: 2 };

  it("emits one unit every periodMs / limit, exactly, even when that is not a whole millisecond", () => {
    const outcomes = run(rule, [{ at: T0 }, { at: T0 }, { at: T0 }, { at: T0 + 333 }, { at: T0 + 334 }]);
    expect(outcomes.map((o) => o.allowed)).toEqual([true, true, false, false, true]);
    expect(outcomes[2]!.retryAfterMs).toBe(334); // 1000/3 ms, rounded up
  });

  it("tells the exact wait, and admits at it but not 1 ms before", () => {
    const state = stateAfter(rule, [{ at: T0, cost: 2 }]);
    const denied = evaluateRule(rule, state, T0 + 100, 2);
    expect(denied.allowed).toBe(false);
    expect(evaluateRule(rule, state, T0 + 100 + denied.retryAfterMs, 2).allowed).toBe(true);
    expect(evaluateRule(rule, state, T0 + 99 + denied.retryAfterMs, 2).allowed).toBe(false);
  });

  it("never admits a cost above the burst, and says how long until the allowance is full", () => {
    const outcome = evaluateRule(rule, undefined, T0, 3);
    expect(outcome.allowed).toBe(false);
    expect(outcome.retryAfterMs).toBeGreaterThan(0);
  });

  it("stays exact at the largest allowed limit and period", () => {
    const big: Rule = { name: "y", algorithm: "gcra", limit: 24_000_000, periodMs: 366 * 24 * 3_600_000 };
    const first = evaluateRule(big, undefined, T0, 24_000_000);
    expect(first).toMatchObject({ allowed: true, remaining: 0 });
    const half = evaluateRule(big, first.charged, T0 + big.periodMs / 2, 12_000_000);
    expect(half).toMatchObject({ allowed: true, remaining: 0 });
  });

  it("refunds debt, never below a full allowance", () => {
    const state = stateAfter(rule, [{ at: T0, cost: 2 }]);
    expect(refundRule(rule, state, T0 + 1, 5).refunded).toBe(2);
    expect(evaluateRule(rule, refundRule(rule, state, T0 + 1, 5).state, T0 + 1, 0).remaining).toBe(2);
  });
});

describe("a burst straddling a window boundary", () => {
  const limit = 10;
  const at = (offset: number, cost = 1) => ({ at: T0 + minute + offset, cost });
  const admittedOf = (rule: Rule) =>
    run(rule, [...Array.from({ length: 15 }, () => at(-1)), ...Array.from({ length: 15 }, () => at(0))]).filter((o) => o.allowed).length;

  it("admits up to 2 x limit with fixed_window, and no more than each other algorithm allows", () => {
    const rule = (algorithm: Rule["algorithm"]): Rule => ({ name: "r", algorithm, limit, periodMs: minute });
    expect(admittedOf(rule("fixed_window"))).toBe(2 * limit);
    expect(admittedOf(rule("sliding_window"))).toBe(limit);
    expect(admittedOf(rule("sliding_log"))).toBe(limit);
    expect(admittedOf(rule("token_bucket"))).toBe(limit);
    // gcra refills smoothly: 1 ms at 10 per minute adds nothing.
    expect(admittedOf(rule("gcra"))).toBe(limit);
  });
});

describe("countDenied", () => {
  /** Feeds calls through evaluateRules with one rule, applying every write (denied ones too). */
  function runAll(rule: Rule, calls: { at: number; cost?: number }[]) {
    const states = new Map<string, LimiterState>();
    return calls.map(({ at, cost = 1 }) => {
      const evaluation = evaluateRules([rule], states, at, cost);
      for (const [name, { state }] of evaluation.writes) states.set(name, state);
      return evaluation;
    });
  }

  it("keeps a gcra client that calls faster than one per interval denied until it pauses", () => {
    const rule: Rule = { name: "g", algorithm: "gcra", limit: 1, periodMs: 1_000, countDenied: true };
    const hammering = runAll(rule, [{ at: T0 }, ...Array.from({ length: 5 }, (_, i) => ({ at: T0 + 900 * (i + 1) }))]);
    expect(hammering.map((e) => e.decision.allowed)).toEqual([true, false, false, false, false, false]);
    expect(hammering[5]!.decision.retryAfterMs).toBe(1_000);
    const plain = runAll({ ...rule, countDenied: false }, [{ at: T0 }, { at: T0 + 900 }, { at: T0 + 1_800 }]);
    expect(plain.map((e) => e.decision.allowed)).toEqual([true, false, true]);
    expect(plain[1]!.writes.size).toBe(0);
  });

  it("charges a denied call only up to a full rule, with every algorithm", () => {
    for (const algorithm of ["fixed_window", "sliding_window", "sliding_log", "token_bucket", "gcra"] as const) {
      const rule: Rule = { name: "r", algorithm, limit: 3, periodMs: minute, countDenied: true };
      const [first, denied] = runAll(rule, [
        { at: T0, cost: 2 },
        { at: T0 + 1, cost: 5 },
      ]);
      expect(first!.decision.allowed).toBe(true);
      expect(denied!.decision).toMatchObject({ allowed: false, remaining: 0 });
      const state = denied!.writes.get("r")!.state;
      expect(evaluateRule(rule, state, T0 + 1, 0).remaining).toBe(0);
      expect(refundRule(rule, state, T0 + 1, 100).refunded).toBe(3);
    }
  });

  it("moves a full sliding log forward: the oldest units make room for the denied call's", () => {
    const rule: Rule = { name: "l", algorithm: "sliding_log", limit: 3, periodMs: minute, countDenied: true };
    const results = runAll(rule, [{ at: T0, cost: 2 }, { at: T0 + 10 }, { at: T0 + 20, cost: 2 }]);
    expect(results[2]!.writes.get("l")!.state).toEqual({
      algorithm: "sliding_log",
      periodMs: minute,
      entries: [
        { atMs: T0 + 10, cost: 1 },
        { atMs: T0 + 20, cost: 2 },
      ],
    });
  });
});
