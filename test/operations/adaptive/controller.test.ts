import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Rule } from "../../../rpc/rate-limits";
import { adjustRules, combineFactors, describeFactors, factorsOf, scaleRule } from "../../../src/operations/adaptive/adjust";
import { AdjustmentsCache } from "../../../src/operations/adaptive/adjustments-cache";
import { type ControllerState, step, type Thresholds } from "../../../src/operations/adaptive/controller";

const POLICY: Thresholds = { tightenAbove: 0.2, relaxBelow: 0.05, dwellMs: 60_000, stages: 3 };
const START: ControllerState = { level: 0, lastChangeAt: null, belowSince: null };
const T0 = 1_800_000_000_000;

/** Feeds readings (one per `everyMs`) through `step`; returns every state and the changes. */
function run(readings: (number | null)[], everyMs = 15_000, policy = POLICY) {
  let state = START;
  const changes: { at: number; from: number; to: number }[] = [];
  const levels: number[] = [];
  readings.forEach((value, i) => {
    const at = T0 + i * everyMs;
    const next = step(policy, state, value, at);
    if (next.change) changes.push({ at, from: next.change.from, to: next.change.to });
    state = next.state;
    levels.push(state.level);
  });
  return { state, changes, levels };
}

describe("the adaptive controller", () => {
  it("tightens at the first reading above tightenAbove, adds a stage only after the dwell, and stops at the last stage", () => {
    const { levels, changes } = run(Array(20).fill(0.5));
    // Every 15 s with a 60 s dwell: level 1 at once, 2 after 4 readings, 3 after 8, then stays.
    expect(levels.slice(0, 10)).toEqual([1, 1, 1, 1, 2, 2, 2, 2, 3, 3]);
    expect(changes.map((c) => c.to)).toEqual([1, 2, 3]);
    expect(levels.at(-1)).toBe(3);
  });

  it("relaxes one stage per dwell once readings stay below relaxBelow for the dwell; a reading in between restarts the quiet run", () => {
    const storm = Array(9).fill(0.5); // reaches level 3
    const quiet = Array(14).fill(0.01);
    const { changes } = run([...storm, ...quiet]);
    const relaxes = changes.filter((c) => c.to < c.from);
    expect(relaxes.map((c) => c.to)).toEqual([2, 1, 0]);
    // The first relax needs 60 s of quiet readings: the quiet run starts at reading 9.
    expect(relaxes[0]!.at - (T0 + 9 * 15_000)).toBe(60_000);
    expect(relaxes[1]!.at - relaxes[0]!.at).toBe(60_000);

    const interrupted = run([...storm, 0.01, 0.01, 0.01, 0.1, 0.01, 0.01, 0.01, 0.01, 0.01]);
    // 0.1 is between the thresholds: the quiet run restarts after it, so 5 more quiet readings (60 s) are needed.
    expect(interrupted.changes.filter((c) => c.to < c.from)).toEqual([{ at: T0 + 17 * 15_000, from: 3, to: 2 }]);
  });

  it("treats no data as quiet", () => {
    const { changes } = run([0.5, null, null, null, null, null]);
    expect(changes.map((c) => c.to)).toEqual([1, 0]);
  });

  it("never changes level while the signal stays between relaxBelow and tightenAbove, whatever the level", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 3 }),
        fc.array(fc.double({ min: 0.05, max: 0.2, noNaN: true }), { minLength: 1, maxLength: 80 }),
        fc.integer({ min: 1_000, max: 120_000 }),
        (level, readings, everyMs) => {
          let state: ControllerState = { level, lastChangeAt: T0 - 1, belowSince: null };
          readings.forEach((value, i) => {
            const next = step(POLICY, state, value, T0 + i * everyMs);
            expect(next.change).toBeUndefined();
            state = next.state;
          });
          expect(state.level).toBe(level);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("whatever the readings, two level changes are never closer than the dwell (no flapping)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.constant(null), fc.double({ min: 0, max: 1, noNaN: true })), { minLength: 1, maxLength: 120 }),
        fc.integer({ min: 1_000, max: 60_000 }),
        (readings, everyMs) => {
          const { changes } = run(readings, everyMs);
          for (let i = 1; i < changes.length; i += 1) expect(changes[i]!.at - changes[i - 1]!.at).toBeGreaterThanOrEqual(POLICY.dwellMs);
          for (const change of changes) expect(Math.abs(change.to - change.from)).toBe(1);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("decides nothing new when the same reading is evaluated twice at the same instant", () => {
    for (const value of [0.5, 0.01, 0.1, null]) {
      for (const state of [START, { level: 2, lastChangeAt: T0 - 120_000, belowSince: T0 - 90_000 }]) {
        const first = step(POLICY, state, value, T0);
        const second = step(POLICY, first.state, value, T0);
        expect(second.change).toBeUndefined();
        expect(second.state).toEqual(first.state);
      }
    }
  });
});

describe("adaptive factors", () => {
  const policies = new Map<string, Rule[]>([
    [
      "anon",
      [
        { name: "minute", algorithm: "sliding_window", limit: 100, periodMs: 60_000 },
        { name: "burst", algorithm: "token_bucket", limit: 10, burst: 30, periodMs: 1_000 },
      ],
    ],
    ["paid", [{ name: "second", algorithm: "fixed_window", limit: 20, periodMs: 1_000 }]],
  ]);
  const stages = [
    { policy: "anon", factor: 0.5 },
    { policy: "anon", rules: ["minute"], factor: 0.5 },
    { policy: "paid", factor: 0.8 },
  ];

  it("applies stages cumulatively: a rule named by two applied stages gets the product", () => {
    expect(factorsOf({ stages, level: 0 }, policies).size).toBe(0);
    const two = factorsOf({ stages, level: 2 }, policies);
    expect(Object.fromEntries(two.get("anon")!)).toEqual({ minute: 0.25, burst: 0.5 });
    expect(two.has("paid")).toBe(false);
  });

  it("across policies, the tightest factor wins rather than compounding", () => {
    const combined = combineFactors(
      [
        { stages, level: 3 },
        { stages: [{ policy: "paid", factor: 0.5 }], level: 1 },
      ],
      policies,
    );
    expect(combined.factors).toEqual({ anon: { minute: 0.25, burst: 0.5 }, paid: { second: 0.5 } });
    expect(describeFactors(combined, policies)).toEqual([
      { policy: "anon", rule: "minute", factor: 0.25, limit: 100, adjustedLimit: 25 },
      { policy: "anon", rule: "burst", factor: 0.5, limit: 10, adjustedLimit: 5, burst: 30, adjustedBurst: 15 },
      { policy: "paid", rule: "second", factor: 0.5, limit: 20, adjustedLimit: 10 },
    ]);
  });

  it("scales limit and burst down, never below 1, and leaves other policies and rules alone", () => {
    const rule: Rule = { name: "r", algorithm: "gcra", limit: 100, burst: 7, periodMs: 1_000 };
    expect(scaleRule(rule, 0.29)).toEqual({ ...rule, limit: 29, burst: 2 });
    expect(scaleRule(rule, 0.001)).toEqual({ ...rule, limit: 1, burst: 1 });
    const factors = { factors: { anon: { minute: 0.1 } } };
    expect(adjustRules("paid", policies.get("paid")!, factors)).toBe(policies.get("paid"));
    expect(adjustRules("anon", policies.get("anon")!, factors)).toEqual([
      { ...policies.get("anon")![0]!, limit: 10 },
      policies.get("anon")![1],
    ]);
  });
});

describe("the per-isolate factor cache", () => {
  it("fetches when empty, serves its copy while fresh, refreshes in the background when stale, and waits again when too old", async () => {
    const cache = new AdjustmentsCache(5_000, 30_000);
    let served = 0;
    const fetch = async () => ({ factors: { p: { r: 1 / ++served } } });
    expect(await cache.get(fetch, T0)).toEqual({ factors: { p: { r: 1 } } });
    expect(await cache.get(fetch, T0 + 4_999)).toEqual({ factors: { p: { r: 1 } } });
    expect(served).toBe(1);
    // Stale: answers with the copy at once and refreshes behind it.
    expect(await cache.get(fetch, T0 + 5_000)).toEqual({ factors: { p: { r: 1 } } });
    expect(served).toBe(2);
    expect(await cache.get(fetch, T0 + 5_001)).toEqual({ factors: { p: { r: 0.5 } } });
    // Too old (an idle isolate): waits for a fresh copy.
    expect(await cache.get(fetch, T0 + 60_000)).toEqual({ factors: { p: { r: 1 / 3 } } });
  });

  it("falls back to no adjustment when the controller cannot be read and nothing is known, and keeps a known copy otherwise", async () => {
    const cache = new AdjustmentsCache(5_000, 30_000);
    const failing = async () => {
      throw new Error("down");
    };
    expect(await cache.get(failing, T0)).toEqual({ factors: {} });
    cache.forget();
    await cache.get(async () => ({ factors: { p: { r: 0.5 } } }), T0);
    expect(await cache.get(failing, T0 + 40_000)).toEqual({ factors: { p: { r: 0.5 } } });
  });
});
