import { describe, expect, it } from "vitest";
import type { LimiterState } from "../../../src/rate-limits/algorithms/rule-state";
import { decodeRuleState, decodeRuleStates, encodeRuleState, encodeRuleStates } from "../../../src/rate-limits/algorithms/rule-state-codec";
import { errorCodeOf } from "../../../src/platform/errors";

const STATES: LimiterState[] = [
  { algorithm: "fixed_window", periodMs: 60_000, windowStartMs: 1_700_000_040_000, count: 3, previousCount: 0 },
  { algorithm: "sliding_window", periodMs: 60_000, windowStartMs: 1_700_000_040_000, count: 3, previousCount: 9 },
  { algorithm: "sliding_log", periodMs: 1_000, entries: [{ atMs: 1_700_000_000_001, cost: 2 }] },
  { algorithm: "token_bucket", periodMs: 1_000, level: 4, atMs: 1_700_000_000_000 },
  { algorithm: "gcra", periodMs: 1_000, level: 12_000, atMs: 1_700_000_000_000 },
];

describe("the stored form of a rule's state", () => {
  it("round-trips every algorithm's state, and reads what the ledger's key_rule_states already holds", () => {
    for (const state of STATES) {
      expect(decodeRuleState(encodeRuleState(state))).toEqual(state);
      // The ledger has stored JSON.stringify(state) of the same objects all along.
      expect(decodeRuleState(JSON.stringify(state))).toEqual(state);
    }
  });

  it("writes exactly the algorithm's fields, in a fixed order, whatever else the object carries", () => {
    const extra = { algorithm: "gcra", level: 1, atMs: 2, periodMs: 3, note: "x" } as LimiterState;
    expect(encodeRuleState(extra)).toBe('{"algorithm":"gcra","periodMs":3,"level":1,"atMs":2}');
    expect(decodeRuleState('{"algorithm":"gcra","periodMs":3,"level":1,"atMs":2,"note":"x"}')).toEqual({
      algorithm: "gcra",
      periodMs: 3,
      level: 1,
      atMs: 2,
    });
  });

  it("keeps a map of states with their expiries", () => {
    const map = new Map(STATES.map((state, i) => [`r${i}`, { state, expiresAtMs: 1_800_000_000_000 + i }]));
    expect(decodeRuleStates(encodeRuleStates(map))).toEqual(map);
  });

  it("refuses a malformed stored state as INTERNAL", () => {
    for (const bad of [
      '{"algorithm":"leaky","periodMs":1}',
      '{"algorithm":"fixed_window","periodMs":1,"windowStartMs":0,"count":1.5,"previousCount":0}',
      '{"algorithm":"sliding_log","periodMs":1}',
      "[]",
    ]) {
      let code: string | undefined;
      try {
        decodeRuleState(bad);
      } catch (error) {
        code = errorCodeOf(error);
      }
      expect(code, bad).toBe("INTERNAL");
    }
  });
});
