import { env } from "cloudflare:workers";
import { evictDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { Balance, Entry } from "../rpc/credits";
import { errorCodeOf } from "../rpc/errors";
import { IDEMPOTENCY_TTL_MS } from "../src/objects/credit-ledger-do";

/** A fixed start far from any day boundary, so rollups and caps fall in one UTC day. */
const T0 = Date.UTC(2030, 0, 15, 12, 0, 0);
const DAY = 86_400_000;

let counter = 0;
/** A fresh account on the test object, its clock set to T0. */
async function freshAccount(overdraftLimit = 0) {
  const accountId = `acct-${++counter}-${Math.random().toString(16).slice(2, 8)}`;
  const ledger = env.TEST_CREDIT_LEDGER.getByName(accountId);
  await ledger.setClock(T0);
  await ledger.createAccount({ accountId, name: "Test", overdraftLimit });
  return { accountId, ledger };
}

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (error) {
    return errorCodeOf(error);
  }
  throw new Error("expected the call to throw");
}

function invariantHolds(b: Balance): void {
  expect(b.granted).toBe(b.available + b.held + b.consumed + b.expired);
  expect(b.available).toBeGreaterThanOrEqual(-b.overdraftLimit);
}

describe("CreditLedgerDO: accounts, grants and debits", () => {
  it("creates an account once; the same call again returns it, a different one is CONFLICT", async () => {
    const { accountId, ledger } = await freshAccount(5);
    const again = await ledger.createAccount({ accountId, name: "Test", overdraftLimit: 5 });
    expect(again).toMatchObject({ accountId, name: "Test", overdraftLimit: 5, createdAt: T0 });
    expect(await codeOf(ledger.createAccount({ accountId, name: "Other" }))).toBe("CONFLICT");
    expect(await ledger.balance({ accountId })).toEqual({ available: 0, held: 0, granted: 0, consumed: 0, expired: 0, overdraftLimit: 5 });
  });

  it("debits exactly 100 of 500 concurrent debits of 1 against a balance of 100", async () => {
    const { accountId, ledger } = await freshAccount();
    await ledger.grant({ accountId, amount: 100, reason: "top-up", idempotencyKey: "g1" });
    const results = await Promise.all(
      Array.from({ length: 500 }, (_, i) => ledger.debit({ accountId, amount: 1, reason: "call", idempotencyKey: `d${i}` })),
    );
    expect(results.filter((r) => r.ok)).toHaveLength(100);
    expect(results.filter((r) => !r.ok).every((r) => !r.ok && r.code === "INSUFFICIENT_CREDITS")).toBe(true);
    const balance = await ledger.balance({ accountId });
    expect(balance).toMatchObject({ available: 0, consumed: 100, granted: 100 });
    expect((await ledger.audit({ accountId })).violations).toEqual([]);
  });

  it("answers INSUFFICIENT_CREDITS as a value and changes nothing", async () => {
    const { accountId, ledger } = await freshAccount();
    await ledger.grant({ accountId, amount: 10, reason: "top-up", idempotencyKey: "g1" });
    const denied = await ledger.debit({ accountId, amount: 11, reason: "too much", idempotencyKey: "d1" });
    expect(denied).toMatchObject({ ok: false, code: "INSUFFICIENT_CREDITS", balance: { available: 10 } });
    expect((await ledger.entries({ accountId })).items.map((e) => e.kind)).toEqual(["grant"]);
  });

  it("replays a retried call with its first result and rejects the same key with other parameters", async () => {
    const { accountId, ledger } = await freshAccount();
    const grant = await ledger.grant({ accountId, amount: 10, reason: "top-up", idempotencyKey: "g1" });
    expect(await ledger.grant({ accountId, amount: 10, reason: "top-up", idempotencyKey: "g1" })).toEqual(grant);
    const first = await ledger.debit({ accountId, amount: 3, reason: "call", idempotencyKey: "d1" });
    const again = await ledger.debit({ accountId, amount: 3, reason: "call", idempotencyKey: "d1" });
    expect(again).toEqual(first);
    expect(await codeOf(ledger.debit({ accountId, amount: 4, reason: "call", idempotencyKey: "d1" }))).toBe("CONFLICT");
    expect(await codeOf(ledger.grant({ accountId, amount: 3, reason: "call", idempotencyKey: "d1" }))).toBe("CONFLICT");
    expect((await ledger.balance({ accountId })).available).toBe(7);
  });

  it("keeps idempotency keys for 35 days, then prunes them by alarm", async () => {
    const { accountId, ledger } = await freshAccount();
    await ledger.grant({ accountId, amount: 10, reason: "top-up", idempotencyKey: "g1" });
    expect(IDEMPOTENCY_TTL_MS).toBeGreaterThanOrEqual(35 * DAY);
    await ledger.runAlarmAt(T0 + 34 * DAY);
    expect(await ledger.idempotencyKeys()).toEqual(["g1"]);
    expect((await ledger.grant({ accountId, amount: 10, reason: "top-up", idempotencyKey: "g1" })).seq).toBe(1);
    await ledger.runAlarmAt(T0 + 36 * DAY);
    expect(await ledger.idempotencyKeys()).toEqual([]);
    await ledger.runAlarmAt(T0 + 36 * DAY);
    expect(await ledger.idempotencyKeys()).toEqual([]);
  });

  it("burns down by priority, then soonest expiry, then age, and records the grants drawn", async () => {
    const { accountId, ledger } = await freshAccount();
    const late = await ledger.grant({ accountId, amount: 5, expiresAt: T0 + 10 * DAY, reason: "late", idempotencyKey: "g-late" });
    const never = await ledger.grant({ accountId, amount: 5, reason: "no expiry", idempotencyKey: "g-never" });
    const soon = await ledger.grant({ accountId, amount: 5, expiresAt: T0 + DAY, reason: "soon", idempotencyKey: "g-soon" });
    const low = await ledger.grant({ accountId, amount: 5, priority: 9, expiresAt: T0 + DAY / 2, reason: "low priority", idempotencyKey: "g-low" });
    const debit = await ledger.debit({ accountId, amount: 17, reason: "big", idempotencyKey: "d1" });
    expect(debit.ok).toBe(true);
    if (!debit.ok) return;
    expect(debit.entry.draws).toEqual([
      { grantId: soon.grantId, amount: 5 },
      { grantId: late.grantId, amount: 5 },
      { grantId: never.grantId, amount: 5 },
      { grantId: low.grantId, amount: 2 },
    ]);
  });

  it("overdraws down to -overdraftLimit and no further, and a later grant pays the debt first", async () => {
    const { accountId, ledger } = await freshAccount(10);
    await ledger.grant({ accountId, amount: 5, reason: "top-up", idempotencyKey: "g1" });
    const over = await ledger.debit({ accountId, amount: 12, reason: "over", idempotencyKey: "d1" });
    expect(over).toMatchObject({ ok: true, balance: { available: -7 } });
    if (over.ok) expect(over.entry.draws.at(-1)).toEqual({ grantId: null, amount: 7 });
    expect(await ledger.debit({ accountId, amount: 4, reason: "too far", idempotencyKey: "d2" })).toMatchObject({ ok: false, code: "INSUFFICIENT_CREDITS" });
    expect(await ledger.debit({ accountId, amount: 3, reason: "to the limit", idempotencyKey: "d3" })).toMatchObject({ ok: true, balance: { available: -10 } });
    const grant = await ledger.grant({ accountId, amount: 15, expiresAt: T0 + DAY, reason: "top-up", idempotencyKey: "g2" });
    expect(grant.balanceAfter).toBe(5);
    // Expiry takes only what the debt did not: the grant repaid 10 of its 15.
    await ledger.runAlarmAt(T0 + DAY);
    expect(await ledger.balance({ accountId })).toMatchObject({ available: 0, expired: 5, consumed: 15, granted: 20 });
    expect((await ledger.audit({ accountId })).violations).toEqual([]);
  });

  it("chains entries by hash, with balanceAfter, and pages them by cursor and time", async () => {
    const { accountId, ledger } = await freshAccount();
    for (let i = 0; i < 7; i++) {
      await ledger.advanceClock(1_000);
      await ledger.grant({ accountId, amount: 10, reason: `g${i}`, idempotencyKey: `g${i}` });
    }
    const first = await ledger.entries({ accountId, limit: 3 });
    expect(first.items.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(first.cursor).toBe("3");
    const second = await ledger.entries({ accountId, limit: 3, cursor: first.cursor });
    const third = await ledger.entries({ accountId, limit: 3, cursor: second.cursor });
    expect(third).toMatchObject({ items: [{ seq: 7 }] });
    expect(third.cursor).toBeUndefined();
    const all: Entry[] = [...first.items, ...second.items, ...third.items];
    all.forEach((entry, i) => {
      expect(entry.balanceAfter).toBe(10 * (i + 1));
      if (i > 0) expect(entry.prevHash).toBe(all[i - 1]!.hash);
    });
    const window = await ledger.entries({ accountId, since: T0 + 2_000, until: T0 + 4_000 });
    expect(window.items.map((e) => e.seq)).toEqual([2, 3]);
    expect(await ledger.balance({ accountId, at: T0 + 3_500 })).toMatchObject({ available: 30, granted: 30 });
    expect(await ledger.balance({ accountId, at: T0 })).toMatchObject({ available: 0, granted: 0 });
  });

  it("loses nothing when evicted between any two calls", async () => {
    const { accountId, ledger } = await freshAccount(3);
    await ledger.grant({ accountId, amount: 10, reason: "top-up", idempotencyKey: "g1" });
    await evictDurableObject(ledger);
    await ledger.debit({ accountId, amount: 4, reason: "call", idempotencyKey: "d1" });
    await evictDurableObject(ledger);
    const reserved = await ledger.reserve({ accountId, amount: 5, ttlMs: 60_000, idempotencyKey: "r1" });
    await evictDurableObject(ledger);
    expect(await ledger.debit({ accountId, amount: 4, reason: "call", idempotencyKey: "d1" })).toMatchObject({ ok: true, balance: { available: 6 } });
    if (!reserved.ok) throw new Error("reserve failed");
    await ledger.commit({ accountId, holdId: reserved.holdId, amount: 2, idempotencyKey: "c1" });
    await evictDurableObject(ledger);
    expect(await ledger.balance({ accountId })).toEqual({ available: 4, held: 0, granted: 10, consumed: 6, expired: 0, overdraftLimit: 3 });
    expect((await ledger.verifyChain({ accountId })).ok).toBe(true);
  });
});
