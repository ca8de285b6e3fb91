import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { Decision, Rule } from "../../rpc/rate-limits";
import type { TestRateLimiterDO } from "../fixtures/test-rate-limiter-do";

/** A period so long that a test never straddles a window boundary (windows are epoch-aligned). */
const YEAR = 366 * 24 * 3_600_000;
const everyAlgorithm = (limit: number): Rule[] =>
  (["fixed_window", "sliding_window", "sliding_log", "token_bucket", "gcra"] as const).map((algorithm) => ({
    name: algorithm.replace("_", "-"),
    algorithm,
    limit,
    periodMs: YEAR,
  }));

const limiter = (subject: string) => env.TEST_RATE_LIMITER.getByName(subject);

/** `count` checks started together inside the object (one turn), as concurrent callers would arrive; their outcomes. */
function concurrentChecks(subject: string, rules: Rule[], count: number, key?: (i: number) => string) {
  return runInDurableObject(limiter(subject), (instance: TestRateLimiterDO) =>
    Promise.allSettled(
      Array.from({ length: count }, (_, i) => instance.check({ subject, rules, ...(key === undefined ? {} : { idempotencyKey: key(i) }) })),
    ),
  );
}

const allowed = (outcomes: PromiseSettledResult<Decision>[]) => outcomes.filter((o) => o.status === "fulfilled" && o.value.allowed).length;

describe("one state row, written by group commit", () => {
  it("16 concurrent checks share the writes of the state row: one for the first, one for the 15 that gathered behind it", async () => {
    const subject = "group:writes";
    const stub = limiter(subject);
    const rules = everyAlgorithm(10);
    const before = await stub.stateWrites();
    const outcomes = await concurrentChecks(subject, rules, 16);
    expect(await stub.stateWrites()).toBe(before + 2);
    // Exact: 10 admitted, in arrival order, and the row holds exactly those charges.
    expect(allowed(outcomes)).toBe(10);
    expect(outcomes.map((o) => o.status === "fulfilled" && o.value.remaining)).toEqual([9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0, 0, 0, 0, 0, 0]);
    expect((await stub.peek({ subject, rules })).rules.map((r) => r.remaining)).toEqual([0, 0, 0, 0, 0]);
    await evictDurableObject(stub);
    expect((await stub.peek({ subject, rules })).rules.map((r) => r.remaining)).toEqual([0, 0, 0, 0, 0]);
  });

  it("sequential checks write the row once each, and a peek or a cost-0 check writes nothing", async () => {
    const subject = "group:sequential";
    const stub = limiter(subject);
    const rules = everyAlgorithm(10);
    const before = await stub.stateWrites();
    for (let i = 0; i < 3; i++) await stub.check({ subject, rules });
    await stub.peek({ subject, rules });
    await stub.check({ subject, rules, cost: 0 });
    expect(await stub.stateWrites()).toBe(before + 3);
  });

  it("is exact over RPC under concurrency: 1,000 concurrent callers, every algorithm, limit 100", async () => {
    const subject = "group:rpc";
    const stub = limiter(subject);
    const rules = everyAlgorithm(100);
    const before = await stub.stateWrites();
    const decisions = await Promise.all(Array.from({ length: 1_000 }, () => stub.check({ subject, rules })));
    expect(decisions.filter((d) => d.allowed)).toHaveLength(100);
    expect(await stub.stateWrites()).toBeLessThan(before + 1_000);
    await evictDurableObject(stub);
    expect((await stub.peek({ subject, rules })).remaining).toBe(0);
  });

  it("a failed flush rejects every caller of its batch, leaves storage as it was, and the next call starts from storage", async () => {
    const subject = "group:failure";
    const stub = limiter(subject);
    const rules = everyAlgorithm(10);
    await stub.check({ subject, rules, cost: 3, idempotencyKey: "kept" });
    const stored = await stub.storedState();
    const replays = await stub.storedReplays();

    await stub.failStateWrites(true);
    const outcomes = await concurrentChecks(subject, rules, 16, (i) => `lost-${i}`);
    expect(outcomes.map((o) => o.status)).toEqual(Array.from({ length: 16 }, () => "rejected"));
    expect(String((outcomes[0] as PromiseRejectedResult).reason)).toContain("injected state write failure");
    expect(await stub.storedState()).toEqual(stored);
    expect(await stub.storedReplays()).toBe(replays);
    // Reads answer from storage too: nothing unwritten is ever answered from.
    expect((await stub.peek({ subject, rules })).remaining).toBe(7);

    await stub.failStateWrites(false);
    // A rejected keyed call was never answered, so its key is new; the written one still replays.
    expect(await stub.check({ subject, rules, idempotencyKey: "lost-0" })).toMatchObject({ allowed: true, remaining: 6 });
    expect(await stub.check({ subject, rules, cost: 3, idempotencyKey: "kept" })).toMatchObject({ remaining: 7 });
    await evictDurableObject(stub);
    expect((await stub.peek({ subject, rules })).remaining).toBe(6);
  });

  it("concurrent retries of one key in one batch get the first decision, charged once, also after an eviction", async () => {
    const subject = "group:same-key";
    const stub = limiter(subject);
    const rules = everyAlgorithm(10);
    const outcomes = await concurrentChecks(subject, rules, 8, () => "same");
    const decisions = outcomes.map((o) => (o as PromiseFulfilledResult<Decision>).value);
    expect(decisions.every((d) => JSON.stringify(d) === JSON.stringify(decisions[0]))).toBe(true);
    expect(decisions[0]).toMatchObject({ allowed: true, remaining: 9 });
    await evictDurableObject(stub);
    expect(await stub.check({ subject, rules, idempotencyKey: "same" })).toEqual(decisions[0]);
    expect((await stub.peek({ subject, rules })).remaining).toBe(9);
    expect(await stub.storedReplays()).toBe(1);
  });

  it("loses nothing acknowledged when evicted after a concurrent burst: counts and replays are all in storage", async () => {
    const subject = "group:evict";
    const stub = limiter(subject);
    const rules = everyAlgorithm(20);
    const decisions = await Promise.all(Array.from({ length: 30 }, (_, i) => stub.check({ subject, rules, idempotencyKey: `k${i}` })));
    expect(decisions.filter((d) => d.allowed)).toHaveLength(20);
    await evictDurableObject(stub);
    expect((await stub.peek({ subject, rules })).rules.map((r) => r.remaining)).toEqual([0, 0, 0, 0, 0]);
    for (const [i, first] of decisions.entries()) expect(await stub.check({ subject, rules, idempotencyKey: `k${i}` })).toEqual(first);
    expect(await stub.checkCounts({ subject, sinceMs: Date.now() - 120_000 })).toMatchObject({ allowed: 20, denied: 10 });
  });
});
