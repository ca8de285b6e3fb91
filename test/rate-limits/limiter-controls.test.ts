import { env } from "cloudflare:workers";
import { evictDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { Rule } from "../../rpc/rate-limits";
import { codeOf } from "../fixtures/errors";

/** A period so long that a test never straddles a window boundary (windows are epoch-aligned). */
const YEAR = 366 * 24 * 3_600_000;
const HOUR = 3_600_000;
const rule = (algorithm: Rule["algorithm"], limit: number, name: string = algorithm): Rule => ({ name, algorithm, limit, periodMs: YEAR });
const everyAlgorithm = (limit: number): Rule[] =>
  (["fixed_window", "sliding_window", "sliding_log", "token_bucket", "gcra"] as const).map((a) => rule(a, limit));

const limiter = (subject: string) => env.RATE_LIMITER.getByName(subject);

describe("refund", () => {
  it("gives units back to every algorithm, never more than was taken", async () => {
    const subject = "refund:all";
    const stub = limiter(subject);
    const rules = everyAlgorithm(5);
    await stub.check({ subject, rules, cost: 3 });
    const first = await stub.refund({ subject, rules, cost: 2, idempotencyKey: "r1" });
    expect(first.rules.map((r) => r.refunded)).toEqual([2, 2, 2, 2, 2]);
    expect((await stub.peek({ subject, rules })).rules.map((r) => r.remaining)).toEqual([4, 4, 4, 4, 4]);
    const second = await stub.refund({ subject, rules, cost: 10, idempotencyKey: "r2" });
    expect(second.rules.map((r) => r.refunded)).toEqual([1, 1, 1, 1, 1]);
    expect((await stub.peek({ subject, rules })).rules.map((r) => r.remaining)).toEqual([5, 5, 5, 5, 5]);
  });

  it("gives back once per idempotency key, across an eviction, and refuses a key reused differently", async () => {
    const subject = "refund:idempotent";
    const stub = limiter(subject);
    const rules = [rule("fixed_window", 5)];
    await stub.check({ subject, rules, cost: 4 });
    const first = await stub.refund({ subject, rules, cost: 2, idempotencyKey: "once" });
    await evictDurableObject(stub);
    expect(await stub.refund({ subject, rules, cost: 2, idempotencyKey: "once" })).toEqual(first);
    expect((await stub.peek({ subject, rules })).remaining).toBe(3);
    expect(await codeOf(stub.refund({ subject, rules, cost: 3, idempotencyKey: "once" }))).toBe("CONFLICT");
    expect(await codeOf(stub.check({ subject, rules, idempotencyKey: "once" }))).toBe("CONFLICT");
  });

  it("refuses a refund without a key or with a cost of 0, and changes nothing", async () => {
    const subject = "refund:bad";
    const stub = limiter(subject);
    const rules = [rule("fixed_window", 5)];
    await stub.check({ subject, rules, cost: 2 });
    for (const bad of [
      { subject, rules, cost: 1 },
      { subject, rules, cost: 0, idempotencyKey: "k" },
      { subject, rules, cost: -1, idempotencyKey: "k" },
      { subject, rules, cost: 1.5, idempotencyKey: "k" },
      { subject, cost: 1, idempotencyKey: "k" },
    ]) {
      expect(await codeOf(stub.refund(bad as never))).toBe("INVALID_ARGUMENT");
    }
    expect((await stub.peek({ subject, rules })).remaining).toBe(3);
  });
});

describe("blocking", () => {
  it("blocks the whole subject for blockMs once a rule with blockMs denies, and says until when", async () => {
    const subject = "block:rule";
    const stub = limiter(subject);
    const strict: Rule = { ...rule("fixed_window", 1, "strict"), blockMs: HOUR };
    await stub.check({ subject, rules: [strict] });
    const before = Date.now();
    const denied = await stub.check({ subject, rules: [strict] });
    expect(denied).toMatchObject({ allowed: false, deniedBy: ["strict"], remaining: 0 });
    expect(denied.blocked).toMatchObject({ rule: "strict" });
    expect(denied.blocked!.untilMs).toBeGreaterThanOrEqual(before + HOUR);
    expect(denied.retryAfterMs).toBeGreaterThanOrEqual(HOUR);
    expect(Number(denied.headers["Retry-After"])).toBeGreaterThanOrEqual(3_599);

    await evictDurableObject(stub);
    const elsewhere = await stub.check({ subject, rules: [rule("fixed_window", 100, "generous")] });
    expect(elsewhere).toMatchObject({ allowed: false, deniedBy: [], blocked: { untilMs: denied.blocked!.untilMs } });
    const peeked = await stub.peek({ subject, rules: [rule("fixed_window", 100, "generous")] });
    expect(peeked).toMatchObject({ allowed: false, remaining: 0 });
    expect(peeked.rules[0]!.remaining).toBe(100);

    expect(await stub.unblock({ subject })).toEqual({ unblocked: true });
    expect(await stub.check({ subject, rules: [rule("fixed_window", 100, "generous")] })).toMatchObject({ allowed: true, remaining: 99 });
    expect(await stub.unblock({ subject })).toEqual({ unblocked: false });
  });

  it("does not block on a peek, nor on a denial by a rule without blockMs", async () => {
    const subject = "block:none";
    const stub = limiter(subject);
    const strict: Rule = { ...rule("fixed_window", 1, "strict"), blockMs: HOUR };
    const plain = rule("fixed_window", 1, "plain");
    await stub.check({ subject, rules: [strict, plain] });
    expect((await stub.peek({ subject, rules: [strict] })).blocked).toBeUndefined();
    const deniedByPlain = await stub.check({ subject, rules: [plain] });
    expect(deniedByPlain.blocked).toBeUndefined();
  });

  it("blocks by hand until a given instant, and refuses an instant in the past", async () => {
    const subject = "block:hand";
    const stub = limiter(subject);
    const untilMs = Date.now() + HOUR;
    expect(await stub.block({ subject, untilMs, reason: "abuse report 42" })).toEqual({
      blocked: { untilMs, reason: "abuse report 42" },
    });
    const decision = await stub.check({ subject, rules: [rule("gcra", 10)] });
    expect(decision).toMatchObject({ allowed: false, blocked: { untilMs, reason: "abuse report 42" } });
    expect((await stub.peek({ subject, rules: [rule("gcra", 10)] })).rules[0]!.remaining).toBe(10);
    expect(await codeOf(stub.block({ subject, untilMs: Date.now() - 1, reason: "late" }))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(stub.block({ subject, untilMs: Date.now() + 2 * YEAR, reason: "forever" }))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(stub.block({ subject, untilMs: untilMs + 1, reason: "" }))).toBe("INVALID_ARGUMENT");
    expect((await stub.peek({ subject, rules: [rule("gcra", 10)] })).blocked!.untilMs).toBe(untilMs);
  });

  it("lifts an expired block by itself, with no alarm, and drops it from the row at the next write", async () => {
    const subject = "block:expiry";
    const stub = env.TEST_RATE_LIMITER.getByName(subject);
    const untilMs = Date.now() + HOUR;
    await stub.block({ subject, untilMs, reason: "cool down" });
    expect(await stub.storedBlock()).toEqual([{ until_ms: untilMs, reason: "cool down", rule_name: null }]);
    expect((await stub.tasks()).map((t) => t.kind)).not.toContain("expire-state");
    await stub.setClockOffset(HOUR + 1_000);
    expect((await stub.peek({ subject, rules: [rule("fixed_window", 10)] })).blocked).toBeUndefined();
    expect(await stub.check({ subject, rules: [rule("fixed_window", 10)] })).toMatchObject({ allowed: true, remaining: 9 });
    expect(await stub.storedBlock()).toEqual([]);
    await stub.setClockOffset(0);
  });
});

describe("shadow rules", () => {
  it("count the calls they would have denied, across evictions, until reset", async () => {
    const subject = "shadow:count";
    const stub = env.TEST_RATE_LIMITER.getByName(subject);
    const rules: Rule[] = [rule("fixed_window", 100, "real"), { ...rule("sliding_log", 1, "trial"), shadow: true }];
    const counts: (number | undefined)[] = [];
    for (let i = 0; i < 4; i++) {
      const decision = await stub.check({ subject, rules });
      expect(decision.allowed).toBe(true);
      counts.push(decision.rules[1]!.wouldHaveDenied);
      await evictDurableObject(stub);
    }
    expect(counts).toEqual([0, 1, 2, 3]);
    expect((await stub.peek({ subject, rules })).rules[1]!.wouldHaveDenied).toBe(3);
    expect((await stub.peek({ subject, rules })).rules[0]!.wouldHaveDenied).toBeUndefined();
    await stub.reset({ subject, rule: "trial" });
    expect(await stub.storedShadowCounts()).toEqual([]);
  });

  it("forget their count a day after the last would-have-denied call, with no alarm", async () => {
    const subject = "shadow:expiry";
    const stub = env.TEST_RATE_LIMITER.getByName(subject);
    const rules: Rule[] = [{ name: "second", algorithm: "fixed_window", limit: 1, periodMs: 1_000, shadow: true }];
    await stub.check({ subject, rules, cost: 2 });
    expect(await stub.storedShadowCounts()).toEqual([{ rule_name: "second", denied: 1 }]);
    expect((await stub.tasks()).map((t) => t.kind)).not.toContain("expire-state");
    await stub.setClockOffset(24 * HOUR - 1_000);
    expect((await stub.peek({ subject, rules })).rules[0]!.wouldHaveDenied).toBe(1);
    await stub.setClockOffset(24 * HOUR + 1_000);
    expect((await stub.peek({ subject, rules })).rules[0]!.wouldHaveDenied).toBe(0);
    // The next write drops it; a new would-have-denied call counts from 1 again.
    await stub.check({ subject, rules });
    expect(await stub.storedShadowCounts()).toEqual([]);
    expect((await stub.check({ subject, rules, cost: 2 })).rules[0]!.wouldHaveDenied).toBe(1);
    await stub.setClockOffset(0);
  });
});

describe("overrides", () => {
  it("win over the call's policy from the very next call, survive eviction, and can be cleared", async () => {
    const subject = "override:policy";
    const stub = limiter(subject);
    const tight = [rule("token_bucket", 1, "tight")];
    const keyed = await stub.check({ subject, policy: "per-ip", idempotencyKey: "before-override" });
    expect(keyed.limit).toBe(100);
    expect(await stub.setOverride({ subject, rules: tight })).toMatchObject({ subject, rules: tight });
    // A retry of a call made before the override is still a replay of its first decision.
    expect(await stub.check({ subject, policy: "per-ip", idempotencyKey: "before-override" })).toEqual(keyed);
    const first = await stub.check({ subject, policy: "per-ip" });
    expect(first.rules.map((r) => r.name)).toEqual(["tight"]);
    await evictDurableObject(stub);
    expect(await stub.check({ subject, policy: "per-ip" })).toMatchObject({ allowed: false, deniedBy: ["tight"] });
    expect(await stub.check({ subject, rules: [rule("fixed_window", 5, "inline")] })).toMatchObject({ deniedBy: ["tight"] });
    expect(await stub.clearOverride({ subject })).toEqual({ cleared: true });
    expect(await stub.check({ subject, policy: "per-ip" })).toMatchObject({ allowed: true, limit: 100, remaining: 98 });
    expect(await stub.clearOverride({ subject })).toEqual({ cleared: false });
  });

  it("refuses bad override rules and keeps the old override", async () => {
    const subject = "override:bad";
    const stub = limiter(subject);
    await stub.setOverride({ subject, rules: [rule("fixed_window", 3, "kept")] });
    for (const bad of [
      { subject, rules: [] },
      { subject, rules: [{ ...rule("fixed_window", 3), limit: 0 }] },
      { subject },
      { subject, rules: [rule("fixed_window", 3)], extra: 1 },
    ]) {
      expect(await codeOf(stub.setOverride(bad as never))).toBe("INVALID_ARGUMENT");
    }
    expect((await stub.peek({ subject, policy: "per-ip" })).rules.map((r) => [r.name, r.limit])).toEqual([["kept", 3]]);
  });
});

describe("restore into a limiter that has already answered", () => {
  it("applies the restored block and override at once, not what it cached while empty", async () => {
    const source = limiter("restore:source");
    const rules = [rule("fixed_window", 5)];
    await source.block({ subject: "restore:source", untilMs: Date.now() + HOUR, reason: "abuse" });
    await source.setOverride({ subject: "restore:source", rules: [rule("fixed_window", 1, "tight")] });
    const dump = await source.exportTables();

    // The empty target reads (and caches) "no block, no override", then receives the tables.
    const subject = "restore:target";
    const target = limiter(subject);
    expect((await target.peek({ subject, rules })).allowed).toBe(true);
    await target.importTables(dump);

    expect(await target.peek({ subject, rules })).toMatchObject({ allowed: false, blocked: { reason: "abuse" } });
    await target.unblock({ subject });
    // The restored override ("tight", 1) replaces the rules the call names.
    expect(await target.check({ subject, rules })).toMatchObject({ allowed: true, limit: 1 });
    expect(await target.check({ subject, rules })).toMatchObject({ allowed: false, deniedBy: ["tight"] });
  });
});
