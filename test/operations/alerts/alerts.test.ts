import { env } from "cloudflare:workers";
import { evictDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { AlertRule } from "../../../rpc/alerts";
import { digestObject } from "../../fixtures/digest";
import { adminAlerts } from "../../fixtures/alerts-admin";
import { codeOf, thrown } from "../../fixtures/errors";
import { SINK_LOG_NAME } from "../../fixtures/test-alert-sink";
import { ALERTS_NAME } from "../../../src/platform/names";

const alertsObject = () => env.ALERTS.getByName(ALERTS_NAME);
const admin = adminAlerts;
const received = async (ruleId: string) => (await env.SINK_LOG.getByName(SINK_LOG_NAME).received()).filter((a) => a.ruleId === ruleId);
const T0 = Math.floor(Date.now() / 60_000) * 60_000;
const MIN = 60_000;

/** A cost rule: its value is whatever the fake cost source is told, so crossings are set by hand. */
const costRule = (ruleId: string, extra: Partial<AlertRule> = {}): AlertRule =>
  ({ kind: "cost_projection", ruleId, threshold: 100, ...extra }) as AlertRule;
const setCost = (monthlyUsd: number) => alertsObject().setFakeCost({ monthlyUsd, budgetUsd: null });

/** Runs the alarm's work at `at`, optionally evicting the object first. */
async function alarmAt(at: number, evict: boolean): Promise<void> {
  if (evict) await evictDurableObject(alertsObject());
  await alertsObject().runAlarmAt(at);
}

/**
 * The proof scenario: one crossing gives one notify, whatever is repeated; still past the
 * threshold gives nothing; recovery then a new crossing gives the second.
 */
async function crossingScenario(ruleId: string, evict: boolean): Promise<void> {
  await setCost(50);
  await alertsObject().setClock(T0);
  await admin().setRule(costRule(ruleId));
  await alarmAt(T0, evict);
  expect((await admin().rules()).rules.find((r) => r.rule.ruleId === ruleId)).toMatchObject({ state: "ok", lastValue: 50 });

  await setCost(150);
  // The crossing is evaluated; then the alarm "fires twice" (the delivery runs in the second
  // run, the third finds nothing), and the evaluation task itself is run again.
  await alarmAt(T0 + MIN, evict);
  await alarmAt(T0 + MIN, evict);
  await alarmAt(T0 + MIN, evict);
  if (evict) await evictDurableObject(alertsObject());
  await alertsObject().evaluateAt(ruleId, T0 + MIN);
  await alarmAt(T0 + MIN, evict);
  expect((await received(ruleId)).map((a) => a.alertId)).toEqual([`${ruleId}#1`]);
  expect((await received(ruleId))[0]).toMatchObject({
    kind: "cost_projection",
    crossing: 1,
    value: 150,
    threshold: 100,
    firedAt: T0 + MIN,
  });

  // Still past the threshold: silent, however often it is evaluated.
  for (const at of [T0 + 2 * MIN, T0 + 3 * MIN]) {
    await setCost(170);
    await alarmAt(at, evict);
    await alarmAt(at, evict);
  }
  expect(await received(ruleId)).toHaveLength(1);
  const [firing] = (await admin().list({ ruleId })).alerts;
  expect(firing).toMatchObject({ alertId: `${ruleId}#1`, status: "firing", delivery: "delivered", deliveredAt: T0 + MIN, attempts: 0 });

  // Recovery resolves the alert without a notify; a new crossing notifies again.
  await setCost(80);
  await alarmAt(T0 + 4 * MIN, evict);
  await alarmAt(T0 + 4 * MIN, evict);
  expect(await received(ruleId)).toHaveLength(1);
  expect((await admin().list({ ruleId })).alerts[0]).toMatchObject({ status: "resolved", resolvedAt: T0 + 4 * MIN, resolvedValue: 80 });
  await setCost(120);
  await alarmAt(T0 + 5 * MIN, evict);
  await alarmAt(T0 + 5 * MIN, evict);
  await alarmAt(T0 + 5 * MIN, evict);
  expect((await received(ruleId)).map((a) => a.alertId)).toEqual([`${ruleId}#1`, `${ruleId}#2`]);
  const view = (await admin().rules()).rules.find((r) => r.rule.ruleId === ruleId)!;
  expect(view).toMatchObject({ state: "firing", openAlertId: `${ruleId}#2`, crossings: 2 });
  expect((await admin().list({ ruleId })).alerts.map((a) => [a.alertId, a.status])).toEqual([
    [`${ruleId}#2`, "firing"],
    [`${ruleId}#1`, "resolved"],
  ]);
}

describe("alerts: one notify per crossing", () => {
  it("fires once per crossing when its alarm runs twice and its evaluation is repeated, and again only after recovery", async () => {
    await crossingScenario("cost-twice", false);
  });

  it("loses and repeats nothing when the object is evicted between any two steps", async () => {
    await crossingScenario("cost-evicted", true);
  });

  it("retries a failed delivery with backoff, keeping the alert pending, and delivers it exactly once", async () => {
    const ruleId = "cost-retry";
    const t = T0 + 60 * MIN;
    await setCost(500);
    await admin().setRule(costRule(ruleId));
    await env.SINK_LOG.getByName(SINK_LOG_NAME).failNext(2);
    await alertsObject().runAlarmAt(t); // evaluates: crossing enqueued
    await alertsObject().runAlarmAt(t); // delivers: the sink fails (1st)
    let [alert] = (await admin().list({ ruleId })).alerts;
    expect(alert).toMatchObject({
      delivery: "pending",
      attempts: 1,
      nextAttemptAt: t + 1_000,
      lastError: expect.stringContaining("told to fail"),
    });
    await alertsObject().runAlarmAt(t + 999); // not due yet
    expect((await admin().list({ ruleId })).alerts[0]!.attempts).toBe(1);
    await alertsObject().runAlarmAt(t + 1_000); // fails again (2nd): backoff doubles
    [alert] = (await admin().list({ ruleId })).alerts;
    expect(alert).toMatchObject({ delivery: "pending", attempts: 2, nextAttemptAt: t + 3_000 });
    expect(await received(ruleId)).toHaveLength(0);
    await evictDurableObject(alertsObject());
    await alertsObject().runAlarmAt(t + 3_000); // succeeds
    await alertsObject().runAlarmAt(t + 3_000);
    await alertsObject().deliverAt(t + 10_000);
    expect((await received(ruleId)).map((a) => a.alertId)).toEqual([`${ruleId}#1`]);
    [alert] = (await admin().list({ ruleId })).alerts;
    expect(alert).toMatchObject({ delivery: "delivered", deliveredAt: t + 3_000, attempts: 0 });
    expect((await alertsObject().tasks()).some((task) => task.kind === "deliver")).toBe(false);
  });

  it("sends an alert once when two deliveries run at the same time", async () => {
    const ruleId = "cost-concurrent";
    const t = T0 + 120 * MIN;
    await setCost(500);
    await admin().setRule(costRule(ruleId));
    await alertsObject().evaluateAt(ruleId, t);
    await Promise.all([alertsObject().deliverAt(t), alertsObject().deliverAt(t), alertsObject().runAlarmAt(t)]);
    expect((await received(ruleId)).map((a) => a.alertId)).toEqual([`${ruleId}#1`]);
  });
});

describe("alerts: mute, acknowledge, change and delete", () => {
  it("records crossings while muted without delivering them, and delivers the next one after unmute", async () => {
    const ruleId = "cost-muted";
    const t = T0 + 180 * MIN;
    await setCost(10);
    await admin().setRule(costRule(ruleId));
    await alertsObject().runAlarmAt(t);
    await alertsObject().setClock(t);
    const muted = await admin().mute({ ruleId, untilMs: t + 30 * MIN });
    expect(muted.mutedUntil).toBe(t + 30 * MIN);
    await setCost(300);
    await alertsObject().runAlarmAt(t + MIN);
    await alertsObject().runAlarmAt(t + MIN);
    const [suppressed] = (await admin().list({ ruleId })).alerts;
    expect(suppressed).toMatchObject({ alertId: `${ruleId}#1`, status: "firing", delivery: "suppressed" });
    expect((await admin().rules()).rules.find((r) => r.rule.ruleId === ruleId)!.state).toBe("firing");
    // Unmuting does not deliver the crossing that happened while muted.
    await admin().unmute({ ruleId });
    await alertsObject().runAlarmAt(t + 2 * MIN);
    await alertsObject().runAlarmAt(t + 2 * MIN);
    expect(await received(ruleId)).toHaveLength(0);
    // The next crossing is delivered.
    await setCost(20);
    await alertsObject().runAlarmAt(t + 3 * MIN);
    await setCost(400);
    await alertsObject().runAlarmAt(t + 4 * MIN);
    await alertsObject().runAlarmAt(t + 4 * MIN);
    expect((await received(ruleId)).map((a) => a.alertId)).toEqual([`${ruleId}#2`]);
    // A mute that has run out delivers too.
    await alertsObject().setClock(t + 5 * MIN);
    await admin().mute({ ruleId, untilMs: t + 6 * MIN });
    await setCost(20);
    await alertsObject().runAlarmAt(t + 7 * MIN);
    await setCost(400);
    await alertsObject().runAlarmAt(t + 8 * MIN);
    await alertsObject().runAlarmAt(t + 8 * MIN);
    expect((await received(ruleId)).map((a) => a.alertId)).toEqual([`${ruleId}#2`, `${ruleId}#3`]);
  });

  it("acknowledges an alert once, lists by status, and refuses unknown alerts and rules", async () => {
    const ruleId = "cost-ack";
    const t = T0 + 240 * MIN;
    await setCost(900);
    await admin().setRule(costRule(ruleId));
    await alertsObject().runAlarmAt(t);
    const alertId = `${ruleId}#1`;
    expect((await admin().list({ status: "firing", ruleId })).alerts.map((a) => a.alertId)).toEqual([alertId]);
    await alertsObject().setClock(t + MIN);
    const acked = await admin().acknowledge({ alertId });
    expect(acked).toMatchObject({ status: "acknowledged", acknowledgedAt: t + MIN });
    await alertsObject().setClock(t + 2 * MIN);
    expect((await admin().acknowledge({ alertId })).acknowledgedAt).toBe(t + MIN);
    expect((await admin().list({ status: "firing", ruleId })).alerts).toEqual([]);
    expect((await admin().list({ status: "acknowledged", ruleId })).alerts.map((a) => a.alertId)).toEqual([alertId]);
    // Acknowledging does not stop delivery or the rule's state.
    await alertsObject().runAlarmAt(t + 2 * MIN);
    expect((await received(ruleId)).map((a) => a.alertId)).toEqual([alertId]);
    expect(await codeOf(admin().acknowledge({ alertId: `${ruleId}#7` }))).toBe("NOT_FOUND");
    expect(await codeOf(admin().mute({ ruleId: "no-such-rule", untilMs: t + 10 * MIN }))).toBe("NOT_FOUND");
    expect(await codeOf(admin().unmute({ ruleId: "no-such-rule" }))).toBe("NOT_FOUND");
    expect(await admin().list({ limit: 1 })).toMatchObject({ alerts: [expect.any(Object)] });
  });

  it("keeps an identical rule as it is, restarts a changed one, and never reuses an alert id after delete", async () => {
    const ruleId = "cost-change";
    const t = T0 + 300 * MIN;
    await setCost(900);
    await alertsObject().setClock(t);
    const first = await admin().setRule(costRule(ruleId));
    await alertsObject().runAlarmAt(t);
    await alertsObject().setClock(t + MIN);
    const same = await admin().setRule(costRule(ruleId));
    expect(same).toMatchObject({ state: "firing", updatedAt: first.updatedAt, openAlertId: `${ruleId}#1` });
    const changed = await admin().setRule(costRule(ruleId, { threshold: 1_000 } as Partial<AlertRule>));
    expect(changed).toMatchObject({ state: "ok", updatedAt: t + MIN });
    expect(changed.openAlertId).toBeUndefined();
    expect((await admin().list({ ruleId })).alerts[0]).toMatchObject({ status: "resolved", resolvedAt: t + MIN });
    // A disabled rule is not evaluated.
    await admin().setRule(costRule(ruleId, { threshold: 10, enabled: false } as Partial<AlertRule>));
    await alertsObject().runAlarmAt(t + 2 * MIN);
    expect((await admin().rules()).rules.find((r) => r.rule.ruleId === ruleId)).toMatchObject({ state: "ok" });
    expect((await alertsObject().tasks()).some((task) => task.id === `eval:${ruleId}`)).toBe(false);
    await admin().setRule(costRule(ruleId, { threshold: 10 } as Partial<AlertRule>));
    await alertsObject().runAlarmAt(t + 3 * MIN);
    expect((await admin().deleteRule({ ruleId })).deleted).toBe(true);
    expect((await admin().deleteRule({ ruleId })).deleted).toBe(false);
    expect((await admin().list({ ruleId })).alerts.map((a) => [a.alertId, a.status])).toEqual([
      [`${ruleId}#2`, "resolved"],
      [`${ruleId}#1`, "resolved"],
    ]);
    // Re-created, the rule continues its numbering, so a receiver never sees an id twice.
    await admin().setRule(costRule(ruleId));
    await alertsObject().runAlarmAt(t + 4 * MIN);
    expect((await admin().list({ ruleId })).alerts[0]!.alertId).toBe(`${ruleId}#3`);
    await alertsObject().runAlarmAt(t + 4 * MIN);
    expect((await received(ruleId)).map((a) => a.alertId)).toEqual([`${ruleId}#1`, `${ruleId}#2`, `${ruleId}#3`]);
  });

  it("keeps a rule's state when its signal cannot be read, and says why", async () => {
    const ruleId = "cost-unreadable";
    const t = T0 + 360 * MIN;
    await setCost(900);
    await admin().setRule(costRule(ruleId));
    await alertsObject().runAlarmAt(t);
    await alertsObject().setFakeCost({ fail: "cost source offline" });
    await alertsObject().runAlarmAt(t + MIN);
    await alertsObject().runAlarmAt(t + MIN);
    const view = (await admin().rules()).rules.find((r) => r.rule.ruleId === ruleId)!;
    expect(view).toMatchObject({ state: "firing", lastError: "cost source offline", lastEvaluatedAt: t + MIN, openAlertId: `${ruleId}#1` });
    expect((await admin().list({ ruleId })).alerts[0]!.status).toBe("firing");
    await setCost(900);
    await alertsObject().runAlarmAt(t + 2 * MIN);
    expect((await admin().rules()).rules.find((r) => r.rule.ruleId === ruleId)!.lastError).toBeUndefined();
    expect((await received(ruleId)).map((a) => a.alertId)).toEqual([`${ruleId}#1`]);
  });
});

describe("alerts: bad input", () => {
  const good = { kind: "denial_rate", ruleId: "bad-input", subject: "ip:203.0.113.9", windowMs: 300_000, threshold: 0.5, minRequests: 10 };
  const bad: unknown[] = [
    undefined,
    null,
    "rule",
    { ...good, kind: "cpu_high" },
    { ...good, extra: 1 },
    { ...good, ruleId: "" },
    { ...good, ruleId: "has space" },
    { ...good, ruleId: "x".repeat(65) },
    { ...good, threshold: 0 },
    { ...good, threshold: 1.5 },
    { ...good, threshold: Number.NaN },
    { ...good, windowMs: 59_999 },
    { ...good, windowMs: 86_400_001 },
    { ...good, minRequests: 0 },
    { ...good, minRequests: 1.5 },
    { ...good, recoverAt: 0.6 },
    { ...good, intervalMs: 9_999 },
    { ...good, subject: "" },
    { ...good, description: "a\u0000b" },
    { kind: "balance_below", ruleId: "b", accountId: "acct", level: 10, recoverAt: 5 },
    { kind: "balance_below", ruleId: "b", accountId: "bad id!", level: 10 },
    { kind: "key_spend_share", ruleId: "k", accountId: "acct", keyId: "k1", share: 0.8 },
    { kind: "path_error_rate", ruleId: "p", path: "no-slash", windowMs: 300_000, threshold: 0.1 },
    { kind: "path_p99", ruleId: "p", path: "/x", method: "BREW", windowMs: 300_000, threshold: 100 },
    { kind: "path_p99", ruleId: "p", path: "/x", windowMs: 300_000, threshold: 0.5 },
    { kind: "cost_projection", ruleId: "c", threshold: -1 },
  ];

  it("refuses bad rules and queries with INVALID_ARGUMENT at the service and at the object, changing nothing", async () => {
    await admin().setRule(good as AlertRule);
    await alertsObject().runAlarmAt(T0 + 400 * MIN);
    const before = await digestObject(alertsObject());
    for (const input of bad) {
      expect(await codeOf(admin().setRule(input as AlertRule)), JSON.stringify(input)).toBe("INVALID_ARGUMENT");
      expect(await codeOf(alertsObject().setRule(input)), JSON.stringify(input)).toBe("INVALID_ARGUMENT");
    }
    const now = Date.now();
    const badCalls: (() => Promise<unknown>)[] = [
      () => admin().deleteRule({ ruleId: "" }),
      () => admin().deleteRule({ ruleId: "bad-input", extra: 1 } as never),
      () => admin().list({ status: "open" } as never),
      () => admin().list({ limit: 0 }),
      () => admin().list({ limit: 1_001 }),
      () => admin().acknowledge({ alertId: "bad-input" }),
      () => admin().acknowledge({ alertId: "bad-input#0" }),
      () => admin().mute({ ruleId: "bad-input", untilMs: now - 1 }),
      () => admin().mute({ ruleId: "bad-input", untilMs: now + 400 * 86_400_000 }),
      () => admin().mute({ ruleId: "bad-input", untilMs: 1.5 }),
      () => admin().unmute({} as never),
      () => alertsObject().rules({ any: 1 }),
      () => alertsObject().list("all"),
    ];
    for (const call of badCalls) expect(await codeOf(call())).toBe("INVALID_ARGUMENT");
    expect(await digestObject(alertsObject())).toBe(before);
  });

  it("refuses a cost_projection rule with UNIMPLEMENTED while cost metrics are not available, changing nothing", async () => {
    await alertsObject().setFakeCost(null);
    const before = await digestObject(alertsObject());
    const refused = await thrown(admin().setRule({ kind: "cost_projection", ruleId: "no-cost", threshold: 10 }));
    expect(refused.code).toBe("UNIMPLEMENTED");
    expect(refused.message).toContain("cost metrics are unavailable");
    expect(await digestObject(alertsObject())).toBe(before);
  });
});

describe("the example gateway's alert receiver", () => {
  it("accepts a notification through its AlertSink entrypoint, as tollgate's ALERT_SINK binding calls it", async () => {
    const alert = {
      alertId: "demo-low#1",
      ruleId: "demo-low",
      kind: "balance_below" as const,
      crossing: 1,
      firedAt: Date.now(),
      value: 40,
      threshold: 500,
      message: "account demo: available balance 40 is below 500",
    };
    await expect(env.EXAMPLE_ALERT_SINK.notify(alert)).resolves.toBeUndefined();
    // Sent again (as after a lost answer), it is accepted again.
    await expect(env.EXAMPLE_ALERT_SINK.notify(alert)).resolves.toBeUndefined();
  });
});
