import { env } from "cloudflare:workers";
import { evictDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it } from "vitest";
import type { AlertRule } from "../../../rpc/alerts";
import type { RecordInput } from "../../../rpc/path-stats";
import type { Rule } from "../../../rpc/rate-limits";
import { CHECK_COUNT_RETENTION_MS } from "../../../src/rate-limits/limiter-do";
import { HOUR_MS, MINUTE_MS } from "../../../src/platform/buckets";
import { adminAlerts } from "../../fixtures/alerts-admin";
import { codeOf } from "../../fixtures/errors";
import { SINK_LOG_NAME } from "../../fixtures/test-alert-sink";
import { AGGREGATOR_NAME, ALERTS_NAME, shardName } from "../../../src/platform/names";

/**
 * Every rule kind against the real objects it reads: the ledger (balance, key spend), the
 * limiter (its per-minute check counts) and the aggregator (path rollups). The alerts object's
 * clock is driven; the signals are produced at real time, so each step evaluates at the real
 * time of that step (later steps at later times).
 */
const SHARDS = 16; // PATH_SHARDS in vitest.config.ts
const alertsObject = () => env.ALERTS.getByName(ALERTS_NAME);
const admin = adminAlerts;
const received = async (ruleId: string) => (await env.SINK_LOG.getByName(SINK_LOG_NAME).received()).filter((a) => a.ruleId === ruleId);

/** Rules here are evaluated every 10 s (the shortest interval), so each step's evaluation is due. */
const INTERVAL_MS = 10_000;
/** The clock of each evaluation: real time, but at least one interval after the previous one. */
let clock = 0;
const tick = () => (clock = Math.max(clock + INTERVAL_MS, Date.now()));

/** Evaluates (twice, with an eviction between) and delivers (twice) at the next tick. */
async function evaluate(evict = true): Promise<number> {
  const at = tick();
  await alertsObject().runAlarmAt(at);
  if (evict) await evictDurableObject(alertsObject());
  await alertsObject().runAlarmAt(at);
  await alertsObject().runAlarmAt(at);
  return at;
}

async function setRule(rule: AlertRule): Promise<void> {
  await alertsObject().setClock(tick());
  await admin().setRule({ ...rule, intervalMs: INTERVAL_MS });
}

/** Each test's rules are deleted at its end, so the next test's alarm runs evaluate its own rules only. */
async function deleteRules(): Promise<void> {
  for (const view of (await admin().rules()).rules) await admin().deleteRule({ ruleId: view.rule.ruleId });
}

const stateOf = async (ruleId: string) => (await admin().rules()).rules.find((r) => r.rule.ruleId === ruleId)!;

describe("alert signals from real objects", () => {
  afterEach(deleteRules);

  it("balance_below: fires when the balance drops below the level, resolves on a grant, fires again on the next drop", async () => {
    const accountId = "alert-balance";
    await env.CREDITS.createAccount({ accountId, name: "Alerts" });
    await env.CREDITS.grant({ accountId, amount: 1_000, reason: "seed", idempotencyKey: "seed" });
    const ruleId = "balance-low";
    await setRule({ kind: "balance_below", ruleId, accountId, level: 500, recoverAt: 800 });
    await evaluate();
    expect(await stateOf(ruleId)).toMatchObject({ state: "ok", lastValue: 1_000 });

    await env.CREDITS.debit({ accountId, amount: 600, reason: "use", idempotencyKey: "d1" });
    await evaluate();
    await evaluate();
    expect((await received(ruleId)).map((a) => [a.alertId, a.value, a.threshold])).toEqual([[`${ruleId}#1`, 400, 500]]);

    // Above the level but under recoverAt: still firing (hysteresis), still silent.
    await env.CREDITS.grant({ accountId, amount: 200, reason: "top-up", idempotencyKey: "g1" });
    await evaluate();
    expect(await stateOf(ruleId)).toMatchObject({ state: "firing", lastValue: 600 });
    await env.CREDITS.grant({ accountId, amount: 300, reason: "top-up", idempotencyKey: "g2" });
    await evaluate();
    expect(await stateOf(ruleId)).toMatchObject({ state: "ok", lastValue: 900 });
    await env.CREDITS.debit({ accountId, amount: 500, reason: "use", idempotencyKey: "d2" });
    await evaluate();
    expect((await received(ruleId)).map((a) => a.alertId)).toEqual([`${ruleId}#1`, `${ruleId}#2`]);
  });

  it("key_spend_share: fires when a key has spent its share of the day cap, once", async () => {
    const accountId = "alert-keys";
    await env.CREDITS.createAccount({ accountId, name: "Keys" });
    await env.CREDITS.grant({ accountId, amount: 10_000, reason: "seed", idempotencyKey: "seed" });
    const { keyId } = await env.CREDITS.createKey({ accountId, name: "capped", scopes: ["*"], spendCap: { perDay: 100, perMonth: 1_000 } });
    const ruleId = "key-share";
    await setRule({ kind: "key_spend_share", ruleId, accountId, keyId, share: 0.8 });
    await env.CREDITS.debit({ accountId, amount: 50, reason: "use", idempotencyKey: "k1", keyId });
    await evaluate();
    expect(await stateOf(ruleId)).toMatchObject({ state: "ok", lastValue: 0.5 });
    await env.CREDITS.debit({ accountId, amount: 30, reason: "use", idempotencyKey: "k2", keyId });
    await evaluate();
    await env.CREDITS.debit({ accountId, amount: 10, reason: "use", idempotencyKey: "k3", keyId });
    await evaluate();
    expect((await received(ruleId)).map((a) => [a.alertId, a.value])).toEqual([[`${ruleId}#1`, 0.8]]);
    expect(await stateOf(ruleId)).toMatchObject({ state: "firing", lastValue: 0.9 });
    expect(await env.CREDIT_LEDGER.getByName(accountId).keySpend({ accountId, keyId })).toMatchObject({
      keyId,
      day: { spent: 90, cap: 100 },
      month: { spent: 90, cap: 1_000 },
    });
    // A key without a cap has no signal: the rule stays OK.
    const uncapped = await env.CREDITS.createKey({ accountId, name: "free", scopes: ["*"] });
    await setRule({ kind: "key_spend_share", ruleId: "key-uncapped", accountId, keyId: uncapped.keyId, share: 0.1 });
    await env.CREDITS.debit({ accountId, amount: 500, reason: "use", idempotencyKey: "k4", keyId: uncapped.keyId });
    await evaluate();
    expect(await stateOf("key-uncapped")).toMatchObject({ state: "ok", lastValue: null });
    expect(await codeOf(env.CREDIT_LEDGER.getByName(accountId).keySpend({ accountId, keyId: "k0000000000000000" }))).toBe("NOT_FOUND");
    expect(await codeOf(env.CREDIT_LEDGER.getByName(accountId).keySpend({ accountId, keyId: "nope" }))).toBe("INVALID_ARGUMENT");
  });

  it("denial_rate: counts the limiter's allowed and denied checks, fires at the threshold and again after recovery", async () => {
    const subject = "alert:denials";
    const limiter = env.RATE_LIMITER.getByName(subject);
    const rules: Rule[] = [{ name: "hour", algorithm: "fixed_window", limit: 2, periodMs: 3_600_000 }];
    const checks = async (n: number) => {
      for (let i = 0; i < n; i++) await limiter.check({ subject, rules });
    };
    const ruleId = "denials";
    await setRule({ kind: "denial_rate", ruleId, subject, windowMs: 3_600_000, threshold: 0.5, minRequests: 4 });
    await checks(3); // 2 allowed, 1 denied: under minRequests
    await evaluate();
    expect(await stateOf(ruleId)).toMatchObject({ state: "ok", lastValue: null });
    await checks(2); // 2 allowed, 3 denied: 60%
    await evaluate();
    await evaluate();
    expect((await received(ruleId)).map((a) => [a.alertId, a.value])).toEqual([[`${ruleId}#1`, 0.6]]);
    // Peeks and zero-cost checks are not counted.
    await limiter.peek({ subject, rules });
    await limiter.check({ subject, rules, cost: 0 });
    for (let round = 0; round < 3; round++) {
      await limiter.reset({ subject });
      await checks(2);
    }
    await evaluate(); // 8 allowed, 3 denied: 27%
    expect(await stateOf(ruleId)).toMatchObject({ state: "ok" });
    expect((await stateOf(ruleId)).lastValue).toBeCloseTo(3 / 11, 10);
    await checks(10); // 8 allowed, 13 denied
    await evaluate();
    expect((await received(ruleId)).map((a) => a.alertId)).toEqual([`${ruleId}#1`, `${ruleId}#2`]);
    expect(await limiter.checkCounts({ subject, sinceMs: 0 })).toMatchObject({ allowed: 8, denied: 13 });
  });

  it("the limiter's check counts survive eviction, move to their table after an hour, and are gone after their retention", async () => {
    const subject = "alert:counts";
    const stub = env.TEST_RATE_LIMITER.getByName(subject);
    const rules: Rule[] = [{ name: "r", algorithm: "token_bucket", limit: 1, periodMs: 3_600_000 }];
    await stub.check({ subject, rules });
    await evictDurableObject(stub);
    await stub.check({ subject, rules });
    expect(await stub.checkCounts({ subject, sinceMs: Date.now() - MINUTE_MS })).toMatchObject({ allowed: 1, denied: 1 });
    // The last hour's minutes ride in the state row; a write an hour later moves them to the table.
    expect((await stub.storedCheckCounts()).inTable).toEqual([]);
    await stub.setClockOffset(HOUR_MS + 2 * MINUTE_MS);
    await stub.check({ subject, rules });
    const moved = await stub.storedCheckCounts();
    expect(moved.inTable.reduce((sum, row) => sum + row.allowed + 10 * row.denied, 0)).toBe(11);
    expect(moved.inRow.map(([, allowed, denied]) => [allowed, denied])).toEqual([[1, 0]]);
    expect(await stub.checkCounts({ subject, sinceMs: 0 })).toMatchObject({ allowed: 2, denied: 1 });
    // Past their retention they read as gone; the next write deletes the table's rows.
    await stub.setClockOffset(CHECK_COUNT_RETENTION_MS + HOUR_MS + 3 * MINUTE_MS);
    expect(await stub.checkCounts({ subject, sinceMs: 0 })).toMatchObject({ allowed: 0, denied: 0 });
    await stub.check({ subject, rules });
    expect((await stub.storedCheckCounts()).inTable).toEqual([]);
    expect(await stub.checkCounts({ subject, sinceMs: 0 })).toMatchObject({ allowed: 1, denied: 0 });
    await stub.setClockOffset(0);
    expect(await codeOf(stub.checkCounts({ subject: "other", sinceMs: 0 }))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(stub.checkCounts({ subject, sinceMs: -1 }))).toBe("INVALID_ARGUMENT");
  });

  it("path_error_rate and path_p99: read the aggregator's rollups, fire, resolve and fire again", async () => {
    const path = "/alerts/:id";
    const errorsRule = "path-errors";
    const p99Rule = "path-slow";
    await setRule({
      kind: "path_error_rate",
      ruleId: errorsRule,
      path: "/alerts/1",
      method: "GET",
      windowMs: 3_600_000,
      threshold: 0.2,
      minRequests: 10,
      recoverAt: 0.1,
    });
    await setRule({ kind: "path_p99", ruleId: p99Rule, path, windowMs: 3_600_000, threshold: 500, minRequests: 10 });

    /** Records hits now, then runs the collectors' and the aggregator's alarms so the rollups hold them. */
    const record = async (count: number, status: number, latencyMs: number) => {
      const at = Date.now() - 1_000;
      const hits: RecordInput[] = Array.from({ length: count }, (_, i) => ({
        ip: `198.51.100.${i % 50}`,
        method: "GET",
        path: `/alerts/${i}`,
        status,
        latencyMs,
        at,
      }));
      await env.PATHS.recordMany({ hits });
      const later = Date.now() + 2 * MINUTE_MS + 5_000;
      for (let shard = 0; shard < SHARDS; shard++) await env.PATH_COLLECTOR.getByName(shardName(shard)).runAlarmAt(later);
      await env.AGGREGATOR.getByName(AGGREGATOR_NAME).runAlarmAt(later);
    };

    await record(20, 200, 20);
    await evaluate();
    expect(await stateOf(errorsRule)).toMatchObject({ state: "ok", lastValue: 0 });
    expect(await stateOf(p99Rule)).toMatchObject({ state: "ok" });

    await record(10, 503, 900); // 10 errors of 30: 33%; p99 900 ms
    await evaluate();
    await evaluate();
    expect((await received(errorsRule)).map((a) => a.alertId)).toEqual([`${errorsRule}#1`]);
    expect((await received(errorsRule))[0]!.value).toBeCloseTo(1 / 3, 10);
    expect((await received(p99Rule)).map((a) => a.alertId)).toEqual([`${p99Rule}#1`]);
    expect(Math.abs((await received(p99Rule))[0]!.value - 900) / 900).toBeLessThanOrEqual(0.01);

    await record(40, 200, 10); // 10 of 70: 14%, above recoverAt 10%: still firing
    await evaluate();
    expect(await stateOf(errorsRule)).toMatchObject({ state: "firing" });
    await record(50, 200, 10); // 10 of 120: 8.3%: recovered
    await evaluate();
    expect(await stateOf(errorsRule)).toMatchObject({ state: "ok" });
    await record(40, 500, 10); // 50 of 160: 31%
    await evaluate();
    expect((await received(errorsRule)).map((a) => a.alertId)).toEqual([`${errorsRule}#1`, `${errorsRule}#2`]);
    // p99 stays above 500 ms throughout (over 1% of the hits took 900 ms): one alert only.
    expect((await received(p99Rule)).map((a) => a.alertId)).toEqual([`${p99Rule}#1`]);
  });

  // Last, and without eviction: after a call into another object failed, the runtime keeps
  // that call's session until garbage collection, and evictDurableObject waits for it.
  it("cost_projection: reads the cost report's monthly projection; a threshold under it fires once, one over it and no budget never fire", async () => {
    await env.CREDITS.createAccount({ accountId: "alert-cost", name: "Cost" });
    await setRule({ kind: "cost_projection", ruleId: "cost-over", threshold: 1 });
    await setRule({ kind: "cost_projection", ruleId: "cost-under", threshold: 1_000_000 });
    // No threshold: the budget (COST_BUDGET_USD) is the trigger, and the tests set none.
    await setRule({ kind: "cost_projection", ruleId: "cost-budget" });
    await evaluate();
    await evaluate();
    const projected = (await env.ADMIN.costReport({ range: "24h" })).monthlyTotalUsd;
    // The Workers Paid subscription alone projects to $5 a month.
    expect(projected).toBeGreaterThanOrEqual(5);
    expect((await received("cost-over")).map((a) => [a.alertId, a.threshold])).toEqual([["cost-over#1", 1]]);
    expect((await received("cost-over"))[0]!.value).toBeGreaterThanOrEqual(5);
    expect(await stateOf("cost-under")).toMatchObject({ state: "ok" });
    expect(await stateOf("cost-budget")).toMatchObject({ state: "ok" });
    expect(await received("cost-under")).toEqual([]);
    expect(await received("cost-budget")).toEqual([]);
  });

  it("balance_below: an unknown account is an evaluation error, not a crossing", async () => {
    const ruleId = "balance-missing";
    await setRule({ kind: "balance_below", ruleId, accountId: "no-such-account", level: 1 });
    await evaluate(false);
    expect(await stateOf(ruleId)).toMatchObject({ state: "ok", lastError: expect.stringContaining("no-such-account") });
    expect(await received(ruleId)).toEqual([]);
  });
});
