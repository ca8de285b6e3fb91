import { describe, expect, it } from "vitest";
import type { AlertRule } from "../../../rpc/alerts";
import { nextState } from "../../../src/operations/alerts/crossing";

const balance: AlertRule = { kind: "balance_below", ruleId: "b", accountId: "a", level: 100 };
const rate: AlertRule = { kind: "denial_rate", ruleId: "d", subject: "s", windowMs: 60_000, threshold: 0.5, minRequests: 1 };

describe("the crossing rule", () => {
  it("fires a below-rule under its level and an above-rule at its threshold, and never on no data", () => {
    expect(nextState(balance, "ok", 99)).toEqual({ state: "firing", transition: "fire" });
    expect(nextState(balance, "ok", 100)).toEqual({ state: "ok", transition: "none" });
    expect(nextState(rate, "ok", 0.5)).toEqual({ state: "firing", transition: "fire" });
    expect(nextState(rate, "ok", 0.49)).toEqual({ state: "ok", transition: "none" });
    expect(nextState(rate, "ok", null)).toEqual({ state: "ok", transition: "none" });
    // A cost rule without a threshold and without a budget has no trigger.
    expect(nextState({ kind: "cost_projection", ruleId: "c" }, "ok", 1e6)).toEqual({ state: "ok", transition: "none" });
  });

  it("stays FIRING silently while past the trigger, and recovers on the safe side of recoverAt", () => {
    expect(nextState(rate, "firing", 0.9)).toEqual({ state: "firing", transition: "none" });
    expect(nextState(rate, "firing", 0.49)).toEqual({ state: "ok", transition: "resolve" });
    expect(nextState(rate, "firing", null)).toEqual({ state: "ok", transition: "resolve" });
    const sticky: AlertRule = { ...rate, recoverAt: 0.3 };
    expect(nextState(sticky, "firing", 0.4)).toEqual({ state: "firing", transition: "none" });
    expect(nextState(sticky, "firing", 0.29)).toEqual({ state: "ok", transition: "resolve" });
    const stickyBalance: AlertRule = { ...balance, recoverAt: 150 };
    expect(nextState(stickyBalance, "firing", 120)).toEqual({ state: "firing", transition: "none" });
    expect(nextState(stickyBalance, "firing", 150)).toEqual({ state: "ok", transition: "resolve" });
  });

  it("with hysteresis, a value hovering around the threshold crosses once, not on every evaluation", () => {
    const sticky: AlertRule = { ...rate, recoverAt: 0.3 };
    let state: "ok" | "firing" = "ok";
    let fired = 0;
    for (const value of [0.49, 0.51, 0.48, 0.52, 0.47, 0.5, 0.45, 0.55]) {
      const step = nextState(sticky, state, value);
      if (step.transition === "fire") fired += 1;
      state = step.state;
    }
    expect(fired).toBe(1);
    let plainState: "ok" | "firing" = "ok";
    let plainFired = 0;
    for (const value of [0.49, 0.51, 0.48, 0.52, 0.47, 0.5, 0.45, 0.55]) {
      const step = nextState(rate, plainState, value);
      if (step.transition === "fire") plainFired += 1;
      plainState = step.state;
    }
    expect(plainFired).toBe(4);
  });
});
