import { env } from "cloudflare:workers";
import { evictDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { errorCodeOf } from "../../rpc/errors";
import type { Rule } from "../../rpc/rate-limits";
import { formatKey, parseKey } from "../../src/credits/keys";
import { codeOf } from "../fixtures/errors";

const T0 = Date.UTC(2030, 0, 15, 12, 0, 0);
const DAY = 86_400_000;

let counter = 0;
async function freshAccount(overdraftLimit = 0) {
  const accountId = `keys-${++counter}-${Math.random().toString(16).slice(2, 8)}`;
  const ledger = env.TEST_CREDIT_LEDGER.getByName(accountId);
  await ledger.setClock(T0);
  await ledger.createAccount({ accountId, name: "Keys", overdraftLimit });
  await ledger.grant({ accountId, amount: 1_000, reason: "top-up", idempotencyKey: "top-up" });
  return { accountId, ledger };
}

describe("CreditLedgerDO: API keys", () => {
  it("returns the key once and stores only a hash of its secret", async () => {
    const { accountId, ledger } = await freshAccount();
    const created = await ledger.createKey({ accountId, name: "ci", scopes: ["credits.debit"] });
    const parsed = parseKey(created.key)!;
    expect(parsed).toMatchObject({ accountId, keyId: created.keyId });
    const stored = JSON.stringify(await ledger.storedKeyRows());
    expect(stored).not.toContain(parsed.secret);
    const listed = await ledger.listKeys({ accountId });
    expect(listed.keys).toEqual([created.info]);
    expect(JSON.stringify(listed)).not.toContain(parsed.secret);
    expect(created.info.start).toBe(`tg_${accountId}_${created.keyId}`);
  });

  it("verifies scopes: exact, resource.* and *", async () => {
    const { accountId, ledger } = await freshAccount();
    const exact = await ledger.createKey({ accountId, name: "exact", scopes: ["credits.debit"] });
    const wild = await ledger.createKey({ accountId, name: "wild", scopes: ["credits.*"] });
    const all = await ledger.createKey({ accountId, name: "all", scopes: ["*"] });
    expect(await ledger.verifyKey({ key: exact.key, scope: "credits.debit" })).toMatchObject({
      valid: true,
      accountId,
      keyId: exact.keyId,
      scopes: ["credits.debit"],
    });
    expect(await ledger.verifyKey({ key: exact.key, scope: "credits.grant" })).toEqual({ valid: false, code: "INSUFFICIENT_SCOPE" });
    expect(await ledger.verifyKey({ key: wild.key, scope: "credits.grant" })).toMatchObject({ valid: true });
    expect(await ledger.verifyKey({ key: wild.key, scope: "paths.read" })).toEqual({ valid: false, code: "INSUFFICIENT_SCOPE" });
    expect(await ledger.verifyKey({ key: all.key, scope: "paths.read" })).toMatchObject({ valid: true });
    expect(await ledger.verifyKey({ key: exact.key })).toMatchObject({ valid: true });
  });

  it("rejects a wrong secret with a valid checksum like an unknown key", async () => {
    const { accountId, ledger } = await freshAccount();
    const created = await ledger.createKey({ accountId, name: "ci", scopes: ["*"] });
    const forged = formatKey(accountId, created.keyId, "0".repeat(48));
    expect(await ledger.verifyKey({ key: forged })).toEqual({ valid: false, code: "NOT_FOUND" });
    expect(await ledger.verifyKey({ key: formatKey(accountId, "k0123456789abcdef", "0".repeat(48)) })).toEqual({
      valid: false,
      code: "NOT_FOUND",
    });
  });

  it("fails a revoked key on the very next call, also after eviction", async () => {
    const { accountId, ledger } = await freshAccount();
    const created = await ledger.createKey({ accountId, name: "ci", scopes: ["*"] });
    expect((await ledger.verifyKey({ key: created.key })).valid).toBe(true);
    expect(await ledger.revokeKey({ accountId, keyId: created.keyId })).toMatchObject({ revokedAt: T0 });
    expect(await ledger.verifyKey({ key: created.key })).toEqual({ valid: false, code: "REVOKED" });
    expect(await ledger.debit({ accountId, amount: 1, reason: "x", idempotencyKey: "d1", keyId: created.keyId })).toMatchObject({
      ok: false,
      code: "KEY_INACTIVE",
    });
    await evictDurableObject(ledger);
    expect(await ledger.verifyKey({ key: created.key })).toEqual({ valid: false, code: "REVOKED" });
  });

  it("expires a key at its expiresAt", async () => {
    const { accountId, ledger } = await freshAccount();
    const created = await ledger.createKey({ accountId, name: "temp", scopes: ["*"], expiresAt: T0 + DAY });
    expect((await ledger.verifyKey({ key: created.key })).valid).toBe(true);
    await ledger.setClock(T0 + DAY);
    expect(await ledger.verifyKey({ key: created.key })).toEqual({ valid: false, code: "EXPIRED" });
  });

  it("rolls a key: the new one works at once, the old one until the grace period ends", async () => {
    const { accountId, ledger } = await freshAccount();
    const old = await ledger.createKey({ accountId, name: "prod", scopes: ["credits.*"], spendCap: { perDay: 10 } });
    const rolled = await ledger.rollKey({ accountId, keyId: old.keyId, graceMs: 60_000 });
    expect(rolled.info).toMatchObject({ name: "prod", scopes: ["credits.*"], spendCap: { perDay: 10 } });
    expect(rolled.previous).toMatchObject({ keyId: old.keyId, rolledTo: rolled.keyId, expiresAt: T0 + 60_000 });
    expect((await ledger.verifyKey({ key: rolled.key })).valid).toBe(true);
    expect((await ledger.verifyKey({ key: old.key })).valid).toBe(true);
    await ledger.setClock(T0 + 60_000);
    expect(await ledger.verifyKey({ key: old.key })).toEqual({ valid: false, code: "EXPIRED" });
    expect((await ledger.verifyKey({ key: rolled.key })).valid).toBe(true);
    expect(await codeOf(ledger.rollKey({ accountId, keyId: old.keyId, graceMs: 0 }))).toBe("CONFLICT");
  });

  it("applies a key's daily and monthly spend caps atomically with the debit and the hold", async () => {
    const { accountId, ledger } = await freshAccount();
    const key = await ledger.createKey({ accountId, name: "capped", scopes: ["*"], spendCap: { perDay: 10, perMonth: 15 } });
    const keyId = key.keyId;
    expect(await ledger.debit({ accountId, amount: 6, reason: "a", idempotencyKey: "d1", keyId })).toMatchObject({ ok: true });
    expect(await ledger.debit({ accountId, amount: 5, reason: "b", idempotencyKey: "d2", keyId })).toMatchObject({
      ok: false,
      code: "SPEND_CAP_EXCEEDED",
      balance: { available: 994 },
    });
    const hold = await ledger.reserve({ accountId, amount: 4, ttlMs: 60_000, idempotencyKey: "r1", keyId });
    expect(hold.ok).toBe(true);
    expect(await ledger.debit({ accountId, amount: 1, reason: "c", idempotencyKey: "d3", keyId })).toMatchObject({
      ok: false,
      code: "SPEND_CAP_EXCEEDED",
    });
    if (!hold.ok) return;
    // Capturing less than was held gives the difference back to the cap.
    await ledger.commit({ accountId, holdId: hold.holdId, amount: 1, idempotencyKey: "c1" });
    expect(await ledger.debit({ accountId, amount: 3, reason: "d", idempotencyKey: "d4", keyId })).toMatchObject({ ok: true });
    // Next day: the daily cap is fresh, the monthly one (15) has 5 left.
    await ledger.setClock(T0 + DAY);
    expect(await ledger.debit({ accountId, amount: 6, reason: "e", idempotencyKey: "d5", keyId })).toMatchObject({
      ok: false,
      code: "SPEND_CAP_EXCEEDED",
    });
    expect(await ledger.debit({ accountId, amount: 5, reason: "f", idempotencyKey: "d6", keyId })).toMatchObject({ ok: true });
    // Another key of the same account is not limited by this one's caps.
    const other = await ledger.createKey({ accountId, name: "other", scopes: ["*"] });
    expect(await ledger.debit({ accountId, amount: 50, reason: "g", idempotencyKey: "d7", keyId: other.keyId })).toMatchObject({
      ok: true,
    });
  });

  it("enforces a key's spend cap exactly under concurrency", async () => {
    const { accountId, ledger } = await freshAccount();
    const key = await ledger.createKey({ accountId, name: "capped", scopes: ["*"], spendCap: { perDay: 37 } });
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) => ledger.debit({ accountId, amount: 1, reason: "x", idempotencyKey: `d${i}`, keyId: key.keyId })),
    );
    expect(results.filter((r) => r.ok)).toHaveLength(37);
  });

  it("applies a key's rate rules inside the account, atomically: a denied call is not charged", async () => {
    const { accountId, ledger } = await freshAccount();
    const rules: Rule[] = [{ name: "minute", algorithm: "fixed_window", limit: 3, periodMs: 60_000 }];
    const key = await ledger.createKey({ accountId, name: "limited", scopes: ["*"], rules });
    const keyId = key.keyId;
    for (let i = 0; i < 3; i++)
      expect((await ledger.debit({ accountId, amount: 1, reason: "x", idempotencyKey: `d${i}`, keyId })).ok).toBe(true);
    const denied = await ledger.debit({ accountId, amount: 1, reason: "x", idempotencyKey: "d3", keyId });
    expect(denied).toMatchObject({ ok: false, code: "RATE_LIMITED", deniedBy: ["minute"], balance: { available: 997 } });
    if (!denied.ok) expect(denied.retryAfterMs).toBeGreaterThan(0);
    // A call refused for lack of credit does not use up the rate rule either.
    await ledger.setClock(T0 + 60_000 - (T0 % 60_000) + 60_000);
    expect(await ledger.debit({ accountId, amount: 5_000, reason: "x", idempotencyKey: "big", keyId })).toMatchObject({
      ok: false,
      code: "INSUFFICIENT_CREDITS",
    });
    for (let i = 0; i < 3; i++)
      expect((await ledger.debit({ accountId, amount: 1, reason: "x", idempotencyKey: `e${i}`, keyId })).ok).toBe(true);
    expect(await ledger.verifyKey({ key: key.key })).toMatchObject({ valid: true, rules });
  });

  it("refuses invalid rules, bad scopes and a past expiry with INVALID_ARGUMENT, creating nothing", async () => {
    const { accountId, ledger } = await freshAccount();
    const rules: Rule[] = [{ name: "minute", algorithm: "fixed_window", limit: 0, periodMs: 60_000 }];
    expect(await codeOf(ledger.createKey({ accountId, name: "x", scopes: ["*"], rules }))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(ledger.createKey({ accountId, name: "x", scopes: ["Credits.Debit"] }))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(ledger.createKey({ accountId, name: "x", scopes: ["credits"] }))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(ledger.createKey({ accountId, name: "x", scopes: ["*"], expiresAt: T0 - 1 }))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(ledger.createKey({ accountId, name: "x", scopes: ["*"], spendCap: {} }))).toBe("INVALID_ARGUMENT");
    expect((await ledger.listKeys({ accountId })).keys).toEqual([]);
  });
});

describe("Credits.verifyKey routing", () => {
  it("answers a malformed or mistyped key without touching any object, and routes a valid one to its account", async () => {
    const accountId = `route-${Math.random().toString(16).slice(2, 10)}`;
    await env.CREDITS.createAccount({ accountId, name: "Routing" });
    const created = await env.CREDITS.createKey({ accountId, name: "ci", scopes: ["*"] });
    expect(await env.CREDITS.verifyKey({ key: created.key })).toMatchObject({ valid: true, accountId, keyId: created.keyId });
    // One changed character breaks the checksum.
    const last = created.key.at(-1) === "0" ? "1" : "0";
    const typo = created.key.slice(0, -1) + last;
    expect(await env.CREDITS.verifyKey({ key: typo })).toEqual({ valid: false, code: "MALFORMED" });
    // A key naming an account that was never created is refused here without creating it:
    // a malformed one never reaches an object; a well-formed one finds an empty object.
    for (const key of ["", "tg_", "sk_live_abc", "tg_x_y_z_w", `${created.key}x`]) {
      expect(await env.CREDITS.verifyKey({ key })).toEqual({ valid: false, code: "MALFORMED" });
    }
    const ghost = formatKey("ghost-account", created.keyId, "a".repeat(48));
    expect(await env.CREDITS.verifyKey({ key: ghost })).toEqual({ valid: false, code: "NOT_FOUND" });
    expect(errorCodeOf(await env.CREDITS.verifyKey({ key: "x".repeat(2_000) }).catch((e) => e))).toBe("INVALID_ARGUMENT");
  });
});
