import { describe, expect, it } from "vitest";
import type { Rule } from "../../../rpc/rate-limits";
import { evaluateRules } from "../../../src/rate-limits/algorithms/evaluate-rules";

const T0 = 1_800_000_000_000;
const strict: Rule = { name: "strict", algorithm: "fixed_window", limit: 1, periodMs: 1_000, blockMs: 60_000 };

describe("blocks in evaluateRules", () => {
  it("starts a block when a rule with blockMs denies a charged call, for the longest blockMs", () => {
    const longer: Rule = { name: "longer", algorithm: "gcra", limit: 1, periodMs: 1_000, blockMs: 90_000 };
    const { decision, newBlock } = evaluateRules([strict, longer], new Map(), T0, 2);
    expect(newBlock).toEqual({ untilMs: T0 + 90_000, reason: 'rule "longer" was exceeded', rule: "longer" });
    expect(decision).toMatchObject({ allowed: false, retryAfterMs: 90_000, blocked: newBlock });
  });

  it("denies while blocked and admits from the block's end, with an injected clock", () => {
    const block = { untilMs: T0 + 5_000, reason: "by hand" };
    const loose: Rule = { name: "loose", algorithm: "fixed_window", limit: 10, periodMs: 1_000 };
    const during = evaluateRules([loose], new Map(), T0 + 4_999, 1, true, { block });
    expect(during).toMatchObject({ decision: { allowed: false, retryAfterMs: 1, deniedBy: [], blocked: block } });
    expect(during.writes.size).toBe(0);
    expect(during.decision.headers["Retry-After"]).toBe("1");
    const after = evaluateRules([loose], new Map(), T0 + 5_000, 1, true, { block });
    expect(after.decision).toMatchObject({ allowed: true, remaining: 9 });
    expect(after.decision.blocked).toBeUndefined();
  });

  it("neither starts a block nor counts shadow denials on a peek", () => {
    const shadow: Rule = { name: "shadow", algorithm: "fixed_window", limit: 1, periodMs: 1_000, shadow: true };
    const peek = evaluateRules([strict, shadow], new Map(), T0, 2, false);
    expect(peek.newBlock).toBeUndefined();
    expect(peek.shadowDenials).toEqual([]);
    const charged = evaluateRules([{ ...strict, limit: 5 }, shadow], new Map(), T0, 2);
    expect(charged.shadowDenials).toEqual(["shadow"]);
  });
});
