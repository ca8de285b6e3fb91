import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { RateLimitGuard } from "../../rpc/rate-limit-guard";
import type { CheckInput, Decision, Rule } from "../../rpc/rate-limits";
import { errorCodeOf } from "../../rpc/errors";

const YEAR = 366 * 24 * 3_600_000;
const rules: Rule[] = [{ name: "hour", algorithm: "fixed_window", limit: 1, periodMs: YEAR }];

/** A RateLimitsApi stand-in that counts calls and answers what the test says. */
function fakeLimits(answer: (input: CheckInput) => Promise<Decision>) {
  const calls: CheckInput[] = [];
  return {
    calls,
    check(input: CheckInput) {
      calls.push(input);
      return answer(input);
    },
  };
}

function denial(retryAfterMs: number, extra: Partial<Decision> = {}): Decision {
  return {
    allowed: false,
    remaining: 0,
    limit: 1,
    resetAt: 0,
    retryAfterMs,
    deniedBy: ["hour"],
    rules: [],
    headers: { "Retry-After": String(Math.ceil(retryAfterMs / 1000)) },
    ...extra,
  };
}

describe("RateLimitGuard", () => {
  it("answers a denied subject from its cache until retryAt, then asks tollgate again", async () => {
    let now = 1_000_000;
    const limits = fakeLimits(async () => denial(5_000));
    const guard = new RateLimitGuard(limits, { timeoutMs: 1_000, onUnavailable: "fail-closed", now: () => now });
    expect((await guard.check({ subject: "ip:a", rules })).source).toBe("tollgate");
    now += 4_000;
    const cached = await guard.check({ subject: "ip:a", rules });
    expect(cached).toMatchObject({ allowed: false, source: "deny-cache", retryAfterMs: 1_000 });
    expect(cached.headers["Retry-After"]).toBe("1");
    expect(await guard.check({ subject: "ip:a", rules, cost: 3 })).toMatchObject({ source: "deny-cache" });
    expect(limits.calls).toHaveLength(1);

    // A smaller cost, another rule set, another subject: not known to be denied.
    await guard.check({ subject: "ip:a", rules, cost: 0 });
    await guard.check({ subject: "ip:a", policy: "per-ip" });
    await guard.check({ subject: "ip:b", rules });
    expect(limits.calls).toHaveLength(4);

    now += 1_000;
    expect((await guard.check({ subject: "ip:a", rules })).source).toBe("tollgate");
    expect(limits.calls).toHaveLength(5);
  });

  it("answers a blocked subject from its cache whatever rules are asked", async () => {
    let now = 0;
    const limits = fakeLimits(async () => denial(60_000, { deniedBy: [], blocked: { untilMs: 60_000, reason: "abuse" } }));
    const guard = new RateLimitGuard(limits, { timeoutMs: 1_000, onUnavailable: "fail-open", now: () => now });
    await guard.check({ subject: "key:x", rules });
    now = 30_000;
    expect(await guard.check({ subject: "key:x", policy: "per-key", cost: 0 })).toMatchObject({
      source: "deny-cache",
      retryAfterMs: 30_000,
    });
    expect(limits.calls).toHaveLength(1);
    guard.forget("key:x");
    await guard.check({ subject: "key:x", rules });
    expect(limits.calls).toHaveLength(2);
  });

  it("keeps at most maxCachedDenials, forgetting the oldest", async () => {
    const limits = fakeLimits(async () => denial(60_000));
    const guard = new RateLimitGuard(limits, { timeoutMs: 1_000, onUnavailable: "fail-open", maxCachedDenials: 2, now: () => 0 });
    for (const subject of ["a", "b", "c"]) await guard.check({ subject, rules });
    expect(guard.cachedDenials).toBe(2);
    await guard.check({ subject: "a", rules });
    expect(limits.calls).toHaveLength(4);
  });

  it("fails open or closed, as chosen, when tollgate does not answer in time or faults", async () => {
    const hung = fakeLimits(() => new Promise<Decision>(() => {}));
    const errors: unknown[] = [];
    const open = new RateLimitGuard(hung, { timeoutMs: 5, onUnavailable: "fail-open", onError: (e) => errors.push(e) });
    expect(await open.check({ subject: "s", rules })).toMatchObject({ allowed: true, source: "fail-open" });
    expect(errors).toHaveLength(1);

    const faulty = fakeLimits(async () => {
      throw Object.assign(new Error("[INTERNAL] internal error"), { code: "INTERNAL" });
    });
    const closed = new RateLimitGuard(faulty, { timeoutMs: 1_000, onUnavailable: "fail-closed", failClosedRetryAfterMs: 2_500 });
    const decision = await closed.check({ subject: "s", rules });
    expect(decision).toMatchObject({ allowed: false, source: "fail-closed", retryAfterMs: 2_500 });
    expect(decision.headers["Retry-After"]).toBe("3");
    expect(closed.cachedDenials).toBe(0);
  });

  it("passes contract errors to the caller instead of failing open", async () => {
    const guard = new RateLimitGuard(env.LIMITS, { timeoutMs: 5_000, onUnavailable: "fail-open" });
    let code: string | undefined;
    try {
      await guard.check({ subject: "guard:bad", rules, cost: -1 });
    } catch (error) {
      code = errorCodeOf(error);
    }
    expect(code).toBe("INVALID_ARGUMENT");
    expect(() => new RateLimitGuard(env.LIMITS, { timeoutMs: 0, onUnavailable: "fail-open" })).toThrow(RangeError);
    expect(() => new RateLimitGuard(env.LIMITS, { timeoutMs: 10, onUnavailable: "maybe" as never })).toThrow(RangeError);
  });

  it("works over a real service binding: one round trip for the denial, none for the cached repeats", async () => {
    const subject = "guard:real";
    const guard = new RateLimitGuard(env.LIMITS, { timeoutMs: 5_000, onUnavailable: "fail-closed" });
    expect(await guard.check({ subject, rules })).toMatchObject({ allowed: true, source: "tollgate" });
    expect(await guard.check({ subject, rules })).toMatchObject({ allowed: false, source: "tollgate" });
    expect(await guard.check({ subject, rules })).toMatchObject({ allowed: false, source: "deny-cache" });
  });
});
