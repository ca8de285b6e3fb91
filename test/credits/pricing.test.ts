import { env } from "cloudflare:workers";
import { evictDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { Price } from "../../rpc/credits";
import { codeOf } from "../fixtures/errors";

const T0 = Date.UTC(2030, 0, 15, 12, 0, 0);
const DAY = 86_400_000;

let counter = 0;
async function freshAccount() {
  const accountId = `price-${++counter}-${Math.random().toString(16).slice(2, 8)}`;
  const ledger = env.TEST_CREDIT_LEDGER.getByName(accountId);
  await ledger.setClock(T0);
  await ledger.createAccount({ accountId, name: "Pricing" });
  await ledger.grant({ accountId, amount: 1_000_000, reason: "top-up", idempotencyKey: "top-up" });
  return { accountId, ledger };
}

/** 3 credits per million input tokens, 15 per million output tokens, 0.3 per million cached. */
const CHAT: Price = { operation: "chat", model: "big", inputTokens: 3, outputTokens: 15, cachedTokens: 0 };

describe("CreditLedgerDO: pricing and usage", () => {
  it("uses the default price book from configuration until the account sets its own", async () => {
    const { accountId, ledger } = await freshAccount();
    expect(await ledger.prices({ accountId })).toEqual({ source: "default", prices: [{ operation: "*", model: "*", request: 1_000_000 }] });
    expect(await ledger.quote({ accountId, usage: { operation: "search" } })).toMatchObject({ cost: 1, worstCase: 1 });
    expect(await ledger.setPrices({ accountId, prices: [CHAT] })).toEqual({ source: "account", prices: [CHAT] });
    expect(await codeOf(ledger.quote({ accountId, usage: { operation: "search" } }))).toBe("NOT_FOUND");
    expect((await ledger.setPrices({ accountId, prices: [] })).source).toBe("default");
  });

  it("carries fractional remainders per key and model, so the sum of charges stays exact", async () => {
    const { accountId, ledger } = await freshAccount();
    await ledger.setPrices({ accountId, prices: [CHAT, { ...CHAT, model: "small", inputTokens: 1, outputTokens: 2 }] });
    const a = await ledger.createKey({ accountId, name: "a", scopes: ["*"] });
    // 123,457 input tokens at 3/M = 0.370371 credits a call; 10 calls = 3.70371 credits.
    let charged = 0;
    for (let i = 0; i < 10; i++) {
      const result = await ledger.charge({
        accountId,
        keyId: a.keyId,
        usage: { operation: "chat", model: "big", inputTokens: 123_457 },
        idempotencyKey: `a${i}`,
      });
      expect(result.ok).toBe(true);
      charged += result.cost;
      if (result.ok)
        expect(result.entry.price).toMatchObject({ operation: "chat", model: "big", inputTokens: 3, exactMillionths: "370371" });
    }
    expect(charged).toBe(3); // floor(3,703,710 / 1,000,000), the rest carried
    const last = (await ledger.entries({ accountId })).items.at(-1)!;
    expect(last.price?.carryAfter).toBe(703_710);
    // The carry belongs to (key, operation, model): another model or no key starts at zero.
    expect((await ledger.quote({ accountId, keyId: a.keyId, usage: { operation: "chat", model: "big", inputTokens: 123_457 } })).cost).toBe(
      1,
    );
    expect((await ledger.quote({ accountId, usage: { operation: "chat", model: "big", inputTokens: 123_457 } })).cost).toBe(0);
    expect(
      (await ledger.quote({ accountId, keyId: a.keyId, usage: { operation: "chat", model: "small", inputTokens: 123_457 } })).cost,
    ).toBe(0);
  });

  it("keeps the carried remainder, the price book and the rollups across eviction", async () => {
    const { accountId, ledger } = await freshAccount();
    await ledger.setPrices({ accountId, prices: [{ operation: "ping", model: "*", request: 400_000 }] });
    const costs: number[] = [];
    for (let i = 0; i < 5; i++) {
      costs.push((await ledger.charge({ accountId, usage: { operation: "ping" }, idempotencyKey: `p${i}` })).cost);
      await evictDurableObject(ledger);
    }
    expect(costs).toEqual([0, 0, 1, 0, 1]);
    expect((await ledger.usage({ accountId, range: "24h", groupBy: "operation" })).items).toEqual([
      { group: "ping", amount: 2, count: 5, inputTokens: 0, outputTokens: 0, cachedTokens: 0, cacheWriteTokens: 0 },
    ]);
  });

  it("quotes the worst case with maxOutputTokens for sizing a hold, and charges nothing", async () => {
    const { accountId, ledger } = await freshAccount();
    await ledger.setPrices({ accountId, prices: [CHAT] });
    const quote = await ledger.quote({
      accountId,
      usage: { operation: "chat", model: "big", inputTokens: 1_000_000, maxOutputTokens: 200_000 },
    });
    expect(quote).toMatchObject({ cost: 3, worstCase: 6, exactMillionths: "3000000", price: CHAT });
    expect((await ledger.balance({ accountId })).consumed).toBe(0);
  });

  it("computes exactly beyond 2^53 millionths and refuses a cost above the largest amount", async () => {
    const { accountId, ledger } = await freshAccount();
    await ledger.setPrices({ accountId, prices: [{ operation: "bulk", model: "*", inputTokens: 10_007 }] });
    const usage = { operation: "bulk", inputTokens: 999_999_999_999 };
    // 999,999,999,999 × 10,007 = 10,006,999,999,989,993 millionths: beyond 2^53, still exact.
    expect(await ledger.quote({ accountId, usage })).toMatchObject({
      exactMillionths: "10006999999989993",
      cost: 10_006_999_999,
      worstCase: 10_007_000_000,
    });
    const charged = await ledger.charge({ accountId, usage, idempotencyKey: "c1" });
    expect(charged).toMatchObject({ ok: false, code: "INSUFFICIENT_CREDITS", cost: 10_006_999_999 });
    await ledger.grant({ accountId, amount: 10_006_999_999, reason: "big", idempotencyKey: "big" });
    const paid = await ledger.charge({ accountId, usage, idempotencyKey: "c2" });
    expect(paid).toMatchObject({ ok: true, cost: 10_006_999_999, entry: { price: { carryBefore: 0, carryAfter: 989_993 } } });
    await ledger.setPrices({ accountId, prices: [{ operation: "bulk", model: "*", inputTokens: 1_000_000_000_000 }] });
    expect(await codeOf(ledger.charge({ accountId, usage, idempotencyKey: "c3" }))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(ledger.quote({ accountId, usage }))).toBe("INVALID_ARGUMENT");
  });

  it("rolls usage up by day, key, model and operation, net of refunds (credits; tokens are never refunded)", async () => {
    const { accountId, ledger } = await freshAccount();
    await ledger.setPrices({
      accountId,
      prices: [
        { operation: "chat", model: "*", request: 2_000_000 },
        { operation: "embed", model: "*", request: 1_000_000 },
      ],
    });
    const key = await ledger.createKey({ accountId, name: "k", scopes: ["*"] });
    await ledger.charge({
      accountId,
      keyId: key.keyId,
      usage: { operation: "chat", model: "big", inputTokens: 10, outputTokens: 5, cachedTokens: 3, cacheWriteTokens: 2 },
      idempotencyKey: "c1",
    });
    await ledger.charge({ accountId, keyId: key.keyId, usage: { operation: "chat", model: "small" }, idempotencyKey: "c2" });
    await ledger.setClock(T0 + DAY);
    const embed = await ledger.charge({ accountId, usage: { operation: "embed", model: "small", inputTokens: 7 }, idempotencyKey: "c3" });
    await ledger.debit({ accountId, amount: 7, reason: "manual", idempotencyKey: "d1" });
    if (!embed.ok) throw new Error("charge failed");
    await ledger.refund({ accountId, entryId: embed.entry.entryId, reason: "oops", idempotencyKey: "f1" });
    const range = { from: T0 - DAY, to: T0 + 2 * DAY };
    expect((await ledger.usage({ accountId, range, groupBy: "operation" })).items).toEqual([
      { group: "chat", amount: 4, count: 2, inputTokens: 10, outputTokens: 5, cachedTokens: 3, cacheWriteTokens: 2 },
      { group: "debit", amount: 7, count: 1, inputTokens: 0, outputTokens: 0, cachedTokens: 0, cacheWriteTokens: 0 },
      { group: "embed", amount: 0, count: 1, inputTokens: 7, outputTokens: 0, cachedTokens: 0, cacheWriteTokens: 0 },
    ]);
    expect((await ledger.usage({ accountId, range, groupBy: "key" })).items).toEqual([
      { group: "(none)", amount: 7, count: 2, inputTokens: 7, outputTokens: 0, cachedTokens: 0, cacheWriteTokens: 0 },
      { group: key.keyId, amount: 4, count: 2, inputTokens: 10, outputTokens: 5, cachedTokens: 3, cacheWriteTokens: 2 },
    ]);
    expect((await ledger.usage({ accountId, range, groupBy: "model" })).items).toEqual([
      { group: "(none)", amount: 7, count: 1, inputTokens: 0, outputTokens: 0, cachedTokens: 0, cacheWriteTokens: 0 },
      { group: "big", amount: 2, count: 1, inputTokens: 10, outputTokens: 5, cachedTokens: 3, cacheWriteTokens: 2 },
      { group: "small", amount: 2, count: 2, inputTokens: 7, outputTokens: 0, cachedTokens: 0, cacheWriteTokens: 0 },
    ]);
    const byDay = await ledger.usage({ accountId, range, groupBy: "day" });
    expect(byDay.items).toEqual([
      { group: "2030-01-15", amount: 4, count: 2, inputTokens: 10, outputTokens: 5, cachedTokens: 3, cacheWriteTokens: 2 },
      { group: "2030-01-16", amount: 7, count: 2, inputTokens: 7, outputTokens: 0, cachedTokens: 0, cacheWriteTokens: 0 },
    ]);
    expect(await ledger.usage({ accountId, range: "24h", groupBy: "day" })).toMatchObject({
      from: Date.UTC(2030, 0, 15),
      to: Date.UTC(2030, 0, 17),
    });
  });
});

describe("CreditLedgerDO: self-audit and hash chain (Admin)", () => {
  it("verifies the chain and reports the first tampered entry", async () => {
    const { accountId, ledger } = await freshAccount();
    for (let i = 0; i < 4; i++) await ledger.debit({ accountId, amount: 1, reason: "x", idempotencyKey: `d${i}` });
    expect(await ledger.verifyChain({ accountId })).toMatchObject({ ok: true, checked: 5 });
    await ledger.tamperWithEntry(3);
    expect(await ledger.verifyChain({ accountId })).toMatchObject({ ok: false, brokenAtSeq: 3, checked: 2 });
    const report = await ledger.audit({ accountId });
    expect(report.ok).toBe(false);
    expect(report.violations.join(" ")).toContain("hash chain broken at entry 3");
  });

  it("runs by alarm, reports a divergence through Admin and never repairs it", async () => {
    const { accountId, ledger } = await freshAccount();
    await ledger.debit({ accountId, amount: 10, reason: "x", idempotencyKey: "d1" });
    const audit = (await ledger.tasks()).find((t) => t.kind === "audit")!;
    await ledger.runAlarmAt(audit.dueMs);
    expect((await ledger.auditReports({ accountId, limit: 1 })).reports[0]).toMatchObject({ ok: true, violations: [], entries: 2 });
    await ledger.corruptGranted(5);
    const next = (await ledger.tasks()).find((t) => t.kind === "audit")!;
    expect(next.dueMs).toBeGreaterThan(audit.dueMs);
    await ledger.runAlarmAt(next.dueMs);
    await ledger.runAlarmAt(next.dueMs);
    const divergent = await ledger.auditReports({ accountId, divergent: true });
    expect(divergent.reports).toHaveLength(1);
    expect(divergent.reports[0]!.violations).toContain("granted: stored 1000005, re-derived from entries 1000000");
    // Reported, not repaired.
    expect((await ledger.balance({ accountId })).granted).toBe(1_000_005);
  });

  it("audits incrementally from the last clean audit, working a backlog off in batches", async () => {
    const { accountId, ledger } = await freshAccount();
    for (let i = 0; i < 6; i++) await ledger.debit({ accountId, amount: 1, reason: "x", idempotencyKey: `d${i}` });
    expect(await ledger.incrementalAudit(3)).toBeNull();
    expect(await ledger.incrementalAudit(3)).toBeNull();
    expect(await ledger.incrementalAudit(3)).toMatchObject({
      ok: true,
      mode: "incremental",
      fromSeq: 7,
      entries: 7,
      chain: { ok: true, checked: 1 },
    });
    await ledger.debit({ accountId, amount: 1, reason: "x", idempotencyKey: "d6" });
    expect(await ledger.incrementalAudit(3)).toMatchObject({ ok: true, fromSeq: 8, entries: 8 });
    // A change to an entry the checkpoint already covers is the full audit's to find.
    await ledger.tamperWithEntry(2);
    expect(await ledger.incrementalAudit(3)).toMatchObject({ ok: true, fromSeq: 9 });
    expect(await ledger.audit({ accountId })).toMatchObject({ ok: false, mode: "full", fromSeq: 1, chain: { ok: false, brokenAtSeq: 2 } });
  });

  it("keeps reporting a divergence at every audit until it is fixed (the checkpoint does not move past it)", async () => {
    const { accountId, ledger } = await freshAccount();
    await ledger.corruptGranted(1);
    await ledger.debit({ accountId, amount: 1, reason: "x", idempotencyKey: "d1" });
    expect((await ledger.incrementalAudit(100))?.ok).toBe(false);
    expect(await ledger.incrementalAudit(100)).toMatchObject({ ok: false, fromSeq: 1 });
  });

  it("is reachable only through the Admin entrypoint, which routes to the account", async () => {
    const accountId = `audit-${Math.random().toString(16).slice(2, 10)}`;
    await env.CREDITS.createAccount({ accountId, name: "Audit" });
    await env.CREDITS.grant({ accountId, amount: 3, reason: "x", idempotencyKey: "g" });
    const credits = env.CREDITS as unknown as { verifyChain(input: unknown): Promise<unknown> };
    expect(
      await credits.verifyChain({ accountId }).then(
        () => "answered",
        () => "refused",
      ),
    ).toBe("refused");
    using audit = await env.ADMIN.creditsAudit();
    expect(await audit.verifyChain({ accountId })).toMatchObject({ ok: true, checked: 1 });
    expect(await audit.audit({ accountId })).toMatchObject({ ok: true, balance: { available: 3 } });
  });
});
