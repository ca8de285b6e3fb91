import { env } from "cloudflare:workers";
import { evictDurableObject, runDurableObjectAlarm } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { Rule } from "../../rpc/rate-limits";
import { CHECK_REPLAY_TTL_MS } from "../../src/rate-limits/limiter-do";
import { codeOf } from "../fixtures/errors";

/** A period so long that a test never straddles a window boundary (windows are epoch-aligned). */
const YEAR = 366 * 24 * 3_600_000;
const fixed = (limit: number, name = "fixed"): Rule => ({ name, algorithm: "fixed_window", limit, periodMs: YEAR });
const sliding = (limit: number, name = "sliding"): Rule => ({ name, algorithm: "sliding_window", limit, periodMs: YEAR });
const log = (limit: number, name = "log"): Rule => ({ name, algorithm: "sliding_log", limit, periodMs: YEAR });
const bucket = (limit: number, name = "bucket"): Rule => ({ name, algorithm: "token_bucket", limit, periodMs: YEAR });
const gcra = (limit: number, name = "gcra"): Rule => ({ name, algorithm: "gcra", limit, periodMs: YEAR });
/** One rule of every algorithm, each admitting `limit` units within a test. */
const everyAlgorithm = (limit: number): Rule[] => [fixed(limit), sliding(limit), log(limit), bucket(limit), gcra(limit)];

const limiter = (subject: string) => env.RATE_LIMITER.getByName(subject);

describe("RateLimiterDO", () => {
  it("admits exactly 100 of 1,000 concurrent checks against a limit of 100, with every algorithm", async () => {
    for (const rule of everyAlgorithm(100)) {
      const subject = `exact:${rule.algorithm}`;
      const stub = limiter(subject);
      const decisions = await Promise.all(Array.from({ length: 1_000 }, () => stub.check({ subject, rules: [rule] })));
      expect(decisions.filter((d) => d.allowed)).toHaveLength(100);
      expect((await stub.peek({ subject, rules: [rule] })).remaining).toBe(0);
    }
  });

  it("loses no count when evicted between two checks", async () => {
    const subject = "evicted";
    const stub = limiter(subject);
    const rules = everyAlgorithm(3);
    expect((await stub.check({ subject, rules, cost: 2 })).remaining).toBe(1);
    await evictDurableObject(stub);
    const second = await stub.check({ subject, rules });
    expect(second).toMatchObject({ allowed: true, remaining: 0 });
    await evictDurableObject(stub);
    expect(await stub.check({ subject, rules })).toMatchObject({
      allowed: false,
      deniedBy: ["fixed", "sliding", "log", "bucket", "gcra"],
    });
  });

  it("makes the same decisions with an eviction between every two calls as without", async () => {
    const rules = [...everyAlgorithm(6), { ...fixed(4, "shadowed"), shadow: true }];
    const costs = [1, 2, 0, 3, 1, 1, 2, 1];
    const run = async (subject: string, evict: boolean) => {
      const stub = limiter(subject);
      const seen: unknown[] = [];
      for (const [i, cost] of costs.entries()) {
        const decision = await stub.check({ subject, rules, cost, idempotencyKey: `k${i}` });
        seen.push([decision.allowed, decision.remaining, decision.deniedBy, decision.rules.map((r) => [r.remaining, r.wouldHaveDenied])]);
        if (evict) await evictDurableObject(stub);
        if (i === 4) {
          await stub.refund({ subject, rules, cost: 2, idempotencyKey: "refund" });
          if (evict) await evictDurableObject(stub);
        }
      }
      seen.push(await stub.check({ subject, rules, cost: 2, idempotencyKey: "k1" }).then((d) => d.remaining));
      return seen;
    };
    expect(await run("evict:each", true)).toEqual(await run("evict:never", false));
  });

  it("keeps a sliding log to one entry per admitted millisecond and drops it when the rule changes algorithm", async () => {
    const subject = "log-storage";
    const stub = env.TEST_RATE_LIMITER.getByName(subject);
    const rule: Rule = { name: "calls", algorithm: "sliding_log", limit: 1_000, periodMs: 1_000 };
    await Promise.all(Array.from({ length: 50 }, () => stub.check({ subject, rules: [rule] })));
    const rows = await stub.storedLog();
    expect(rows.reduce((sum, row) => sum + row.cost, 0)).toBe(50);
    expect(rows.length).toBeLessThanOrEqual(50);
    await stub.check({ subject, rules: [{ ...rule, algorithm: "fixed_window" }] });
    expect(await stub.storedLog()).toEqual([]);
  });

  it("persists a countDenied charge to a sliding log, trimming its oldest entry, across an eviction", async () => {
    const subject = "log-count-denied";
    const stub = env.TEST_RATE_LIMITER.getByName(subject);
    const rules: Rule[] = [{ ...log(3), countDenied: true }];
    /** Waits for the clock to move (it advances across I/O), so calls land in distinct milliseconds. */
    const nextMs = async () => {
      const start = Date.now();
      while (Date.now() === start) await stub.peek({ subject, rules });
    };
    await stub.check({ subject, rules, cost: 2 });
    await nextMs();
    await stub.check({ subject, rules });
    await nextMs();
    expect((await stub.check({ subject, rules })).allowed).toBe(false);
    await evictDurableObject(stub);
    const rows = await stub.storedLog();
    expect(rows.map((row) => row.cost)).toEqual([1, 1, 1]);
    expect((await stub.peek({ subject, rules })).remaining).toBe(0);
  });

  it("charges every rule or none, across algorithms: a denial by one rule leaves the others untouched", async () => {
    const subject = "all-or-nothing-mixed";
    const stub = limiter(subject);
    const rules = [gcra(1, "small"), ...everyAlgorithm(10)];
    await stub.check({ subject, rules });
    const denied = await stub.check({ subject, rules });
    expect(denied).toMatchObject({ allowed: false, deniedBy: ["small"] });
    expect((await stub.peek({ subject, rules: everyAlgorithm(10) })).rules.map((r) => r.remaining)).toEqual([9, 9, 9, 9, 9]);
  });

  it("charges every rule or none: a denial by one rule leaves the others untouched", async () => {
    const subject = "all-or-nothing";
    const stub = limiter(subject);
    const small = fixed(1, "small");
    const large = fixed(10, "large");
    await stub.check({ subject, rules: [small, large] });
    const denied = await stub.check({ subject, rules: [small, large] });
    expect(denied).toMatchObject({ allowed: false, deniedBy: ["small"] });
    expect((await stub.peek({ subject, rules: [large] })).remaining).toBe(9);
  });

  it("never consumes on peek or on a check of cost 0", async () => {
    const subject = "peek";
    const stub = limiter(subject);
    const rules = [fixed(2)];
    await stub.peek({ subject, rules });
    await stub.check({ subject, rules, cost: 0 });
    expect(await stub.peek({ subject, rules })).toMatchObject({ allowed: true, remaining: 2 });
    await stub.check({ subject, rules, cost: 2 });
    expect(await stub.peek({ subject, rules })).toMatchObject({ allowed: false, remaining: 0 });
  });

  it("returns the first decision for a retried idempotency key and charges once", async () => {
    const subject = "idempotent";
    const stub = limiter(subject);
    const rules = [fixed(5)];
    const first = await stub.check({ subject, rules, idempotencyKey: "req-1" });
    await evictDurableObject(stub);
    const retried = await stub.check({ subject, rules, idempotencyKey: "req-1" });
    expect(retried).toEqual(first);
    expect((await stub.peek({ subject, rules })).remaining).toBe(4);
    expect(await codeOf(stub.check({ subject, rules, cost: 2, idempotencyKey: "req-1" }))).toBe("CONFLICT");
  });

  it("applies a named policy from configuration", async () => {
    const subject = "ip:192.0.2.1";
    const decision = await limiter(subject).check({ subject, policy: "per-ip" });
    expect(decision.rules.map((r) => [r.name, r.limit])).toEqual([["minute", 100]]);
    expect(await codeOf(limiter(subject).check({ subject, policy: "no-such-policy" }))).toBe("NOT_FOUND");
  });

  it("resets one rule or all of them", async () => {
    const subject = "reset";
    const stub = limiter(subject);
    const rules = [fixed(2, "a"), fixed(2, "b")];
    await stub.check({ subject, rules, cost: 2 });
    expect(await stub.reset({ subject, rule: "a" })).toEqual({ cleared: 1 });
    const after = await stub.peek({ subject, rules });
    expect(after.rules.map((r) => r.remaining)).toEqual([2, 0]);
    expect(await stub.reset({ subject })).toEqual({ cleared: 1 });
    expect((await stub.peek({ subject, rules })).remaining).toBe(2);
  });

  it("refuses a subject that does not belong to the object", async () => {
    expect(await codeOf(limiter("mine").check({ subject: "someone-else", rules: [fixed(1)] }))).toBe("INVALID_ARGUMENT");
  });

  it("schedules no cleanup for rule state: expired state reads as unused and leaves the row at its next write", async () => {
    const subject = "expires";
    const stub = env.TEST_RATE_LIMITER.getByName(subject);
    const second: Rule = { name: "second", algorithm: "fixed_window", limit: 5, periodMs: 1_000 };
    const year = fixed(5, "year");
    await stub.check({ subject, rules: [second], idempotencyKey: "k" });
    await stub.check({ subject, rules: [second, year] });
    expect((await stub.storedRules()).map((r) => r.rule_name)).toEqual(["second", "year"]);
    // No task per subject for its state: only the replay record's pruning (and metrics' own push).
    expect((await stub.tasks()).map((t) => t.kind).filter((kind) => kind !== "metrics-push")).toEqual(["prune-replays"]);

    // A minute past the short rule's expiry it reads as unused, and the next write drops it.
    const expiresAt = (await stub.storedRules()).find((r) => r.rule_name === "second")!.expires_at_ms;
    await stub.setClockOffset(expiresAt + 60_000 - Date.now());
    expect((await stub.peek({ subject, rules: [second, year] })).rules.map((r) => r.remaining)).toEqual([5, 4]);
    await stub.check({ subject, rules: [year] });
    expect((await stub.storedRules()).map((r) => [r.rule_name, r.count])).toEqual([["year", 2]]);
    await stub.setClockOffset(0);

    // Idempotency records still have their pruning alarm.
    expect(await stub.storedReplays()).toBe(1);
    const replayDue = (await stub.tasks()).find((t) => t.kind === "prune-replays")!.dueMs;
    expect(replayDue).toBeGreaterThanOrEqual(Date.now() + CHECK_REPLAY_TTL_MS - 60_000);
    expect(await stub.runAlarmAt(replayDue)).toMatchObject({ ran: 1, failed: 0 });
    expect(await stub.storedReplays()).toBe(0);
    // Metrics schedule nothing: the alarm's own count is pushed from memory, not by a task.
    expect(await stub.runAlarmAt(Date.now() + 10 * 60_000)).toMatchObject({ ran: 0, nextDueMs: null });
    expect(await runDurableObjectAlarm(stub)).toBe(false);
  });

  it("runs a cleanup task left by an older version once: it drops what has expired and schedules nothing", async () => {
    const subject = "legacy-cleanup";
    const stub = env.TEST_RATE_LIMITER.getByName(subject);
    const second: Rule = { name: "second", algorithm: "fixed_window", limit: 5, periodMs: 1_000 };
    await stub.check({ subject, rules: [second] });
    const due = Date.now() + 120_000;
    await stub.scheduleTask("expire-state", due);
    expect(await stub.runAlarmAt(due)).toMatchObject({ ran: 1, failed: 0 });
    expect(await stub.storedRules()).toEqual([]);
    expect((await stub.tasks()).map((t) => t.kind)).not.toContain("expire-state");
    expect(await stub.runAlarmAt(due)).toMatchObject({ ran: 0, failed: 0 });
  });

  it("keeps state that is still in use when the cleanup alarm fires", async () => {
    const subject = "busy";
    const stub = env.TEST_RATE_LIMITER.getByName(subject);
    await stub.check({ subject, rules: [fixed(5)] });
    const now = Date.now();
    await stub.runAlarmAt(now + 120_000);
    expect((await stub.storedRules()).map((r) => r.count)).toEqual([1]);
  });

  describe("rejects bad input with INVALID_ARGUMENT and changes nothing", () => {
    const subject = "validation";
    const good = fixed(10);
    const bad: [string, unknown][] = [
      ["a missing subject", { rules: [good] }],
      ["an empty subject", { subject: "", rules: [good] }],
      ["a subject with control characters", { subject: "a\u0000b", rules: [good] }],
      ["an unknown field", { subject, rules: [good], extra: true }],
      ["an unknown rule field", { subject, rules: [{ ...good, colour: "red" }] }],
      ["a negative cost", { subject, rules: [good], cost: -1 }],
      ["a fractional cost", { subject, rules: [good], cost: 1.5 }],
      ["a NaN cost", { subject, rules: [good], cost: Number.NaN }],
      ["an infinite cost", { subject, rules: [good], cost: Number.POSITIVE_INFINITY }],
      ["a cost as a string", { subject, rules: [good], cost: "1" }],
      ["a zero limit", { subject, rules: [{ ...good, limit: 0 }] }],
      ["an unsafe limit", { subject, rules: [{ ...good, limit: 2 ** 53 }] }],
      ["a period of zero", { subject, rules: [{ ...good, periodMs: 0 }] }],
      ["an absurd period", { subject, rules: [{ ...good, periodMs: 10 * YEAR }] }],
      ["limit times period beyond 2^53", { subject, rules: [{ ...good, limit: 1_000_000_000, periodMs: YEAR }] }],
      ["an unknown algorithm", { subject, rules: [{ ...good, algorithm: "leaky" }] }],
      ["a sliding log above its maximum limit", { subject, rules: [{ ...good, algorithm: "sliding_log", limit: 1_001, periodMs: 1_000 }] }],
      ["a burst on a window algorithm", { subject, rules: [{ ...good, burst: 5 }] }],
      ["a zero burst", { subject, rules: [{ ...bucket(5), burst: 0 }] }],
      ["burst times period beyond 2^53", { subject, rules: [{ ...gcra(5), burst: 1_000_000_000 }] }],
      ["a fractional blockMs", { subject, rules: [{ ...good, blockMs: 1.5 }] }],
      ["a shadow flag that is not a boolean", { subject, rules: [{ ...good, shadow: "yes" }] }],
      ["a rule name that cannot be a header key", { subject, rules: [{ ...good, name: "Bad Name" }] }],
      ["duplicate rule names", { subject, rules: [good, good] }],
      ["no rules", { subject, rules: [] }],
      ["both rules and a policy", { subject, rules: [good], policy: "per-ip" }],
      ["neither rules nor a policy", { subject }],
      ["too many rules", { subject, rules: Array.from({ length: 17 }, (_, i) => fixed(1, `r${i}`)) }],
      ["a huge idempotency key", { subject, rules: [good], idempotencyKey: "k".repeat(10_000) }],
      ["a non-object", "check please"],
      ["null", null],
    ];
    for (const [what, input] of bad) {
      it(`refuses ${what}`, async () => {
        const stub = limiter(subject);
        expect(await codeOf(stub.check(input as never))).toBe("INVALID_ARGUMENT");
        expect(await stub.peek({ subject, rules: [good] })).toMatchObject({ remaining: 10 });
      });
    }
  });

  it("says which field is wrong in the error details", async () => {
    const subject = "details";
    try {
      await limiter(subject).check({ subject, rules: [{ ...fixed(1), limit: -5 }] });
      expect.unreachable();
    } catch (error) {
      const { message, details } = error as { message: string; details: { path: string }[] };
      expect(message).toMatch(/^\[INVALID_ARGUMENT\] /);
      expect(details[0]!.path).toBe("rules.0.limit");
    }
  });
});
