import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { PRUNE_BATCH as LEDGER_BATCH } from "../src/objects/credit-ledger-do";
import { CHECK_REPLAY_TTL_MS, PRUNE_BATCH as LIMITER_BATCH } from "../src/objects/rate-limiter-do";
import type { Rule } from "../rpc/rate-limits";

const YEAR = 366 * 24 * 3_600_000;
const RULES: Rule[] = [{ name: "r", algorithm: "fixed_window", limit: 1_000, periodMs: YEAR }];

async function countRows(stub: DurableObjectStub, table: string): Promise<number> {
  return runInDurableObject(stub, (_i: unknown, state: DurableObjectState) => state.storage.sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM ${table}`).one().n);
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
    // The next write schedules the prune for the earliest expiry, the backlog's.
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
