import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Algorithm, Rule } from "../../../rpc/rate-limits";
import { evaluateRule, evaluateRules, refundRule } from "../../../src/rate-limits/algorithms/evaluate-rules";
import type { LimiterState } from "../../../src/rate-limits/algorithms/rule-state";

/**
 * Property tests: each algorithm against a simple reference model, with the clock injected
 * (every call carries its own time). Sizes are small so failures shrink to readable cases.
 */
const RUNS = { numRuns: 300 };
const T0 = 1_800_000_000_000;

interface Call {
  at: number;
  cost: number;
}

/** Non-decreasing call times, clustered enough to hit limits and spread enough to cross periods. */
const callsFor = (periodMs: number, maxCost = 4) =>
  fc
    .tuple(
      fc.integer({ min: 0, max: periodMs - 1 }),
      fc.array(
        fc.record({
          gap: fc.oneof(
            fc.constant(0),
            fc.integer({ min: 0, max: Math.max(1, Math.floor(periodMs / 8)) }),
            fc.integer({ min: 0, max: 2 * periodMs }),
          ),
          cost: fc.integer({ min: 1, max: maxCost }),
        }),
        { minLength: 1, maxLength: 60 },
      ),
    )
    .map(([offset, steps]) => {
      let at = T0 + offset;
      return steps.map(({ gap, cost }) => ({ at: (at += gap), cost }));
    });

const periods = fc.constantFrom(1, 7, 1_000, 3_000, 60_000);
const limits = fc.integer({ min: 1, max: 12 });
const bursts = fc.integer({ min: 1, max: 15 });

/** A rule's parameters and a run of calls sized to its period, shrinking together. */
const withCalls = <P extends object>(params: fc.Arbitrary<P>, periodOf: (p: P) => number) =>
  params.chain((p) => fc.tuple(fc.constant(p), callsFor(periodOf(p))));

/** Feeds calls through one rule, storing the state an admitted call leaves. */
function simulate(rule: Rule, calls: Call[]) {
  let state: LimiterState | undefined;
  return calls.map((call) => {
    const before = state;
    const outcome = evaluateRule(rule, state, call.at, call.cost);
    if (outcome.allowed) state = outcome.charged;
    return { call, outcome, before };
  });
}

/** The most units admitted within any half-open interval (t - span, t]. */
function maxInSpan(admitted: Call[], span: number): number {
  let most = 0;
  for (const end of admitted) {
    let sum = 0;
    for (const call of admitted) if (call.at > end.at - span && call.at <= end.at) sum += call.cost;
    most = Math.max(most, sum);
  }
  return most;
}

describe("fixed_window against a per-window counter", () => {
  it("makes the same decisions and never admits more than limit in a window", () => {
    fc.assert(
      fc.property(
        withCalls(fc.record({ limit: limits, periodMs: periods }), (p) => p.periodMs),
        ([{ limit, periodMs }, calls]) => {
          const rule: Rule = { name: "r", algorithm: "fixed_window", limit, periodMs };
          const counts = new Map<number, number>();
          for (const { call, outcome } of simulate(rule, calls)) {
            const window = Math.floor(call.at / periodMs);
            const used = counts.get(window) ?? 0;
            const expected = used + call.cost <= limit;
            expect(outcome.allowed).toBe(expected);
            if (expected) counts.set(window, used + call.cost);
            expect(counts.get(window) ?? 0).toBeLessThanOrEqual(limit);
          }
        },
      ),
      RUNS,
    );
  });
});

describe("sliding_log against a list of admitted calls", () => {
  it("makes the same decisions, so no interval of periodMs ever holds more than limit", () => {
    fc.assert(
      fc.property(
        withCalls(fc.record({ limit: limits, periodMs: periods }), (p) => p.periodMs),
        ([{ limit, periodMs }, calls]) => {
          const rule: Rule = { name: "r", algorithm: "sliding_log", limit, periodMs };
          const admitted: Call[] = [];
          for (const { call, outcome } of simulate(rule, calls)) {
            const used = admitted.filter((a) => a.at > call.at - periodMs).reduce((s, a) => s + a.cost, 0);
            expect(outcome.allowed).toBe(used + call.cost <= limit);
            if (outcome.allowed) admitted.push(call);
          }
          expect(maxInSpan(admitted, periodMs)).toBeLessThanOrEqual(limit);
        },
      ),
      RUNS,
    );
  });

  it("tells the exact wait: admitted at retryAfterMs, denied 1 ms before", () => {
    fc.assert(
      fc.property(
        withCalls(fc.record({ limit: limits, periodMs: periods }), (p) => p.periodMs),
        ([{ limit, periodMs }, calls]) => {
          const rule: Rule = { name: "r", algorithm: "sliding_log", limit, periodMs };
          for (const { call, outcome, before } of simulate(rule, calls)) {
            if (outcome.allowed || call.cost > limit) continue;
            expect(evaluateRule(rule, before, call.at + outcome.retryAfterMs, call.cost).allowed).toBe(true);
            expect(evaluateRule(rule, before, call.at + outcome.retryAfterMs - 1, call.cost).allowed).toBe(false);
          }
        },
      ),
      RUNS,
    );
  });
});

describe("sliding_window (approximate)", () => {
  it("never admits more than limit in an aligned window, nor more than 2 x limit in any period (the documented bound)", () => {
    fc.assert(
      fc.property(
        withCalls(fc.record({ limit: limits, periodMs: periods }), (p) => p.periodMs),
        ([{ limit, periodMs }, calls]) => {
          const rule: Rule = { name: "r", algorithm: "sliding_window", limit, periodMs };
          const results = simulate(rule, calls);
          const admitted = results.filter((r) => r.outcome.allowed).map((r) => r.call);
          const perWindow = new Map<number, number>();
          for (const call of admitted) {
            const window = Math.floor(call.at / periodMs);
            perWindow.set(window, (perWindow.get(window) ?? 0) + call.cost);
          }
          for (const count of perWindow.values()) expect(count).toBeLessThanOrEqual(limit);
          expect(maxInSpan(admitted, periodMs)).toBeLessThanOrEqual(2 * limit);
        },
      ),
      RUNS,
    );
  });

  it("admits whenever the true trailing count leaves room, if the previous window was empty", () => {
    fc.assert(
      fc.property(
        withCalls(fc.record({ limit: limits, periodMs: periods }), (p) => p.periodMs),
        ([{ limit, periodMs }, calls]) => {
          const rule: Rule = { name: "r", algorithm: "sliding_window", limit, periodMs };
          const admitted: Call[] = [];
          for (const { call, outcome } of simulate(rule, calls)) {
            const start = call.at - (call.at % periodMs);
            const previousEmpty = !admitted.some((a) => a.at >= start - periodMs && a.at < start);
            const inWindow = admitted.filter((a) => a.at >= start).reduce((s, a) => s + a.cost, 0);
            if (previousEmpty) expect(outcome.allowed).toBe(inWindow + call.cost <= limit);
            if (outcome.allowed) admitted.push(call);
          }
        },
      ),
      RUNS,
    );
  });
});

/** The classic GCRA: an absolute theoretical arrival time, as an exact rational (ms x limit). */
function referenceGcra(limit: number, periodMs: number, burst: number) {
  let tat = 0n; // ms x limit
  return (at: number, cost: number) => {
    const now = BigInt(at) * BigInt(limit);
    const base = tat > now ? tat : now;
    const next = base + BigInt(cost) * BigInt(periodMs);
    const allowed = next - now <= BigInt(burst) * BigInt(periodMs);
    if (allowed) tat = next;
    return allowed;
  };
}

/** A token bucket refilled one cycle at a time, the slow obvious way. */
function referenceBucket(limit: number, periodMs: number, burst: number) {
  let tokens = burst;
  let cycleStart = 0;
  return (at: number, cost: number) => {
    if (tokens === burst) cycleStart = at;
    while (tokens < burst && cycleStart + periodMs <= at) {
      tokens = Math.min(burst, tokens + limit);
      cycleStart += periodMs;
      if (tokens === burst) cycleStart = at;
    }
    const allowed = cost <= tokens;
    if (allowed) {
      if (tokens === burst) cycleStart = at;
      tokens -= cost;
    }
    return allowed;
  };
}

describe("gcra", () => {
  it("makes the same decisions as the classic rational-TAT model, and admits at most burst + elapsed x rate", () => {
    fc.assert(
      fc.property(
        withCalls(fc.record({ limit: limits, periodMs: periods, burst: bursts }), (p) => p.periodMs),
        ([{ limit, periodMs, burst }, calls]) => {
          const rule: Rule = { name: "r", algorithm: "gcra", limit, periodMs, burst };
          const reference = referenceGcra(limit, periodMs, burst);
          const results = simulate(rule, calls);
          for (const { call, outcome } of results) expect(outcome.allowed).toBe(reference(call.at, call.cost));
          const admitted = results.filter((r) => r.outcome.allowed).map((r) => r.call);
          for (const a of admitted) {
            const units = admitted.filter((b) => b.at >= a.at).reduce((s, b) => s + b.cost, 0);
            const span = admitted.at(-1)!.at - a.at;
            expect(units * periodMs).toBeLessThanOrEqual(burst * periodMs + span * limit);
          }
        },
      ),
      RUNS,
    );
  });

  it("tells the exact wait: admitted at retryAfterMs, denied 1 ms before", () => {
    fc.assert(
      fc.property(
        withCalls(fc.record({ limit: limits, periodMs: periods, burst: bursts }), (p) => p.periodMs),
        ([{ limit, periodMs, burst }, calls]) => {
          const rule: Rule = { name: "r", algorithm: "gcra", limit, periodMs, burst };
          for (const { call, outcome, before } of simulate(rule, calls)) {
            if (outcome.allowed || call.cost > burst) continue;
            expect(evaluateRule(rule, before, call.at + outcome.retryAfterMs, call.cost).allowed).toBe(true);
            expect(evaluateRule(rule, before, call.at + outcome.retryAfterMs - 1, call.cost).allowed).toBe(false);
          }
        },
      ),
      RUNS,
    );
  });
});

describe("token_bucket", () => {
  it("makes the same decisions as a bucket refilled cycle by cycle, and admits at most burst + limit per refill", () => {
    fc.assert(
      fc.property(
        withCalls(fc.record({ limit: limits, periodMs: periods, burst: bursts }), (p) => p.periodMs),
        ([{ limit, periodMs, burst }, calls]) => {
          const rule: Rule = { name: "r", algorithm: "token_bucket", limit, periodMs, burst };
          const reference = referenceBucket(limit, periodMs, burst);
          const results = simulate(rule, calls);
          for (const { call, outcome } of results) expect(outcome.allowed).toBe(reference(call.at, call.cost));
          const admitted = results.filter((r) => r.outcome.allowed).map((r) => r.call);
          for (const a of admitted) {
            const units = admitted.filter((b) => b.at >= a.at).reduce((s, b) => s + b.cost, 0);
            const refills = Math.floor((admitted.at(-1)!.at - a.at) / periodMs) + 1;
            expect(units).toBeLessThanOrEqual(burst + limit * refills);
          }
        },
      ),
      RUNS,
    );
  });

  it("agrees with gcra on equivalent settings: one token every periodMs / limit, same burst", () => {
    fc.assert(
      fc.property(
        withCalls(fc.record({ limit: limits, interval: fc.integer({ min: 1, max: 500 }), burst: bursts }), (p) => p.limit * p.interval),
        ([{ limit, interval, burst }, calls]) => {
          const periodMs = limit * interval;
          const gcra: Rule = { name: "g", algorithm: "gcra", limit, periodMs, burst };
          const bucket: Rule = { name: "b", algorithm: "token_bucket", limit: 1, periodMs: interval, burst };
          const a = simulate(gcra, calls);
          const b = simulate(bucket, calls);
          a.forEach(({ outcome }, i) => {
            const other = b[i]!.outcome;
            expect([outcome.allowed, outcome.remaining, outcome.retryAfterMs, outcome.resetAt]).toEqual([
              other.allowed,
              other.remaining,
              other.retryAfterMs,
              other.resetAt,
            ]);
          });
        },
      ),
      RUNS,
    );
  });
});

const algorithms: Algorithm[] = ["fixed_window", "sliding_window", "sliding_log", "token_bucket", "gcra"];

describe("countDenied", () => {
  it("keeps every bound: denied calls are charged, but never push a rule beyond full or admit more", () => {
    fc.assert(
      fc.property(
        withCalls(fc.record({ algorithm: fc.constantFrom(...algorithms), limit: limits, periodMs: periods }), (p) => p.periodMs),
        ([{ algorithm, limit, periodMs }, calls]) => {
          const rule: Rule = { name: "r", algorithm, limit, periodMs, countDenied: true };
          const states = new Map<string, LimiterState>();
          const admitted: Call[] = [];
          for (const call of calls) {
            const { decision, writes } = evaluateRules([rule], states, call.at, call.cost);
            for (const [name, { state }] of writes) states.set(name, state);
            if (decision.allowed) admitted.push(call);
            else expect(writes.has("r")).toBe(true);
            const remaining = evaluateRule(rule, states.get("r"), call.at, 0).remaining;
            expect(remaining).toBeGreaterThanOrEqual(0);
            expect(remaining).toBeLessThanOrEqual(limit);
          }
          if (algorithm === "sliding_log") expect(maxInSpan(admitted, periodMs)).toBeLessThanOrEqual(limit);
          if (algorithm === "sliding_window") expect(maxInSpan(admitted, periodMs)).toBeLessThanOrEqual(2 * limit);
          if (algorithm === "gcra") {
            for (const a of admitted) {
              const units = admitted.filter((b) => b.at >= a.at).reduce((sum, b) => sum + b.cost, 0);
              expect(units * periodMs).toBeLessThanOrEqual(limit * periodMs + (admitted.at(-1)!.at - a.at) * limit);
            }
          }
        },
      ),
      RUNS,
    );
  });
});

describe("refunds", () => {
  it("never give back more than was taken, nor raise remaining above the rule's capacity", () => {
    fc.assert(
      fc.property(
        withCalls(fc.record({ algorithm: fc.constantFrom(...algorithms), limit: limits, periodMs: periods }), (p) => p.periodMs),
        fc.array(fc.boolean(), { minLength: 60, maxLength: 60 }),
        ([{ algorithm, limit, periodMs }, calls], isRefund) => {
          const rule: Rule = { name: "r", algorithm, limit, periodMs };
          let state: LimiterState | undefined;
          let taken = 0;
          let given = 0;
          calls.forEach((call, i) => {
            if (isRefund[i]) {
              const refund = refundRule(rule, state, call.at, call.cost);
              expect(refund.refunded).toBeGreaterThanOrEqual(0);
              expect(refund.refunded).toBeLessThanOrEqual(call.cost);
              given += refund.refunded;
              if (refund.refunded > 0) state = refund.state;
            } else {
              const outcome = evaluateRule(rule, state, call.at, call.cost);
              if (outcome.allowed) {
                state = outcome.charged;
                taken += call.cost;
              }
            }
            expect(given).toBeLessThanOrEqual(taken);
            expect(evaluateRule(rule, state, call.at, 0).remaining).toBeLessThanOrEqual(limit);
          });
        },
      ),
      RUNS,
    );
  });
});

describe("evaluateRules with mixed algorithms", () => {
  it("charges every rule or none, and names exactly the enforced rules that denied", () => {
    const ruleArb = fc.record({
      algorithm: fc.constantFrom(...algorithms),
      limit: fc.integer({ min: 1, max: 6 }),
      periodMs: periods,
      shadow: fc.boolean(),
    });
    fc.assert(
      fc.property(fc.array(ruleArb, { minLength: 1, maxLength: 5 }), callsFor(1_000, 3), (specs, calls) => {
        const rules: Rule[] = specs.map((spec, i) => ({ name: `r${i}`, ...spec }));
        const states = new Map<string, LimiterState>();
        for (const call of calls) {
          const { decision, writes } = evaluateRules(rules, states, call.at, call.cost);
          const denying = rules.filter((rule) => !rule.shadow && !evaluateRule(rule, states.get(rule.name), call.at, call.cost).allowed);
          expect(decision.deniedBy).toEqual(denying.map((rule) => rule.name));
          expect(decision.allowed).toBe(denying.length === 0);
          if (!decision.allowed) expect(writes.size).toBe(0);
          else for (const rule of rules.filter((r) => !r.shadow)) expect(writes.has(rule.name)).toBe(true);
          for (const [name, { state }] of writes) states.set(name, state);
        }
      }),
      RUNS,
    );
  });
});
