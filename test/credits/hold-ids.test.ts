// Hold ids carry their expiry (src/credits/hold-ids.ts): the holds table, clustered on the id,
// lies in order of expiry, so a hold writes no index row and the due holds are a range of ids.
// Holds made before migration 10 are found by the partial index `holds_open_legacy`.
import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { HOLD_ID_CEILING, holdIdFloor, LEGACY_HOLD_ID, newHoldId } from "../../src/credits/hold-ids";
import { DUE_HOLDS, SettledThrough } from "../../src/credits/holds";
import type { CreditLedgerDO } from "../../src/credits/ledger-do";
import { rowsWrittenBy } from "../fixtures/rows-written";

/** A fixed start far from any day boundary. */
const T0 = Date.UTC(2030, 0, 15, 12, 0, 0);
let counter = 0;

async function fundedAccount(name: string) {
  const accountId = `hold-ids-${++counter}-${crypto.randomUUID().slice(0, 6)}`;
  const ledger = env.TEST_CREDIT_LEDGER.getByName(accountId);
  await ledger.setClock(T0);
  await ledger.createAccount({ accountId, name });
  await ledger.grant({ accountId, amount: 100, reason: "g", idempotencyKey: "g" });
  return { accountId, ledger };
}

async function reserved(
  ledger: Awaited<ReturnType<typeof fundedAccount>>["ledger"],
  accountId: string,
  amount: number,
  ttlMs: number,
  key: string,
) {
  const hold = await ledger.reserve({ accountId, amount, ttlMs, idempotencyKey: key });
  if (!hold.ok) throw new Error("reserve failed");
  return hold;
}

describe("hold ids", () => {
  it("carry their expiry in the public id format, with 36 random bits, and sort by it", () => {
    const id = newHoldId(T0 + 60_000);
    expect(id).toMatch(/^h_[0-9a-f]{20}$/);
    expect(Number.parseInt(id.slice(2, 13), 16)).toBe(T0 + 60_000);
    expect(holdIdFloor(T0 + 60_000) < id && id < holdIdFloor(T0 + 60_001)).toBe(true);
    expect(newHoldId(T0 + 1) < newHoldId(T0 + 2)).toBe(true);
    expect(id < HOLD_ID_CEILING).toBe(true);
    // An expiry past 11 hex digits gets a wholly random id, which the legacy index covers.
    expect(newHoldId(16 ** 11)).toMatch(/^h_[0-9a-f]{20}$/);
  });

  it("a reserve writes the hold's row and no index row; its commit writes the row again, with its key's index entry", async () => {
    const { accountId, ledger } = await fundedAccount("one row");
    const placed = await runInDurableObject(ledger, (instance: CreditLedgerDO, state: DurableObjectState) =>
      rowsWrittenBy(state, () => instance.reserve({ accountId, amount: 10, ttlMs: 60_000, idempotencyKey: "h" })),
    );
    expect(placed.rows.get("holds")).toBe(1);
    if (!placed.result.ok) throw new Error("reserve failed");
    const holdId = placed.result.holdId;
    const settled = await runInDurableObject(ledger, (instance: CreditLedgerDO, state: DurableObjectState) =>
      rowsWrittenBy(state, () => instance.commit({ accountId, holdId, amount: 4, idempotencyKey: "c" })),
    );
    // The row keeps the commit's idempotency record (schema step 11): the unique index over its key is the second row.
    expect(settled.rows.get("holds")).toBe(2);
    expect(await ledger.balance({ accountId })).toMatchObject({ available: 96, held: 0, consumed: 4 });
  });

  it("due holds are a range of the primary key; legacy ones are found by their index", async () => {
    const { ledger } = await fundedAccount("plans");
    const plan = await runInDurableObject(ledger, (_instance: unknown, state: DurableObjectState) =>
      state.storage.sql
        .exec<{ detail: string }>(`EXPLAIN QUERY PLAN ${DUE_HOLDS}`, T0, holdIdFloor(T0 - 1_000), holdIdFloor(T0 + 1))
        .toArray()
        .map((row) => row.detail)
        .join("\n"),
    );
    expect(plan).toMatch(/SEARCH holds USING INDEX holds_open_legacy \(expires_at_ms<\?\)/);
    expect(plan).toMatch(/SEARCH holds USING PRIMARY KEY \(hold_id>\? AND hold_id<\?\)/);
    expect(plan).not.toMatch(/SCAN holds/);
  });

  it("expire on time after a restart: the first write looks back from the last entry", async () => {
    const { accountId, ledger } = await fundedAccount("restart");
    const short = await reserved(ledger, accountId, 30, 60_000, "h1");
    const long = await reserved(ledger, accountId, 20, 600_000, "h2");
    await evictDurableObject(ledger);
    await ledger.setClock(T0 + 60_001);
    // No alarm ran: the debit's own settling releases the short hold, and the 30 it held are spendable.
    expect(await ledger.debit({ accountId, amount: 80, reason: "d", idempotencyKey: "d" })).toMatchObject({
      ok: true,
      balance: { available: 0, held: 20 },
    });
    expect(await ledger.hold({ accountId, holdId: short.holdId })).toMatchObject({ status: "expired" });
    expect(await ledger.hold({ accountId, holdId: long.holdId })).toMatchObject({ status: "open" });
    await evictDurableObject(ledger);
    await ledger.runAlarmAt(T0 + 600_000);
    expect(await ledger.hold({ accountId, holdId: long.holdId })).toMatchObject({ status: "expired" });
    expect(await ledger.balance({ accountId })).toMatchObject({ available: 20, held: 0 });
    expect((await ledger.audit({ accountId })).violations).toEqual([]);
  });

  it("the alarm finds the next open hold past settled ones, and a hold of an id without its expiry by the legacy index", async () => {
    const { accountId, ledger } = await fundedAccount("legacy");
    const settled = await reserved(ledger, accountId, 10, 30_000, "h1");
    await ledger.commit({ accountId, holdId: settled.holdId, amount: 10, idempotencyKey: "c1" });
    const open = await reserved(ledger, accountId, 15, 90_000, "h2");
    const legacy = await reserved(ledger, accountId, 25, 120_000, "h3");
    const legacyId = "h_ffffffffff0123456789";
    // As a ledger from before migration 10 stored it: an id that does not carry its expiry.
    const indexed = await runInDurableObject(ledger, (_instance: unknown, state: DurableObjectState) => {
      state.storage.sql.exec("UPDATE holds SET hold_id = ? WHERE hold_id = ?", legacyId, legacy.holdId);
      return state.storage.sql
        .exec<{ hold_id: string }>(`SELECT hold_id FROM holds INDEXED BY holds_open_legacy WHERE status = 'open' AND ${LEGACY_HOLD_ID}`)
        .toArray()
        .map((row) => row.hold_id);
    });
    expect(indexed).toEqual([legacyId]);
    await evictDurableObject(ledger);
    // The first alarm is due at the settled hold's expiry: it releases nothing and finds the next open hold.
    expect(await ledger.runAlarmAt(T0 + 30_000)).toMatchObject({ nextDueMs: T0 + 90_000 });
    expect(await ledger.hold({ accountId, holdId: open.holdId })).toMatchObject({ status: "open" });
    expect(await ledger.runAlarmAt(T0 + 90_000)).toMatchObject({ nextDueMs: T0 + 120_000 });
    expect(await ledger.hold({ accountId, holdId: open.holdId })).toMatchObject({ status: "expired" });
    await ledger.runAlarmAt(T0 + 120_000);
    expect(await ledger.hold({ accountId, holdId: legacyId })).toMatchObject({ status: "expired" });
    expect(await ledger.balance({ accountId })).toMatchObject({ available: 90, held: 0, consumed: 10 });
    expect((await ledger.audit({ accountId })).violations).toEqual([]);
  });
});

describe("SettledThrough", () => {
  it("starts a restart's look back from the last entry, moves forward when holds are settled, and back for a hold placed behind it", () => {
    const mark = new SettledThrough(() => T0);
    expect(mark.get()).toBe(T0 - 60_000);
    mark.advance(T0 + 5_000);
    expect(mark.get()).toBe(T0 + 5_000);
    mark.advance(T0);
    expect(mark.get()).toBe(T0 + 5_000);
    // A call that waited in a batch places a hold expiring before the last look: it must be looked at again.
    mark.cover(T0 + 3_000);
    expect(mark.get()).toBe(T0 + 2_999);
    mark.cover(T0 + 9_000);
    expect(mark.get()).toBe(T0 + 2_999);
    // A failed transaction rolls it back with the storage it described.
    const before = mark.mark();
    mark.advance(T0 + 20_000);
    mark.restore(before);
    expect(mark.get()).toBe(T0 + 2_999);
    mark.forget();
    expect(mark.get()).toBe(T0 - 60_000);
  });
});
