import { describe, expect, it } from "vitest";
import type { Rule } from "../../../rpc/rate-limits";
import { evaluateFixedWindow } from "../../../src/rate-limits/algorithms/fixed-window";
import type { LimiterState, WindowState } from "../../../src/rate-limits/algorithms/rule-state";
import { evaluateSlidingWindow } from "../../../src/rate-limits/algorithms/sliding-window";

const minute = 60_000;
const T0 = 1_800_000_000_000 - (1_800_000_000_000 % minute); // a window boundary

function run(evaluate: typeof evaluateFixedWindow, rule: Rule, calls: { at: number; cost?: number }[]) {
  let state: LimiterState | undefined;
  return calls.map(({ at, cost = 1 }) => {
    const outcome = evaluate(rule, state, at, cost);
    if (outcome.allowed) state = outcome.charged;
    return outcome;
  });
}

describe("fixed window", () => {
  const rule: Rule = { name: "m", algorithm: "fixed_window", limit: 3, periodMs: minute };

  it("admits exactly the limit within one window and denies the rest until the window ends", () => {
    const outcomes = run(
      evaluateFixedWindow,
      rule,
      [0, 1, 2, 3, 4].map((i) => ({ at: T0 + i * 1000 })),
    );
    expect(outcomes.map((o) => o.allowed)).toEqual([true, true, true, false, false]);
    expect(outcomes.map((o) => o.remaining)).toEqual([2, 1, 0, 0, 0]);
    expect(outcomes[3]!.retryAfterMs).toBe(minute - 3000);
    expect(outcomes[3]!.resetAt).toBe(T0 + minute);
  });

  it("starts a fresh count in the next epoch-aligned window", () => {
    const outcomes = run(evaluateFixedWindow, rule, [
      { at: T0 },
      { at: T0 + 1 },
      { at: T0 + 2 },
      { at: T0 + minute - 1 },
      { at: T0 + minute },
    ]);
    expect(outcomes.map((o) => o.allowed)).toEqual([true, true, true, false, true]);
    expect(outcomes[4]!.remaining).toBe(2);
  });

  it("denies a cost larger than what remains without consuming anything", () => {
    const outcomes = run(evaluateFixedWindow, rule, [
      { at: T0, cost: 2 },
      { at: T0 + 1, cost: 2 },
      { at: T0 + 2, cost: 1 },
    ]);
    expect(outcomes.map((o) => o.allowed)).toEqual([true, false, true]);
    expect(outcomes[2]!.remaining).toBe(0);
  });

  it("keeps the count when only the limit changes, and restarts when the period changes", () => {
    const [first] = run(evaluateFixedWindow, rule, [{ at: T0, cost: 3 }]);
    const raised = evaluateFixedWindow({ ...rule, limit: 5 }, first!.charged, T0 + 1, 1);
    expect(raised.allowed).toBe(true);
    expect(raised.remaining).toBe(1);
    const longer = evaluateFixedWindow({ ...rule, periodMs: 2 * minute }, first!.charged, T0 + 1, 1);
    expect(longer.remaining).toBe(2);
  });
});

describe("sliding window", () => {
  const rule: Rule = { name: "m", algorithm: "sliding_window", limit: 10, periodMs: minute };

  it("weights the previous window by how much of it still overlaps the trailing period", () => {
    const state: WindowState = { algorithm: "sliding_window", periodMs: minute, windowStartMs: T0 - minute, count: 10, previousCount: 0 };
    // A quarter into the new window, 3/4 of the previous 10 still count: 7.5, so 2 fit.
    const at = T0 + minute / 4;
    expect(evaluateSlidingWindow(rule, state, at, 2).allowed).toBe(true);
    expect(evaluateSlidingWindow(rule, state, at, 2).remaining).toBe(0);
    expect(evaluateSlidingWindow(rule, state, at, 3).allowed).toBe(false);
  });

  it("tells a denied caller the exact wait after which the same call is admitted", () => {
    const state: WindowState = { algorithm: "sliding_window", periodMs: minute, windowStartMs: T0 - minute, count: 10, previousCount: 0 };
    const at = T0 + minute / 4;
    const denied = evaluateSlidingWindow(rule, state, at, 3);
    expect(denied.allowed).toBe(false);
    expect(evaluateSlidingWindow(rule, state, at + denied.retryAfterMs, 3).allowed).toBe(true);
    expect(evaluateSlidingWindow(rule, state, at + denied.retryAfterMs - 1, 3).allowed).toBe(false);
  });

  it("waits into the next window when the current window alone is full", () => {
    const outcomes = run(
      evaluateSlidingWindow,
      rule,
      Array.from({ length: 11 }, (_, i) => ({ at: T0 + 30_000 + i })),
    );
    const denied = outcomes[10]!;
    expect(denied.allowed).toBe(false);
    const state: WindowState = { algorithm: "sliding_window", periodMs: minute, windowStartMs: T0, count: 10, previousCount: 0 };
    const at = T0 + 30_010;
    expect(evaluateSlidingWindow(rule, state, at + denied.retryAfterMs, 1).allowed).toBe(true);
    expect(evaluateSlidingWindow(rule, state, at + denied.retryAfterMs - 1, 1).allowed).toBe(false);
  });

  it("never admits more than the limit within any one aligned window", () => {
    const calls = Array.from({ length: 400 }, (_, i) => ({ at: T0 + i * 450 }));
    const outcomes = run(evaluateSlidingWindow, rule, calls);
    const perWindow = new Map<number, number>();
    outcomes.forEach((o, i) => {
      if (!o.allowed) return;
      const start = calls[i]!.at - (calls[i]!.at % minute);
      perWindow.set(start, (perWindow.get(start) ?? 0) + 1);
    });
    for (const count of perWindow.values()) expect(count).toBeLessThanOrEqual(10);
  });

  it("forgets counts older than two periods", () => {
    const state: WindowState = {
      algorithm: "sliding_window",
      periodMs: minute,
      windowStartMs: T0 - 2 * minute,
      count: 10,
      previousCount: 10,
    };
    expect(evaluateSlidingWindow(rule, state, T0, 10).allowed).toBe(true);
  });

  it("stays exact for the largest allowed limit and period", () => {
    const big: Rule = { name: "y", algorithm: "sliding_window", limit: 24_000_000, periodMs: 366 * 24 * 3_600_000 };
    const state: WindowState = {
      algorithm: "sliding_window",
      periodMs: big.periodMs,
      windowStartMs: 0,
      count: 24_000_000,
      previousCount: 0,
    };
    const outcome = evaluateSlidingWindow(big, state, big.periodMs + big.periodMs / 2, 12_000_000);
    expect(outcome.allowed).toBe(true);
    expect(outcome.remaining).toBe(0);
  });
});
