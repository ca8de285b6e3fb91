import { env } from "cloudflare:workers";
import { evictDurableObject, runDurableObjectAlarm } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { Balance, Entry } from "../../rpc/credits";
import { IDEMPOTENCY_TTL_MS } from "../../src/credits/ledger-do";
import { codeOf } from "../fixtures/errors";

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

  it("books a key sent 50 times at once exactly once, and reserves exactly what is there under concurrency", async () => {
    const { accountId, ledger } = await freshAccount();
    await ledger.grant({ accountId, amount: 50, reason: "top-up", idempotencyKey: "g1" });
    const same = await Promise.all(
      Array.from({ length: 50 }, () => ledger.debit({ accountId, amount: 2, reason: "retry storm", idempotencyKey: "once" })),
    );
    expect(new Set(same.map((r) => JSON.stringify(r))).size).toBe(1);
    const holds = await Promise.all(
      Array.from({ length: 200 }, (_, i) => ledger.reserve({ accountId, amount: 1, ttlMs: 60_000, idempotencyKey: `r${i}` })),
    );
    const granted = holds.filter((h) => h.ok);
    expect(granted).toHaveLength(48);
    await Promise.all(
      granted.map((h, i) => (h.ok ? ledger.commit({ accountId, holdId: h.holdId, amount: 1, idempotencyKey: `c${i}` }) : undefined)),
    );
    expect(await ledger.balance({ accountId })).toMatchObject({ available: 0, held: 0, consumed: 50 });
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
    const low = await ledger.grant({
      accountId,
      amount: 5,
      priority: 9,
      expiresAt: T0 + DAY / 2,
      reason: "low priority",
      idempotencyKey: "g-low",
    });
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
    expect(await ledger.debit({ accountId, amount: 4, reason: "too far", idempotencyKey: "d2" })).toMatchObject({
      ok: false,
      code: "INSUFFICIENT_CREDITS",
    });
    expect(await ledger.debit({ accountId, amount: 3, reason: "to the limit", idempotencyKey: "d3" })).toMatchObject({
      ok: true,
      balance: { available: -10 },
    });
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
    expect(await ledger.debit({ accountId, amount: 4, reason: "call", idempotencyKey: "d1" })).toMatchObject({
      ok: true,
      balance: { available: 6 },
    });
    if (!reserved.ok) throw new Error("reserve failed");
    await ledger.commit({ accountId, holdId: reserved.holdId, amount: 2, idempotencyKey: "c1" });
    await evictDurableObject(ledger);
    expect(await ledger.balance({ accountId })).toEqual({ available: 4, held: 0, granted: 10, consumed: 6, expired: 0, overdraftLimit: 3 });
    expect((await ledger.verifyChain({ accountId })).ok).toBe(true);
  });
});

describe("CreditLedgerDO: holds, expiry and refunds", () => {
  it("reserves, then commits part and releases the rest, drawing from the grants the hold reserved", async () => {
    const { accountId, ledger } = await freshAccount();
    const grant = await ledger.grant({ accountId, amount: 100, reason: "top-up", idempotencyKey: "g1" });
    const hold = await ledger.reserve({ accountId, amount: 30, ttlMs: 60_000, idempotencyKey: "r1" });
    expect(hold).toMatchObject({ ok: true, expiresAt: T0 + 60_000, balance: { available: 70, held: 30 } });
    if (!hold.ok) return;
    const commit = await ledger.commit({ accountId, holdId: hold.holdId, amount: 12, idempotencyKey: "c1" });
    expect(commit).toMatchObject({ ok: true, balance: { available: 88, held: 0, consumed: 12 } });
    if (commit.ok) expect(commit.entry.draws).toEqual([{ grantId: grant.grantId, amount: 12 }]);
    expect(await ledger.hold({ accountId, holdId: hold.holdId })).toMatchObject({ status: "committed", amount: 30 });
    // A hold is settled once: a second commit (other key) or a void is answered HOLD_NOT_OPEN.
    expect(await ledger.commit({ accountId, holdId: hold.holdId, amount: 1, idempotencyKey: "c2" })).toMatchObject({
      ok: false,
      code: "HOLD_NOT_OPEN",
      status: "committed",
    });
    expect(await ledger.void({ accountId, holdId: hold.holdId })).toMatchObject({ ok: false, code: "HOLD_NOT_OPEN", status: "committed" });
    invariantHolds(await ledger.balance({ accountId }));
  });

  it("voids a hold in full, once", async () => {
    const { accountId, ledger } = await freshAccount();
    await ledger.grant({ accountId, amount: 10, reason: "top-up", idempotencyKey: "g1" });
    const hold = await ledger.reserve({ accountId, amount: 10, ttlMs: 60_000, idempotencyKey: "r1" });
    if (!hold.ok) throw new Error("reserve failed");
    expect(await ledger.reserve({ accountId, amount: 1, ttlMs: 60_000, idempotencyKey: "r2" })).toMatchObject({
      ok: false,
      code: "INSUFFICIENT_CREDITS",
    });
    const voided = await ledger.void({ accountId, holdId: hold.holdId });
    expect(voided).toMatchObject({ ok: true, entry: { kind: "void", change: { held: -10 } }, balance: { available: 10, held: 0 } });
    expect(await ledger.void({ accountId, holdId: hold.holdId })).toMatchObject({ ok: false, status: "voided" });
    expect((await ledger.balance({ accountId })).available).toBe(10);
  });

  it("settles each hold exactly once when commits and voids race", async () => {
    const { accountId, ledger } = await freshAccount();
    await ledger.grant({ accountId, amount: 100, reason: "top-up", idempotencyKey: "g1" });
    const holds = await Promise.all(
      Array.from({ length: 20 }, (_, i) => ledger.reserve({ accountId, amount: 5, ttlMs: 60_000, idempotencyKey: `r${i}` })),
    );
    const outcomes = await Promise.all(
      holds.flatMap((h, i) => {
        if (!h.ok) throw new Error("reserve failed");
        return [
          ledger.commit({ accountId, holdId: h.holdId, amount: 2, idempotencyKey: `c${i}` }),
          ledger.void({ accountId, holdId: h.holdId }),
          ledger.commit({ accountId, holdId: h.holdId, amount: 3, idempotencyKey: `d${i}` }),
        ];
      }),
    );
    for (let i = 0; i < 20; i++) expect(outcomes.slice(3 * i, 3 * i + 3).filter((o) => o.ok)).toHaveLength(1);
    const balance = await ledger.balance({ accountId });
    expect(balance.held).toBe(0);
    invariantHolds(balance);
    expect((await ledger.audit({ accountId })).violations).toEqual([]);
  });

  it("captures more than was held only within the overdraft", async () => {
    const { accountId, ledger } = await freshAccount(5);
    await ledger.grant({ accountId, amount: 10, reason: "top-up", idempotencyKey: "g1" });
    const hold = await ledger.reserve({ accountId, amount: 8, ttlMs: 60_000, idempotencyKey: "r1" });
    if (!hold.ok) throw new Error("reserve failed");
    expect(await ledger.commit({ accountId, holdId: hold.holdId, amount: 16, idempotencyKey: "c1" })).toMatchObject({
      ok: false,
      code: "INSUFFICIENT_CREDITS",
    });
    expect(await ledger.hold({ accountId, holdId: hold.holdId })).toMatchObject({ status: "open" });
    const commit = await ledger.commit({ accountId, holdId: hold.holdId, amount: 15, idempotencyKey: "c2" });
    expect(commit).toMatchObject({ ok: true, balance: { available: -5, held: 0, consumed: 15 } });
    expect((await ledger.audit({ accountId })).violations).toEqual([]);
  });

  it("counts the overdraft a call's own settling just freed (an overdue hold released before the alarm ran)", async () => {
    // Found by the chaos test (seed 1265596039): reserve and commit checked the overdraft
    // against the debt as it stood before the call released an overdue hold.
    const { accountId, ledger } = await freshAccount(5);
    await ledger.grant({ accountId, amount: 2, reason: "top-up", idempotencyKey: "g1" });
    const kept = await ledger.reserve({ accountId, amount: 2, ttlMs: 60_000, idempotencyKey: "r-kept" });
    if (!kept.ok) throw new Error("reserve failed");
    expect(await ledger.reserve({ accountId, amount: 4, ttlMs: 1_000, idempotencyKey: "r-lapsing" })).toMatchObject({
      ok: true,
      balance: { available: -4 },
    });
    // The lapsing hold's 4 of overdraft come back when it is released: by this commit, no alarm in between.
    await ledger.setClock(T0 + 1_000);
    const commit = await ledger.commit({ accountId, holdId: kept.holdId, amount: 6, idempotencyKey: "c1" });
    expect(commit).toMatchObject({ ok: true, balance: { available: -4, held: 0, consumed: 6 } });
    // The same for a reserve: 4 owed, 1 held in overdraft that lapses, then 1 more fits the limit of 5.
    expect(await ledger.reserve({ accountId, amount: 1, ttlMs: 1_000, idempotencyKey: "r-lapsing-2" })).toMatchObject({
      ok: true,
      balance: { available: -5 },
    });
    await ledger.setClock(T0 + 2_000);
    expect(await ledger.reserve({ accountId, amount: 1, ttlMs: 60_000, idempotencyKey: "r-last" })).toMatchObject({
      ok: true,
      balance: { available: -5, held: 1 },
    });
    expect(await ledger.reserve({ accountId, amount: 1, ttlMs: 60_000, idempotencyKey: "r-over" })).toMatchObject({
      ok: false,
      code: "INSUFFICIENT_CREDITS",
    });
    invariantHolds(await ledger.balance({ accountId }));
    expect((await ledger.audit({ accountId })).violations).toEqual([]);
  });

  it("releases an unsettled hold by alarm at its TTL, exactly once, even when the alarm runs twice", async () => {
    const { accountId, ledger } = await freshAccount();
    await ledger.grant({ accountId, amount: 10, reason: "top-up", idempotencyKey: "g1" });
    const hold = await ledger.reserve({ accountId, amount: 4, ttlMs: 60_000, idempotencyKey: "r1" });
    if (!hold.ok) throw new Error("reserve failed");
    expect((await ledger.tasks()).map((t) => [t.kind, t.dueMs])).toContainEqual(["settle-due", T0 + 60_000]);
    await ledger.runAlarmAt(T0 + 59_999);
    expect(await ledger.hold({ accountId, holdId: hold.holdId })).toMatchObject({ status: "open" });
    await ledger.runAlarmAt(T0 + 60_000);
    const afterFirst = await ledger.entries({ accountId });
    await ledger.runAlarmAt(T0 + 60_001);
    expect(await ledger.entries({ accountId })).toEqual(afterFirst);
    expect(afterFirst.items.map((e) => e.kind)).toEqual(["grant", "reserve", "release"]);
    expect(await ledger.hold({ accountId, holdId: hold.holdId })).toMatchObject({ status: "expired" });
    expect(await ledger.commit({ accountId, holdId: hold.holdId, amount: 4, idempotencyKey: "late" })).toMatchObject({
      ok: false,
      status: "expired",
    });
    expect(await ledger.balance({ accountId })).toMatchObject({ available: 10, held: 0 });
  });

  it("books an expiring grant's remainder as expired exactly once, by alarm", async () => {
    const { accountId, ledger } = await freshAccount();
    const grant = await ledger.grant({ accountId, amount: 10, expiresAt: T0 + DAY, reason: "trial", idempotencyKey: "g1" });
    await ledger.debit({ accountId, amount: 3, reason: "call", idempotencyKey: "d1" });
    await ledger.runAlarmAt(T0 + DAY);
    await ledger.runAlarmAt(T0 + DAY + 1);
    const kinds = (await ledger.entries({ accountId })).items.map((e) => [e.kind, e.amount]);
    expect(kinds).toEqual([
      ["grant", 10],
      ["debit", 3],
      ["expire", 7],
    ]);
    expect(await ledger.balance({ accountId })).toMatchObject({ available: 0, granted: 10, consumed: 3, expired: 7 });
    const last = (await ledger.entries({ accountId })).items.at(-1)!;
    expect(last).toMatchObject({ grantId: grant.grantId, draws: [{ grantId: grant.grantId, amount: 7 }] });
  });

  it("does not let a call spend a grant past its expiry, even before the alarm ran", async () => {
    const { accountId, ledger } = await freshAccount();
    await ledger.grant({ accountId, amount: 10, expiresAt: T0 + DAY, reason: "trial", idempotencyKey: "g1" });
    await ledger.setClock(T0 + DAY);
    expect(await ledger.debit({ accountId, amount: 1, reason: "late", idempotencyKey: "d1" })).toMatchObject({
      ok: false,
      code: "INSUFFICIENT_CREDITS",
      balance: { available: 0, expired: 10 },
    });
  });

  it("books a hold released after its grant expired as expired, never as spendable", async () => {
    const { accountId, ledger } = await freshAccount();
    await ledger.grant({ accountId, amount: 10, expiresAt: T0 + DAY, reason: "trial", idempotencyKey: "g1" });
    const hold = await ledger.reserve({ accountId, amount: 6, ttlMs: 2 * DAY, idempotencyKey: "r1" });
    if (!hold.ok) throw new Error("reserve failed");
    await ledger.runAlarmAt(T0 + DAY);
    expect(await ledger.balance({ accountId })).toMatchObject({ available: 0, held: 6, expired: 4 });
    const voided = await ledger.void({ accountId, holdId: hold.holdId, idempotencyKey: "v1" });
    expect(voided).toMatchObject({
      ok: true,
      entry: { change: { held: -6, expired: 6 } },
      balance: { available: 0, held: 0, expired: 10 },
    });
  });

  it("lets credit a void gives back repay outstanding debt before it can expire", async () => {
    const { accountId, ledger } = await freshAccount(15);
    await ledger.grant({ accountId, amount: 10, expiresAt: T0 + DAY, reason: "trial", idempotencyKey: "g1" });
    const hold = await ledger.reserve({ accountId, amount: 10, ttlMs: 60_000, idempotencyKey: "r1" });
    if (!hold.ok) throw new Error("reserve failed");
    expect(await ledger.debit({ accountId, amount: 5, reason: "on credit", idempotencyKey: "d1" })).toMatchObject({
      ok: true,
      balance: { available: -5 },
    });
    await ledger.void({ accountId, holdId: hold.holdId });
    await ledger.runAlarmAt(T0 + DAY);
    expect(await ledger.balance({ accountId })).toMatchObject({ available: 0, consumed: 5, expired: 5 });
  });

  it("refunds a debit fully or in parts, never more than was taken", async () => {
    const { accountId, ledger } = await freshAccount();
    await ledger.grant({ accountId, amount: 10, reason: "top-up", idempotencyKey: "g1" });
    const debit = await ledger.debit({ accountId, amount: 6, reason: "call", idempotencyKey: "d1" });
    if (!debit.ok) throw new Error("debit failed");
    const entryId = debit.entry.entryId;
    expect(await ledger.refund({ accountId, entryId, amount: 4, reason: "partial", idempotencyKey: "f1" })).toMatchObject({
      ok: true,
      entry: { kind: "refund", refundOf: entryId, amount: 4 },
      balance: { available: 8, consumed: 2 },
    });
    expect(await ledger.refund({ accountId, entryId, amount: 3, reason: "too much", idempotencyKey: "f2" })).toMatchObject({
      ok: false,
      code: "REFUND_EXCEEDS_TAKEN",
      refundable: 2,
    });
    expect(await ledger.refund({ accountId, entryId, reason: "the rest", idempotencyKey: "f3" })).toMatchObject({
      ok: true,
      entry: { amount: 2 },
      balance: { available: 10, consumed: 0 },
    });
    expect(await ledger.refund({ accountId, entryId, reason: "again", idempotencyKey: "f4" })).toMatchObject({ ok: false, refundable: 0 });
    const grantEntry = (await ledger.entries({ accountId })).items[0]!;
    expect(await codeOf(ledger.refund({ accountId, entryId: grantEntry.entryId, reason: "no", idempotencyKey: "f5" }))).toBe(
      "INVALID_ARGUMENT",
    );
  });

  it("refunds a committed hold, and an overdrawn debit whose debt a later grant repaid", async () => {
    const { accountId, ledger } = await freshAccount(10);
    const hold = await ledger.reserve({ accountId, amount: 5, ttlMs: 60_000, idempotencyKey: "r1" });
    if (!hold.ok) throw new Error("reserve failed");
    const commit = await ledger.commit({ accountId, holdId: hold.holdId, amount: 5, idempotencyKey: "c1" });
    if (!commit.ok) throw new Error("commit failed");
    expect(commit.balance.available).toBe(-5);
    await ledger.grant({ accountId, amount: 20, reason: "top-up", idempotencyKey: "g1" });
    expect((await ledger.balance({ accountId })).available).toBe(15);
    expect(await ledger.refund({ accountId, entryId: commit.entry.entryId, reason: "sorry", idempotencyKey: "f1" })).toMatchObject({
      ok: true,
      balance: { available: 20, consumed: 0 },
    });
    expect((await ledger.audit({ accountId })).violations).toEqual([]);
  });

  it("refuses a hold id or entry id from another account with NOT_FOUND and changes nothing", async () => {
    const a = await freshAccount();
    const b = await freshAccount();
    await a.ledger.grant({ accountId: a.accountId, amount: 10, reason: "top-up", idempotencyKey: "g1" });
    await b.ledger.grant({ accountId: b.accountId, amount: 10, reason: "top-up", idempotencyKey: "g1" });
    const hold = await a.ledger.reserve({ accountId: a.accountId, amount: 5, ttlMs: 60_000, idempotencyKey: "r1" });
    const debit = await a.ledger.debit({ accountId: a.accountId, amount: 1, reason: "x", idempotencyKey: "d1" });
    if (!hold.ok || !debit.ok) throw new Error("setup failed");
    const before = await b.ledger.entries({ accountId: b.accountId });
    expect(await codeOf(b.ledger.commit({ accountId: b.accountId, holdId: hold.holdId, amount: 5, idempotencyKey: "c1" }))).toBe(
      "NOT_FOUND",
    );
    expect(await codeOf(b.ledger.void({ accountId: b.accountId, holdId: hold.holdId }))).toBe("NOT_FOUND");
    expect(await codeOf(b.ledger.refund({ accountId: b.accountId, entryId: debit.entry.entryId, reason: "x", idempotencyKey: "f1" }))).toBe(
      "NOT_FOUND",
    );
    // A stub named for one account refuses calls naming another.
    expect(await codeOf(b.ledger.debit({ accountId: a.accountId, amount: 1, reason: "x", idempotencyKey: "d9" }))).toBe("INVALID_ARGUMENT");
    expect(await b.ledger.entries({ accountId: b.accountId })).toEqual(before);
    expect(await b.ledger.idempotencyKeys()).toEqual(["g1"]);
  });
});

describe("CreditLedgerDO: the real alarm", () => {
  it("releases an overdue hold through the platform alarm, and a second alarm changes nothing", async () => {
    const accountId = `real-alarm-${Math.random().toString(16).slice(2, 10)}`;
    const ledger = env.CREDIT_LEDGER.getByName(accountId);
    await ledger.createAccount({ accountId, name: "Real alarm" });
    await ledger.grant({ accountId, amount: 10, reason: "top-up", idempotencyKey: "g1" });
    const hold = await ledger.reserve({ accountId, amount: 4, ttlMs: 1, idempotencyKey: "r1" });
    if (!hold.ok) throw new Error("reserve failed");
    await new Promise((resolve) => setTimeout(resolve, 5));
    // The alarm is due in 1 ms, so the runtime may already have run it; either way it runs (again) here.
    await runDurableObjectAlarm(ledger);
    expect(await ledger.hold({ accountId, holdId: hold.holdId })).toMatchObject({ status: "expired" });
    const after = await ledger.entries({ accountId });
    await runDurableObjectAlarm(ledger);
    expect(await ledger.entries({ accountId })).toEqual(after);
    expect(await ledger.balance({ accountId })).toMatchObject({ available: 10, held: 0 });
  });
});
