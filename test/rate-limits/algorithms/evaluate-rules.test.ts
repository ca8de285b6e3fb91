import { describe, expect, it } from "vitest";
import type { Rule } from "../../../rpc/rate-limits";
import { evaluateRules } from "../../../src/rate-limits/algorithms/evaluate-rules";
import type { LimiterState } from "../../../src/rate-limits/algorithms/rule-state";

const T0 = 1_800_000_000_000 - (1_800_000_000_000 % 3_600_000);
const second: Rule = { name: "second", algorithm: "fixed_window", limit: 2, periodMs: 1_000 };
const hour: Rule = { name: "hour", algorithm: "sliding_window", limit: 100, periodMs: 3_600_000 };

function apply(states: Map<string, LimiterState>, writes: ReturnType<typeof evaluateRules>["writes"]) {
  for (const [name, { state }] of writes) states.set(name, state);
}

describe("evaluateRules", () => {
  it("charges every rule when all admit", () => {
    const states = new Map<string, LimiterState>();
    const { decision, writes } = evaluateRules([second, hour], states, T0, 1);
    expect(decision.allowed).toBe(true);
    expect([...writes.keys()].sort()).toEqual(["hour", "second"]);
    expect(decision.remaining).toBe(1);
    expect(decision.limit).toBe(2);
  });

  it("charges nothing when one rule denies, and names every rule that denied", () => {
    const states = new Map<string, LimiterState>();
    apply(states, evaluateRules([second, hour], states, T0, 2).writes);
    const { decision, writes } = evaluateRules([second, hour], states, T0 + 10, 1);
    expect(decision.allowed).toBe(false);
    expect(decision.deniedBy).toEqual(["second"]);
    expect(writes.size).toBe(0);
    expect(decision.rules.find((r) => r.name === "hour")!.remaining).toBe(98);
    expect(decision.retryAfterMs).toBe(990);
    expect(decision.headers["Retry-After"]).toBe("1");
  });

  it("reports shadow rules that would deny without denying", () => {
    const strict: Rule = { name: "strict", algorithm: "fixed_window", limit: 1, periodMs: 60_000, shadow: true };
    const states = new Map<string, LimiterState>();
    apply(states, evaluateRules([hour, strict], states, T0, 1).writes);
    const { decision, writes } = evaluateRules([hour, strict], states, T0 + 1, 1);
    expect(decision.allowed).toBe(true);
    expect(decision.deniedBy).toEqual([]);
    expect(decision.rules.find((r) => r.name === "strict")).toMatchObject({ allowed: false, shadow: true });
    expect([...writes.keys()]).toEqual(["hour"]);
    expect(decision.headers["RateLimit-Policy"]).toBe('"hour";q=100;w=3600');
  });

  it("never writes on a peek, and reports what remains before the call", () => {
    const states = new Map<string, LimiterState>();
    const { decision, writes } = evaluateRules([second], states, T0, 1, false);
    expect(writes.size).toBe(0);
    expect(decision.allowed).toBe(true);
    expect(decision.remaining).toBe(2);
  });

  it("writes the IETF and legacy headers", () => {
    const { decision } = evaluateRules([second, hour], new Map(), T0 + 250, 1);
    expect(decision.headers).toEqual({
      "RateLimit-Policy": '"second";q=2;w=1, "hour";q=100;w=3600',
      RateLimit: '"second";r=1;t=1, "hour";r=99;t=7200',
      "X-RateLimit-Limit": "2",
      "X-RateLimit-Remaining": "1",
      "X-RateLimit-Reset": String(Math.ceil((T0 + 1_000) / 1000)),
    });
  });
});
