import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject, SELF } from "cloudflare:test";
import { newHttpBatchRpcSession, type RpcStub } from "capnweb";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { AdminApi, TollgateRpc } from "../../rpc/admin";
import { errorCodeOf } from "../../rpc/errors";
import type { Rule } from "../../rpc/rate-limits";
import { retentionSettings } from "../../src/admin/retention-settings";
import { DEFAULT_DATA_RETENTION, loadDataRetention } from "../../src/platform/retention";
import { PRUNE_BATCH as LEDGER_BATCH } from "../../src/credits/ledger-do";
import { CHECK_REPLAY_TTL_MS, PRUNE_BATCH as LIMITER_BATCH } from "../../src/rate-limits/limiter-do";
import { TEST_ADMIN_TOKEN } from "../fixtures/constants";

const YEAR = 366 * 24 * 3_600_000;
const RULES: Rule[] = [{ name: "r", algorithm: "fixed_window", limit: 1_000, periodMs: YEAR }];

async function countRows(stub: DurableObjectStub, table: string): Promise<number> {
  return runInDurableObject(
    stub,
    (_i: unknown, state: DurableObjectState) => state.storage.sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM ${table}`).one().n,
  );
}

/** Copies one real record `extra` times under new keys, expiring at `expiresAt`: a backlog without thousands of calls. */
async function backlog(stub: DurableObjectStub, table: string, extra: number, expiresAt: number): Promise<void> {
  await runInDurableObject(stub, (_i: unknown, state: DurableObjectState) => {
    const sql = state.storage.sql;
    sql.exec(
      `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
       INSERT INTO ${table} (idempotency_key, fingerprint, ${table === "idempotency" ? "result" : "decision"}, created_at_ms, expires_at_ms)
       SELECT 'backlog-' || i, fingerprint, ${table === "idempotency" ? "result" : "decision"}, created_at_ms, ? FROM ${table}, n LIMIT ?`,
      extra,
      expiresAt,
      extra,
    );
  });
}

describe("retention in small batches", () => {
  it("prunes a backlog of expired rate-limit idempotency records a batch per alarm run, and a doubled run changes nothing", async () => {
    const subject = "retention:limiter";
    const stub = env.TEST_RATE_LIMITER.getByName(subject);
    await stub.check({ subject, rules: RULES, idempotencyKey: "live" });
    const now = Date.now();
    await backlog(stub, "check_replays", 2 * LIMITER_BATCH + 500, now - 1);
    expect(await countRows(stub, "check_replays")).toBe(2 * LIMITER_BATCH + 501);

    // The prune runs when the oldest live record expires; the backlog goes first, a batch per run.
    const due = (await stub.tasks()).find((t) => t.kind === "prune-replays")!.dueMs;
    expect(due).toBeGreaterThan(now + CHECK_REPLAY_TTL_MS - 60_000);
    const report = await stub.runAlarmAt(due);
    expect(report.nextDueMs).toBe(due); // a full batch: the next run is due at once
    expect(await countRows(stub, "check_replays")).toBe(LIMITER_BATCH + 501);
    await evictDurableObject(stub);
    await stub.runAlarmAt(due + 1_000);
    expect(await countRows(stub, "check_replays")).toBe(501);
    await stub.runAlarmAt(due + 2_000);
    await stub.runAlarmAt(due + 2_000);
    expect(await countRows(stub, "check_replays")).toBe(0);
    expect((await stub.tasks()).map((t) => t.kind)).not.toContain("prune-replays");
  });

  it("prunes a backlog of expired ledger idempotency keys a batch per alarm run, keeping live ones", async () => {
    const accountId = "retention-ledger";
    const ledger = env.TEST_CREDIT_LEDGER.getByName(accountId);
    const now = Date.UTC(2031, 5, 1);
    await ledger.setClock(now);
    await ledger.createAccount({ accountId, name: "Retention" });
    await ledger.grant({ accountId, amount: 10, reason: "seed", idempotencyKey: "live" });
    await backlog(ledger, "idempotency", LEDGER_BATCH + 10, now - 1);
    // Records no prune task covers (as a dump restored without its tasks would leave them): a
    // write that finds no prune task reads the table for the earliest expiry, the backlog's.
    await runInDurableObject(ledger, (_i: unknown, state: DurableObjectState) => {
      state.storage.sql.exec("DELETE FROM _tasks WHERE kind = 'prune'");
    });
    await evictDurableObject(ledger);
    await ledger.grant({ accountId, amount: 5, reason: "more", idempotencyKey: "live-2" });
    const live = (await ledger.idempotencyKeys()).filter((k) => !k.startsWith("backlog-"));
    expect(live).toEqual(["live", "live-2"]);
    const due = (await ledger.tasks()).find((t) => t.kind === "prune")!.dueMs;
    expect(due).toBeLessThan(now + 86_400_000);

    await ledger.runAlarmAt(due);
    expect((await ledger.idempotencyKeys()).length).toBe(10 + live.length);
    await ledger.runAlarmAt(due + 1_000);
    await ledger.runAlarmAt(due + 1_000);
    expect(await ledger.idempotencyKeys()).toEqual(live);
    // The live key still answers its first result.
    expect(await ledger.grant({ accountId, amount: 10, reason: "seed", idempotencyKey: "live" })).toMatchObject({ amount: 10 });
    expect((await ledger.balance({ accountId })).granted).toBe(15);
  });
});

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** Awaits `promise` and returns the code it was refused with (or "none"). */
async function refusal(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return "none";
  } catch (error) {
    return errorCodeOf(error) ?? String(error);
  }
}

describe("RETENTION: idempotency windows configured per data class", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("reads durations per class, keeps defaults for the others, and refuses malformed or out-of-bounds values with a logged INTERNAL", () => {
    expect(loadDataRetention({})).toEqual(DEFAULT_DATA_RETENTION);
    expect(DEFAULT_DATA_RETENTION).toEqual({ limiterIdempotency: DAY, ledgerIdempotency: 35 * DAY });
    expect(loadDataRetention({ RETENTION: '{ "limiterIdempotency": "2h" }' })).toEqual({
      limiterIdempotency: 2 * HOUR,
      ledgerIdempotency: 35 * DAY,
    });
    expect(loadDataRetention({ RETENTION: '{ "ledgerIdempotency": "400d", "limiterIdempotency": "60m" }' })).toEqual({
      limiterIdempotency: HOUR,
      ledgerIdempotency: 400 * DAY,
    });

    const logged: string[] = [];
    vi.spyOn(console, "error").mockImplementation((...args: unknown[]) => void logged.push(args.join(" ")));
    const bad: [string, RegExp][] = [
      ["{", /not valid JSON|JSON/i],
      ["[]", /must be a JSON object/],
      ['{ "entries": "30d" }', /unknown data class "entries"/],
      ['{ "__proto__": "2h" }', /unknown data class "__proto__"/],
      ['{ "ledgerIdempotency": 3600000 }', /must be a duration string/],
      ['{ "ledgerIdempotency": "59m" }', /between 1h and 400d/],
      ['{ "limiterIdempotency": "401d" }', /between 1h and 400d/],
      ['{ "limiterIdempotency": "-2h" }', /not a duration/],
      ['{ "limiterIdempotency": "1.5h" }', /not a duration/],
    ];
    for (const [raw, reason] of bad) {
      logged.length = 0;
      let thrown: unknown;
      try {
        loadDataRetention({ RETENTION: raw });
      } catch (error) {
        thrown = error;
      }
      expect(errorCodeOf(thrown), raw).toBe("INTERNAL");
      expect(logged.join("\n"), raw).toMatch(/^RETENTION is invalid: /);
      expect(logged.join("\n"), raw).toMatch(reason);
    }
  });

  it("limiter: with a 2 h window a retry before it replays, the prune comes 2 h later in bounded batches, and a retry after it is a new call", async () => {
    const subject = "retention:limiter-2h";
    const stub = env.TEST_RATE_LIMITER.getByName(subject);
    await stub.setRetentionVar('{ "limiterIdempotency": "2h" }');
    await evictDurableObject(stub); // the variable also holds for a fresh instance
    const first = await stub.check({ subject, rules: RULES, idempotencyKey: "k" });
    const now = Date.now();
    expect(first.remaining).toBe(999);
    expect(await stub.check({ subject, rules: RULES, idempotencyKey: "k" })).toEqual(first);

    const due = (await stub.tasks()).find((t) => t.kind === "prune-replays")!.dueMs;
    expect(due).toBeGreaterThan(now + 2 * HOUR);
    expect(due).toBeLessThan(now + 2 * HOUR + 5 * 60_000);
    // A backlog already expired: still at most one batch per run, then the rest.
    await backlog(stub, "check_replays", LIMITER_BATCH + 300, now - 1);
    expect(await stub.check({ subject, rules: RULES, idempotencyKey: "k" })).toEqual(first);
    expect((await stub.runAlarmAt(due)).nextDueMs).toBe(due); // a full batch: due again at once
    expect(await countRows(stub, "check_replays")).toBe(301);
    await stub.runAlarmAt(due + 1_000);
    await stub.runAlarmAt(due + 1_000);
    expect(await countRows(stub, "check_replays")).toBe(0);
    const again = await stub.check({ subject, rules: RULES, idempotencyKey: "k" });
    expect(again.remaining).toBe(998); // charged: a new call
  });

  it("ledger: with a 1 h window a retry before it answers its first result and one after the prune is a new grant", async () => {
    const accountId = "retention-ledger-1h";
    const ledger = env.TEST_CREDIT_LEDGER.getByName(accountId);
    const now = Date.UTC(2031, 7, 1);
    await ledger.setClock(now);
    await ledger.setRetentionVar('{ "ledgerIdempotency": "1h" }');
    await ledger.createAccount({ accountId, name: "Short window" });
    const input = { accountId, amount: 10, reason: "seed", idempotencyKey: "g" };
    const first = await ledger.grant(input);
    await ledger.runAlarmAt(now + 30 * 60_000);
    expect(await ledger.grant(input)).toEqual(first);
    expect((await ledger.balance({ accountId })).granted).toBe(10);

    const due = (await ledger.tasks()).find((t) => t.kind === "prune")!.dueMs;
    expect(due).toBeLessThanOrEqual(now + 2 * HOUR + 60_000); // expiry (1 h) plus the prune's slack, not 35 days
    await evictDurableObject(ledger);
    await ledger.runAlarmAt(due);
    await ledger.runAlarmAt(due);
    expect(await ledger.idempotencyKeys()).not.toContain("g");
    const second = await ledger.grant(input);
    expect(second.entryId).not.toBe(first.entryId);
    expect((await ledger.balance({ accountId })).granted).toBe(20);
    expect((await ledger.audit({ accountId })).violations).toEqual([]);
  });

  it("refuses every call that needs a malformed RETENTION with INTERNAL and changes nothing; fixing it restores service", async () => {
    const subject = "retention:bad";
    const limiter = env.TEST_RATE_LIMITER.getByName(subject);
    const accountId = "retention-bad";
    const ledger = env.TEST_CREDIT_LEDGER.getByName(accountId);
    await ledger.createAccount({ accountId, name: "Bad config" });
    await limiter.check({ subject, rules: RULES, idempotencyKey: "before" });
    const logged: string[] = [];
    vi.spyOn(console, "error").mockImplementation((...args: unknown[]) => void logged.push(args.join(" ")));

    await limiter.setRetentionVar('{ "limiterIdempotency": "5m" }');
    await ledger.setRetentionVar('{ "ledgerIdempotency": "ever" }');
    expect(await refusal(limiter.check({ subject, rules: RULES, idempotencyKey: "k" }))).toBe("INTERNAL");
    expect(await refusal(limiter.refund({ subject, rules: RULES, cost: 1, idempotencyKey: "r" }))).toBe("INTERNAL");
    expect(await refusal(ledger.grant({ accountId, amount: 5, reason: "x", idempotencyKey: "g" }))).toBe("INTERNAL");
    expect((await limiter.peek({ subject, rules: RULES })).remaining).toBe(999);
    expect(await limiter.storedReplays()).toBe(1);
    expect((await ledger.balance({ accountId })).granted).toBe(0);
    expect(await ledger.idempotencyKeys()).toEqual([]);
    expect(logged.some((line) => line.startsWith("RETENTION is invalid: limiterIdempotency must be between 1h and 400d"))).toBe(true);

    await limiter.setRetentionVar(null);
    await ledger.setRetentionVar(null);
    expect((await limiter.check({ subject, rules: RULES, idempotencyKey: "k" })).remaining).toBe(998);
    expect((await ledger.grant({ accountId, amount: 5, reason: "x", idempotencyKey: "g" })).amount).toBe(5);
  });
});

describe("Admin.retention", () => {
  it("lists the effective retention of every data class, over the Admin binding", async () => {
    const { classes } = await env.ADMIN.retention();
    const byClass = new Map(classes.map((c) => [c.dataClass, c]));
    expect(byClass.get("limiter.idempotency")).toMatchObject({ keptMs: DAY, setting: "RETENTION.limiterIdempotency" });
    expect(byClass.get("ledger.idempotency")).toMatchObject({ keptMs: 35 * DAY, setting: "RETENTION.ledgerIdempotency" });
    expect(byClass.get("ledger.entries")).toMatchObject({ keptMs: null, setting: null });
    expect(byClass.get("paths.minutes")).toMatchObject({ keptMs: 26 * HOUR, setting: "PATH_RETENTION.minutes" });
    expect(byClass.get("paths.clients")).toMatchObject({ keptMs: 30 * DAY });
    expect([...byClass.keys()]).toEqual(
      expect.arrayContaining(["limiter.state", "ledger.keyRuleState", "ledger.keySpendDays", "paths.hours", "paths.days"]),
    );
    expect(byClass.get("metrics.minutes")).toMatchObject({ keptMs: 26 * HOUR, setting: "METRICS_RETENTION.minutes" });
    expect(byClass.get("limiter.checkCounts")).toMatchObject({ keptMs: 25 * HOUR, setting: null });
    expect(byClass.get("alerts.history")).toMatchObject({ keptMs: 30 * DAY, setting: null });
    expect(byClass.get("protection.flags")).toMatchObject({ keptMs: 30 * DAY });
    expect(byClass.get("adaptive.history")).toMatchObject({ keptMs: 90 * DAY });
    expect([...byClass.keys()]).toEqual(expect.arrayContaining(["metrics.hours", "metrics.days", "protection.baselines"]));
    expect(await env.ADMIN.retention({ dataClass: "ledger.entries" })).toEqual({ classes: [byClass.get("ledger.entries")] });
    expect(await refusal(env.ADMIN.retention({ dataClass: "everything" }))).toBe("INVALID_ARGUMENT");
    expect(await refusal(env.ADMIN.retention({ dataClass: "ledger.entries", extra: 1 } as never))).toBe("INVALID_ARGUMENT");
  });

  it("reports configured values, and fails with INTERNAL while a retention variable is malformed", () => {
    const settings = retentionSettings({ RETENTION: '{ "ledgerIdempotency": "90d" }', PATH_RETENTION: '{ "days": "30d" }' }, undefined);
    const kept = Object.fromEntries(settings.classes.map((c) => [c.dataClass, c.keptMs]));
    expect(kept).toMatchObject({
      "ledger.idempotency": 90 * DAY,
      "limiter.idempotency": DAY,
      "paths.days": 30 * DAY,
      "paths.minutes": 26 * HOUR,
    });
    vi.spyOn(console, "error").mockImplementation(() => {});
    expect(() => retentionSettings({ RETENTION: '{ "ledgerIdempotency": "0d" }' }, undefined)).toThrow(/INTERNAL/);
    expect(() => retentionSettings({ PATH_RETENTION: '{ "minutes": "1h" }' }, undefined)).toThrow(/INTERNAL/);
    vi.restoreAllMocks();
  });

  it("is on the capnweb AdminApi too", async () => {
    const realFetch = globalThis.fetch;
    globalThis.fetch = ((input: RequestInfo | URL, init?: RequestInit) => SELF.fetch(input, init)) as typeof fetch;
    try {
      const admin = () =>
        newHttpBatchRpcSession<TollgateRpc>("http://tollgate.test/rpc").authenticate(TEST_ADMIN_TOKEN) as unknown as RpcStub<AdminApi>;
      const { classes } = await admin().retention({ dataClass: "limiter.idempotency" });
      expect(classes).toEqual([expect.objectContaining({ dataClass: "limiter.idempotency", keptMs: DAY })]);
      expect(await refusal(admin().retention({ dataClass: "nope" }))).toBe("INVALID_ARGUMENT");
    } finally {
      globalThis.fetch = realFetch;
    }
  });
});
