import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Algorithm, Rule } from "../../../rpc/rate-limits";
import { evaluateRule, refundRule } from "../../../src/rate-limits/algorithms/evaluate-rules";
import type { LimiterState } from "../../../src/rate-limits/algorithms/rule-state";

/**
 * A rule's limit can change between two calls while its state is kept: adaptive limits scale
 * it down and back up (docs/adaptive-limits.md), and an operator can edit a policy. The state
 * is stored per rule name, never reset by such a change, and every algorithm must keep its
 * answers sane: no throw, never a negative remaining, a wait when denied.
 */
const T0 = 1_800_000_000_000;
const ALGORITHMS: Algorithm[] = ["fixed_window", "sliding_window", "sliding_log", "token_bucket", "gcra"];
const rule = (algorithm: Algorithm, limit: number, periodMs = 60_000): Rule => ({ name: "r", algorithm, limit, periodMs });

/** Charges `n` calls of cost 1 one millisecond apart from T0; returns the state. */
function charge(r: Rule, n: number): LimiterState | undefined {
  let state: LimiterState | undefined;
  for (let i = 0; i < n; i += 1) {
    const outcome = evaluateRule(r, state, T0 + i, 1);
    expect(outcome.allowed).toBe(true);
    state = outcome.charged;
  }
  return state;
}

describe("a rule's limit changing mid-window", () => {
  it.each(ALGORITHMS.filter((a) => a !== "token_bucket"))(
    "%s: after 8 of 10 units, a limit shrunk to 4 denies with 0 remaining and a wait; the units still count when it grows back",
    (algorithm) => {
      const state = charge(rule(algorithm, 10), 8);
      const at = T0 + 100;
      const shrunk = evaluateRule(rule(algorithm, 4), state, at, 1);
      expect(shrunk.allowed).toBe(false);
      expect(shrunk.remaining).toBe(0);
      expect(shrunk.retryAfterMs).toBeGreaterThan(0);
      // Back to 10: the 8 units taken are still there (no reset), so 2 remain before this call.
      const restored = evaluateRule(rule(algorithm, 10), state, at, 1);
      expect(restored.allowed).toBe(true);
      expect(restored.remaining).toBe(1);
      // Grown past the original: the same state leaves more room, never less.
      const grown = evaluateRule(rule(algorithm, 20), state, at, 1);
      expect(grown.allowed).toBe(true);
      expect(grown.remaining).toBeGreaterThanOrEqual(11);
    },
  );

  it("token_bucket: the tokens left are kept, capped at the new bucket size, never refilled by the change", () => {
    const state = charge(rule("token_bucket", 10), 8);
    const at = T0 + 100;
    // 2 tokens left; a bucket of 4 still holds those 2 (not a fresh 4).
    const shrunk = evaluateRule(rule("token_bucket", 4), state, at, 1);
    expect(shrunk).toMatchObject({ allowed: true, remaining: 1 });
    // A bucket of 1 cannot hold 2: it holds 1.
    expect(evaluateRule(rule("token_bucket", 1), state, at, 1)).toMatchObject({ allowed: true, remaining: 0 });
    // Drained, shrunk: denied with a wait; grown: still drained until the next refill.
    const drained = charge(rule("token_bucket", 10), 10);
    const denied = evaluateRule(rule("token_bucket", 4), drained, at, 1);
    expect(denied).toMatchObject({ allowed: false, remaining: 0 });
    expect(denied.retryAfterMs).toBeGreaterThan(0);
    expect(evaluateRule(rule("token_bucket", 20), drained, at, 1)).toMatchObject({ allowed: false, remaining: 0 });
    // The refill after a period adds the new limit.
    expect(evaluateRule(rule("token_bucket", 4), drained, T0 + 60_000, 1)).toMatchObject({ allowed: true, remaining: 3 });
  });

  it.each(ALGORITHMS)("%s: a refund under a shrunk limit gives back what was taken, never more", (algorithm) => {
    const state = charge(rule(algorithm, 10), 8);
    const refund = refundRule(rule(algorithm, 4), state, T0 + 100, 20);
    expect(refund.refunded).toBeGreaterThanOrEqual(0);
    expect(refund.refunded).toBeLessThanOrEqual(8);
  });

  it("any sequence of calls with the limit changing between them: no throw, remaining within 0..limit, a wait exactly when denied", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...ALGORITHMS),
        fc.constantFrom(1_000, 60_000),
        fc.array(
          fc.record({
            gap: fc.integer({ min: 0, max: 30_000 }),
            limit: fc.integer({ min: 1, max: 30 }),
            cost: fc.integer({ min: 1, max: 5 }),
          }),
          { minLength: 1, maxLength: 60 },
        ),
        (algorithm, periodMs, calls) => {
          let state: LimiterState | undefined;
          let at = T0;
          for (const call of calls) {
            at += call.gap;
            const r = rule(algorithm, call.limit, periodMs);
            const outcome = evaluateRule(r, state, at, call.cost);
            expect(outcome.remaining).toBeGreaterThanOrEqual(0);
            expect(outcome.remaining).toBeLessThanOrEqual(call.limit);
            expect(Number.isSafeInteger(outcome.remaining)).toBe(true);
            if (outcome.allowed) {
              expect(outcome.retryAfterMs).toBe(0);
              state = outcome.charged;
            } else {
              expect(outcome.retryAfterMs).toBeGreaterThan(0);
            }
            const peek = evaluateRule(r, state, at, 0);
            expect(peek.remaining).toBeGreaterThanOrEqual(0);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
