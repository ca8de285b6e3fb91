import { env } from "cloudflare:workers";
import { evictDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it } from "vitest";
import type { AdaptivePolicy } from "../../../rpc/adaptive";
import { adjustmentsCache } from "../../../src/operations/adaptive/adjustments-cache";
import { DAY_MS, floorTo, MINUTE_MS } from "../../../src/platform/buckets";
import { clientIdOf } from "../../../src/path-stats/privacy";
import { shardOf } from "../../../src/path-stats/shard";
import { codeOf } from "../../fixtures/errors";
import { ADAPTIVE_LIMITS_NAME, AGGREGATOR_NAME, shardName } from "../../../src/platform/names";

/**
 * The proof of adaptive limits (issue #9, item 5): a simulated error storm recorded into path
 * statistics tightens the named rules stage by stage, the limiter really denies earlier, and
 * the storm's end relaxes them one stage per dwell, without flapping. Time is driven: the path
 * objects and the controller run on pinned clocks far in the future, so no real alarm fires
 * during a test; the limiter runs on the real clock (its windows are unaffected by the level).
 */
const SHARDS = 16; // PATH_SHARDS in vitest.config.ts
const FUTURE = floorTo(Date.now() + 60 * DAY_MS, DAY_MS);
const SETTLE = 5_000; // SIGNAL_SETTLE_MS: a reading at t covers minutes ending before t - 5 s

const controller = () => env.ADAPTIVE_LIMITS.getByName(ADAPTIVE_LIMITS_NAME);
const aggregator = () => env.AGGREGATOR.getByName(AGGREGATOR_NAME);
const adaptive = () => env.ADMIN.adaptive();

/** The storm policy: anonymous (per-IP) traffic is shed first, keyed traffic second. */
const STORM_POLICY: AdaptivePolicy = {
  name: "error-storm",
  signal: { kind: "error_rate", windowMs: 60_000, minRequests: 20 },
  tightenAbove: 0.2,
  relaxBelow: 0.05,
  dwellMs: 120_000,
  evaluateEveryMs: 15_000,
  stages: [
    { policy: "per-ip", factor: 0.1 }, // minute: 100 -> 10 per minute
    { policy: "per-key", rules: ["hour"], factor: 0.001 }, // hour: 10,000 -> 10 per hour
  ],
};

let collectorClient: string | undefined;
async function collector() {
  collectorClient ??= (await clientIdOf("203.0.113.9", "truncate"))!;
  return { client: collectorClient, stub: env.PATH_COLLECTOR.getByName(shardName(shardOf(collectorClient, SHARDS))) };
}

/** Records one minute of traffic into path statistics: `requests` hits, `errors` of them 503. */
async function recordMinute(minute: number, requests: number, errors: number): Promise<void> {
  const { client, stub } = await collector();
  await stub.pinClock(minute + 59_000);
  const hits = Array.from({ length: requests }, (_, i) => ({
    client,
    method: "GET" as const,
    path: "/storm",
    status: i < errors ? 503 : 200,
    latencyMs: 12,
    at: minute + (i % 59) * 1_000,
  }));
  expect(await stub.ingest({ hits })).toEqual({ accepted: requests });
}

/** Runs the alarms that move closed minutes into the aggregator's rollups, as of `nowMs`. */
async function settlePaths(nowMs: number): Promise<void> {
  const { stub } = await collector();
  await aggregator().pinClock(nowMs);
  await stub.pinClock(nowMs);
  await stub.runAlarmAt(nowMs);
  await aggregator().runAlarmAt(nowMs + 2_000);
}

/** One evaluation by the controller's own alarm at `nowMs` (the task must be due). */
async function evaluateAt(nowMs: number): Promise<void> {
  const report = await controller().runAlarmAt(nowMs);
  expect(report.ran).toBe(1);
}

async function levelOf(name: string): Promise<number> {
  const state = await adaptive().state();
  return state.policies.find((policy) => policy.name === name)!.level;
}

/** `n` checks of cost 1 on a fresh subject: how many were admitted. Limiters see the newest factors. */
async function admitted(subject: string, policy: string, n: number): Promise<number> {
  adjustmentsCache.forget();
  let count = 0;
  for (let i = 0; i < n; i += 1) if ((await env.LIMITS.check({ subject, policy })).allowed) count += 1;
  return count;
}

let subjects = 0;
const fresh = (kind: "ip" | "key") => `${kind}:adaptive-${Date.now()}-${(subjects += 1)}`;

afterEach(async () => {
  for (const policy of (await adaptive().policies()).policies) await adaptive().deletePolicy({ name: policy.name });
  adjustmentsCache.forget();
});

describe("adaptive limits under a simulated error storm", () => {
  it("tightens stage by stage while the storm lasts, the limiter denies earlier, then relaxes one stage per dwell", async () => {
    const base = FUTURE + MINUTE_MS; // minute 0 of this scenario
    const at = (minute: number, ms = 0) => base + minute * MINUTE_MS + ms;
    await controller().pinClock(at(0));
    await adaptive().setPolicy(STORM_POLICY);

    // Minute 0 healthy (2 % errors); minutes 1..4 a storm (50 %); minutes 5.. healthy again.
    const errorsIn = (minute: number) => (minute >= 1 && minute <= 4 ? 50 : 2);
    let recorded = -1;
    const recordThrough = async (minute: number) => {
      while (recorded < minute) {
        recorded += 1;
        await recordMinute(at(recorded), 100, errorsIn(recorded));
      }
      await settlePaths(at(minute + 1, 3_000));
    };

    // Healthy: level 0, and a client may make 11 calls a minute (the limit is 100).
    await recordThrough(0);
    await evaluateAt(at(1, SETTLE));
    expect(await levelOf("error-storm")).toBe(0);
    expect(await admitted(fresh("ip"), "per-ip", 11)).toBe(11);

    // The storm's first minute is read: stage 1 (per-IP traffic) applies at once.
    await recordThrough(1);
    await evaluateAt(at(2, SETTLE));
    expect(await levelOf("error-storm")).toBe(1);
    const ipSubject = fresh("ip");
    expect(await admitted(ipSubject, "per-ip", 11)).toBe(10);
    adjustmentsCache.forget();
    const denied = await env.LIMITS.check({ subject: ipSubject, policy: "per-ip" });
    expect(denied).toMatchObject({ allowed: false, limit: 10, deniedBy: ["minute"] });
    expect(denied.headers["RateLimit-Policy"]).toBe('"minute";q=10;w=60');
    // The lower-priority stage went first: keyed traffic is not tightened yet.
    expect(await admitted(fresh("key"), "per-key", 11)).toBe(11);

    // Still stormy one minute later, but inside the dwell: no second stage yet.
    await evictDurableObject(controller());
    await controller().pinClock(at(3));
    await recordThrough(2);
    await evaluateAt(at(3, SETTLE));
    expect(await levelOf("error-storm")).toBe(1);

    // Still stormy after the dwell: stage 2 tightens keyed traffic too.
    await recordThrough(3);
    await evaluateAt(at(4, SETTLE));
    expect(await levelOf("error-storm")).toBe(2);
    expect(await admitted(fresh("key"), "per-key", 11)).toBe(10);
    expect(await admitted(fresh("ip"), "per-ip", 11)).toBe(10);

    // The storm ends after minute 4. Quiet readings start at minute 6; the last change was at
    // minute 4, so the first relax comes 2 minutes (the dwell) into the quiet run.
    await recordThrough(4);
    await evaluateAt(at(5, SETTLE));
    expect(await levelOf("error-storm")).toBe(2);
    await evictDurableObject(controller());
    await recordThrough(5);
    await evaluateAt(at(6, SETTLE));
    await recordThrough(6);
    await evaluateAt(at(7, SETTLE));
    expect(await levelOf("error-storm")).toBe(2);
    await recordThrough(7);
    await evaluateAt(at(8, SETTLE));
    expect(await levelOf("error-storm")).toBe(1);
    // Keyed traffic gets its limits back first; anonymous traffic is still shed.
    expect(await admitted(fresh("key"), "per-key", 11)).toBe(11);
    expect(await admitted(fresh("ip"), "per-ip", 11)).toBe(10);

    // One stage at a time: the next relax needs another dwell.
    await recordThrough(8);
    await evaluateAt(at(9, SETTLE));
    expect(await levelOf("error-storm")).toBe(1);
    await recordThrough(9);
    await evaluateAt(at(10, SETTLE));
    expect(await levelOf("error-storm")).toBe(0);
    expect(await admitted(fresh("ip"), "per-ip", 11)).toBe(11);

    // Every change is recorded with its reading and the rules it touched, newest first.
    const { changes } = await adaptive().history({ policy: "error-storm" });
    expect(changes.map((c) => [c.from, c.to, c.reason, c.at])).toEqual([
      [1, 0, "relaxed", at(10, SETTLE)],
      [2, 1, "relaxed", at(8, SETTLE)],
      [1, 2, "tightened", at(4, SETTLE)],
      [0, 1, "tightened", at(2, SETTLE)],
    ]);
    expect(changes.at(-1)!.value).toBe(0.5);
    expect(changes.at(-1)!.rules).toEqual([{ policy: "per-ip", rule: "minute", factor: 0.1, limit: 100, adjustedLimit: 10 }]);
    expect(changes.at(-2)!.rules).toEqual([{ policy: "per-key", rule: "hour", factor: 0.001, limit: 10_000, adjustedLimit: 10 }]);
    expect(changes[1]!.rules).toEqual([{ policy: "per-key", rule: "hour", factor: 1, limit: 10_000, adjustedLimit: 10_000 }]);
    expect(changes[0]!.value).toBe(0.02);
    expect((await adaptive().history({ range: { from: at(3), to: at(9) } })).changes.map((c) => c.to)).toEqual([1, 2]);
  });

  it("holds its level while the signal oscillates between relaxBelow and tightenAbove (no flapping)", async () => {
    const base = FUTURE + DAY_MS;
    const at = (minute: number, ms = 0) => base + minute * MINUTE_MS + ms;
    await controller().pinClock(at(0));
    await adaptive().setPolicy({ ...STORM_POLICY, dwellMs: 60_000 });
    // One stormy minute (level 1), then 12 minutes alternating 8 % and 15 % errors: both
    // inside the hysteresis band (5 %..20 %), each read twice (every 30 s).
    const errors = [40, ...Array.from({ length: 12 }, (_, i) => (i % 2 === 0 ? 8 : 15))];
    for (let minute = 0; minute < errors.length; minute += 1) {
      await recordMinute(at(minute), 100, errors[minute]!);
      await settlePaths(at(minute + 1, 3_000));
      await evaluateAt(at(minute + 1, SETTLE));
      await evaluateAt(at(minute + 1, 35_000));
      expect(await levelOf("error-storm")).toBe(1);
    }
    const state = (await adaptive().state()).policies[0]!;
    expect(state.lastValue).toBe(0.15);
    expect(state.belowSince).toBeNull();
    expect((await adaptive().history({ range: { from: base, to: base + DAY_MS } })).changes).toHaveLength(1);
  });

  it("changes nothing when its alarm runs twice, or when one evaluation is retried", async () => {
    const base = FUTURE + 2 * DAY_MS;
    const at = (minute: number, ms = 0) => base + minute * MINUTE_MS + ms;
    await controller().pinClock(at(0));
    await adaptive().setPolicy(STORM_POLICY);
    await recordMinute(at(0), 100, 60);
    await settlePaths(at(1, 3_000));

    await evaluateAt(at(1, SETTLE));
    const state = await controller().snapshot();
    expect(await levelOf("error-storm")).toBe(1);
    // The alarm fires again at the same instant: the task is not due, nothing runs.
    expect((await controller().runAlarmAt(at(1, SETTLE))).ran).toBe(0);
    expect(await controller().snapshot()).toBe(state);
    // The same evaluation retried (an at-least-once alarm): the same reading, no second stage.
    await evictDurableObject(controller());
    await controller().evaluateAt("error-storm", at(1, SETTLE));
    expect(await controller().snapshot()).toBe(state);
    expect((await adaptive().history({ range: { from: base, to: base + DAY_MS } })).changes).toHaveLength(1);
  });

  it("holds the level when the signal cannot be read, and evaluates only while a policy exists", async () => {
    const base = FUTURE + 3 * DAY_MS;
    await controller().pinClock(base);
    expect(await controller().tasks()).toEqual([]);
    await adaptive().setPolicy({
      ...STORM_POLICY,
      signal: { kind: "p99_latency", path: "/storm", method: "GET", minRequests: 1 },
      tightenAbove: 5,
      relaxBelow: 1,
    });
    expect((await controller().tasks()).map((task) => [task.kind, task.dueMs])).toEqual([["evaluate", base + 15_000]]);
    await recordMinute(base, 30, 0);
    await settlePaths(base + MINUTE_MS + 3_000);
    await evaluateAt(base + MINUTE_MS + SETTLE);
    // p99 of 12 ms latencies is past 5 ms: tightened.
    const state = (await adaptive().state()).policies[0]!;
    expect(state.level).toBe(1);
    expect(state.lastValue).toBeGreaterThan(11.8);
    expect(state.adjusted).toEqual([{ policy: "per-ip", rule: "minute", factor: 0.1, limit: 100, adjustedLimit: 10 }]);
    expect((await adaptive().state()).effective).toEqual(state.adjusted);

    // The aggregator cannot be read: the level is held, the error shown, the cadence kept.
    await controller().failSignalReads(true);
    await evaluateAt(base + 10 * MINUTE_MS);
    const failed = (await adaptive().state()).policies[0]!;
    expect(failed).toMatchObject({
      level: 1,
      lastError: "aggregator unreachable",
      lastEvaluatedAt: base + 10 * MINUTE_MS,
      nextEvaluationAt: base + 10 * MINUTE_MS + 15_000,
    });
    await controller().failSignalReads(false);
    await evaluateAt(base + 11 * MINUTE_MS);
    expect((await adaptive().state()).policies[0]).toMatchObject({ level: 1, lastError: null, lastValue: null });

    expect(await adaptive().deletePolicy({ name: "error-storm" })).toEqual({ deleted: true });
    expect(await adaptive().deletePolicy({ name: "error-storm" })).toEqual({ deleted: false });
    expect(await controller().tasks()).toEqual([]);
    expect((await adaptive().state()).effective).toEqual([]);
    expect((await adaptive().history({ limit: 1 })).changes[0]).toMatchObject({ from: 1, to: 0, reason: "policy_deleted" });
    expect(await admitted(fresh("ip"), "per-ip", 11)).toBe(11);
  });

  it("lets a subject's override win over an adaptive adjustment", async () => {
    const base = FUTURE + 4 * DAY_MS;
    await controller().pinClock(base);
    await adaptive().setPolicy(STORM_POLICY);
    await recordMinute(base, 100, 60);
    await settlePaths(base + MINUTE_MS + 3_000);
    await evaluateAt(base + MINUTE_MS + SETTLE);
    expect(await levelOf("error-storm")).toBe(1);
    const subject = fresh("ip");
    await env.LIMITS.setOverride({ subject, rules: [{ name: "minute", algorithm: "sliding_window", limit: 50, periodMs: 60_000 }] });
    expect(await admitted(subject, "per-ip", 11)).toBe(11);
  });

  it("refuses bad policies and queries with INVALID_ARGUMENT and leaves its state unchanged", async () => {
    await controller().pinClock(FUTURE + 5 * DAY_MS);
    await adaptive().setPolicy(STORM_POLICY);
    const before = await controller().snapshot();
    const bad: unknown[] = [
      { ...STORM_POLICY, relaxBelow: 0.2 },
      { ...STORM_POLICY, relaxBelow: 0.3 },
      { ...STORM_POLICY, tightenAbove: 2 },
      { ...STORM_POLICY, tightenAbove: Number.NaN },
      { ...STORM_POLICY, dwellMs: 0 },
      { ...STORM_POLICY, dwellMs: 1.5e3 + 0.5 },
      { ...STORM_POLICY, evaluateEveryMs: 100 },
      { ...STORM_POLICY, stages: [] },
      { ...STORM_POLICY, stages: [{ policy: "per-ip", factor: 1 }] },
      { ...STORM_POLICY, stages: [{ policy: "per-ip", factor: 0 }] },
      { ...STORM_POLICY, stages: [{ policy: "nope", factor: 0.5 }] },
      { ...STORM_POLICY, stages: [{ policy: "per-key", rules: ["nope"], factor: 0.5 }] },
      { ...STORM_POLICY, stages: [{ policy: "per-key", rules: [], factor: 0.5 }] },
      { ...STORM_POLICY, stages: Array(9).fill({ policy: "per-ip", factor: 0.5 }) },
      { ...STORM_POLICY, signal: { kind: "error_rate", windowMs: 90_000 } },
      { ...STORM_POLICY, signal: { kind: "p99_latency", path: "storm" } },
      { ...STORM_POLICY, signal: { kind: "p99_latency", method: "get" } },
      { ...STORM_POLICY, signal: { kind: "request_rate", minRequests: 3 } },
      { ...STORM_POLICY, signal: { kind: "cpu" } },
      { ...STORM_POLICY, name: "Bad Name" },
      { ...STORM_POLICY, extra: true },
      { ...STORM_POLICY, stages: [{ policy: "per-ip", factor: 0.5, extra: 1 }] },
      null,
      "policy",
    ];
    for (const input of bad) {
      expect(await codeOf(adaptive().setPolicy(input as AdaptivePolicy)), JSON.stringify(input)).toBe("INVALID_ARGUMENT");
      // The object checks too: a sibling bound to the class directly is not trusted either.
      expect(await codeOf(controller().setPolicy(input))).toBe("INVALID_ARGUMENT");
    }
    for (const input of [{}, { name: 5 }, { name: "error-storm", extra: 1 }]) {
      expect(await codeOf(adaptive().deletePolicy(input as { name: string }))).toBe("INVALID_ARGUMENT");
    }
    for (const input of [{ limit: 0 }, { limit: 1_001 }, { range: "2h" }, { policy: "" }, { extra: 1 }]) {
      expect(await codeOf(adaptive().history(input as never))).toBe("INVALID_ARGUMENT");
    }
    expect(await controller().snapshot()).toBe(before);
    expect(await codeOf(env.ADAPTIVE_LIMITS.getByName("other").setPolicy(STORM_POLICY))).toBe("INVALID_ARGUMENT");
  });

  it("keeps a replaced policy's level, capped at its new stage count, and records the change", async () => {
    const base = FUTURE + 6 * DAY_MS;
    await controller().pinClock(base);
    await adaptive().setPolicy({ ...STORM_POLICY, dwellMs: 1_000 });
    await recordMinute(base, 100, 60);
    await settlePaths(base + MINUTE_MS + 3_000);
    await evaluateAt(base + MINUTE_MS + SETTLE);
    await evaluateAt(base + MINUTE_MS + 20_000);
    expect(await levelOf("error-storm")).toBe(2);
    const replaced = await adaptive().setPolicy({ ...STORM_POLICY, stages: [STORM_POLICY.stages[0]!] });
    expect(replaced.state.level).toBe(1);
    expect((await adaptive().history({ limit: 1 })).changes[0]).toMatchObject({
      from: 2,
      to: 1,
      reason: "policy_changed",
      rules: [{ policy: "per-key", rule: "hour", factor: 1 }],
    });
    expect((await adaptive().policies()).policies).toEqual([{ ...STORM_POLICY, stages: [STORM_POLICY.stages[0]] }]);
  });
});
