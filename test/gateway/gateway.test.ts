import { env } from "cloudflare:workers";
import { evictDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { AuthorizeInput } from "../../rpc/gateway";
import type { Rule } from "../../rpc/rate-limits";
import { formatKey, parseKey } from "../../src/credits/keys";
import { thrown } from "../fixtures/errors";

const PER_IP_LIMIT = 100;
let ipCounter = 0;
/** A fresh client address (and /24, as path statistics truncate) per test, so no state leaks between tests. */
const freshIp = () => `198.18.${(ipCounter += 1)}.7`;

async function account(
  options: { credits?: number; scopes?: string[]; rules?: Rule[]; spendCap?: { perDay: number }; overdraftLimit?: number } = {},
) {
  const accountId = `gw-${crypto.randomUUID().slice(0, 8)}`;
  await env.CREDITS.createAccount({
    accountId,
    name: "gateway test",
    ...(options.overdraftLimit === undefined ? {} : { overdraftLimit: options.overdraftLimit }),
  });
  if ((options.credits ?? 100) > 0)
    await env.CREDITS.grant({ accountId, amount: options.credits ?? 100, reason: "welcome", idempotencyKey: "welcome" });
  const created = await env.CREDITS.createKey({
    accountId,
    name: "test key",
    scopes: options.scopes ?? ["api.*"],
    ...(options.rules === undefined ? {} : { rules: options.rules }),
    ...(options.spendCap === undefined ? {} : { spendCap: options.spendCap }),
  });
  return { accountId, keyId: created.keyId, key: created.key };
}

const request = (ip: string, extra: Partial<AuthorizeInput> = {}): AuthorizeInput => ({ ip, method: "GET", path: "/v1/things", ...extra });

/** What the per-IP rule has left, without consuming. */
async function ipRemaining(ip: string): Promise<number> {
  return (await env.LIMITS.peek({ subject: `ip:${ip}`, policy: "per-ip" })).remaining;
}

describe("Gateway.authorize", () => {
  it("admits an anonymous request under the per-IP policy, with its rate-limit headers", async () => {
    const ip = freshIp();
    const result = await env.GATEWAY.authorize(request(ip));
    expect(result).toMatchObject({ allowed: true, status: 200, retryAfterMs: 0 });
    expect(result.accountId).toBeUndefined();
    expect(result.headers["RateLimit-Policy"]).toBe('"minute";q=100;w=60');
    expect(result.headers["X-RateLimit-Remaining"]).toBe(String(PER_IP_LIMIT - 1));
    expect(result.headers["Retry-After"]).toBeUndefined();
  });

  it("refuses a malformed or mistyped key with 401 before touching any object", async () => {
    const ip = freshIp();
    const { key, accountId } = await account();
    const mistyped = key.slice(0, -1) + (key.endsWith("0") ? "1" : "0");
    for (const apiKey of ["not-a-key", mistyped, ""]) {
      const result = await env.GATEWAY.authorize(request(ip, { apiKey }));
      expect(result).toMatchObject({ allowed: false, status: 401, code: "INVALID_KEY" });
      expect(result.headers["WWW-Authenticate"]).toBe('Bearer realm="tollgate", error="invalid_token"');
    }
    expect(await ipRemaining(ip)).toBe(PER_IP_LIMIT);
    expect((await env.CREDITS.entries({ accountId })).items.map((e) => e.kind)).toEqual(["grant"]);
  });

  it("refuses a well-formed key with a wrong secret (401) and gives the IP check back", async () => {
    const ip = freshIp();
    const { key } = await account();
    const parts = parseKey(key)!;
    const forged = formatKey(parts.accountId, parts.keyId, "0".repeat(48));
    expect(await env.GATEWAY.authorize(request(ip, { apiKey: forged }))).toMatchObject({ status: 401, code: "INVALID_KEY" });
    expect(await ipRemaining(ip)).toBe(PER_IP_LIMIT);
  });

  it("asks for a key (401 MISSING_KEY) when the request needs a scope or credits", async () => {
    const ip = freshIp();
    for (const extra of [{ scope: "api.read" }, { cost: 1 }, { estimate: 5 }]) {
      const result = await env.GATEWAY.authorize(request(ip, extra));
      expect(result).toMatchObject({ allowed: false, status: 401, code: "MISSING_KEY" });
      expect(result.headers["WWW-Authenticate"]).toBe('Bearer realm="tollgate"');
    }
  });

  it("answers 403 for a key without the scope, and 401 KEY_REVOKED on the very next request after revocation", async () => {
    const ip = freshIp();
    const { key, accountId, keyId } = await account({ scopes: ["api.read"] });
    const denied = await env.GATEWAY.authorize(request(ip, { apiKey: key, scope: "api.write" }));
    expect(denied).toMatchObject({ allowed: false, status: 403, code: "INSUFFICIENT_SCOPE", accountId, keyId });
    expect(denied.headers["WWW-Authenticate"]).toContain('error="insufficient_scope", scope="api.write"');
    expect(await env.GATEWAY.authorize(request(ip, { apiKey: key, scope: "api.read" }))).toMatchObject({
      allowed: true,
      status: 200,
      accountId,
      keyId,
    });
    await env.CREDITS.revokeKey({ accountId, keyId });
    expect(await env.GATEWAY.authorize(request(ip, { apiKey: key, scope: "api.read" }))).toMatchObject({
      status: 401,
      code: "KEY_REVOKED",
    });
    // Only the one admitted request counts against the IP: the 403 and the 401 were given back.
    expect(await ipRemaining(ip)).toBe(PER_IP_LIMIT - 1);
  });

  it("holds the estimate, and settle commits the actual cost exactly once", async () => {
    const ip = freshIp();
    const { key, accountId } = await account({ credits: 100 });
    const admitted = await env.GATEWAY.authorize(request(ip, { apiKey: key, estimate: 30 }));
    expect(admitted).toMatchObject({ allowed: true, status: 200, accountId });
    expect(admitted.holdId).toMatch(/^h_/);
    expect(await env.CREDITS.balance({ accountId })).toMatchObject({ available: 70, held: 30 });

    const settle = { accountId, holdId: admitted.holdId!, actualCost: 12, status: 200, latencyMs: 41.5, idempotencyKey: "req-1" };
    expect(await env.GATEWAY.settle(settle)).toEqual({ balance: 88, outcome: "committed", charged: 12 });
    expect(await env.GATEWAY.settle(settle)).toEqual({ balance: 88, outcome: "committed", charged: 12 });
    expect(await env.CREDITS.balance({ accountId })).toMatchObject({ available: 88, held: 0, consumed: 12 });
    const commit = (await env.CREDITS.entries({ accountId })).items.find((e) => e.kind === "commit")!;
    expect(commit.meta).toEqual({ status: "200", latencyMs: "42" });
    // A second settle with another key finds the hold closed and takes nothing.
    expect(await env.GATEWAY.settle({ ...settle, idempotencyKey: "req-1-again" })).toEqual({
      balance: 88,
      outcome: "already_settled",
      charged: 0,
    });
  });

  it("voids the hold when the actual cost is 0, and caps at the hold when the account cannot cover more", async () => {
    const ip = freshIp();
    const { key, accountId } = await account({ credits: 10 });
    const first = await env.GATEWAY.authorize(request(ip, { apiKey: key, estimate: 4 }));
    expect(
      await env.GATEWAY.settle({ accountId, holdId: first.holdId!, actualCost: 0, status: 500, latencyMs: 3, idempotencyKey: "a" }),
    ).toEqual({ balance: 10, outcome: "voided", charged: 0 });
    const second = await env.GATEWAY.authorize(request(ip, { apiKey: key, estimate: 8 }));
    expect(
      await env.GATEWAY.settle({ accountId, holdId: second.holdId!, actualCost: 50, status: 200, latencyMs: 3, idempotencyKey: "b" }),
    ).toEqual({ balance: 2, outcome: "capped", charged: 8 });
    expect(await env.CREDITS.balance({ accountId })).toMatchObject({ available: 2, held: 0, consumed: 8 });
  });

  it("debits the actual cost when the hold expired before settle, and reports an account that cannot cover it", async () => {
    const ip = freshIp();
    const { key, accountId } = await account({ credits: 10 });
    const first = await env.GATEWAY.authorize(request(ip, { apiKey: key, estimate: 5, holdTtlMs: 1 }));
    const second = await env.GATEWAY.authorize(request(ip, { apiKey: key, estimate: 5, holdTtlMs: 1 }));
    await new Promise((resolve) => setTimeout(resolve, 10));
    const late = { accountId, holdId: first.holdId!, actualCost: 7, status: 200, latencyMs: 5, idempotencyKey: "late-1" };
    expect(await env.GATEWAY.settle(late)).toEqual({ balance: 3, outcome: "debited", charged: 7 });
    expect(await env.GATEWAY.settle(late)).toEqual({ balance: 3, outcome: "debited", charged: 7 });
    expect(await env.GATEWAY.settle({ ...late, holdId: second.holdId!, idempotencyKey: "late-2" })).toEqual({
      balance: 3,
      outcome: "insufficient_credits",
      charged: 0,
    });
    expect(await env.CREDITS.balance({ accountId })).toMatchObject({ available: 3, held: 0, consumed: 7 });
  });

  it("debits a fixed cost at once and answers 402 when the credits run out, giving the IP check back", async () => {
    const ip = freshIp();
    const { key, accountId } = await account({ credits: 5 });
    const paid = await env.GATEWAY.authorize(request(ip, { apiKey: key, cost: 3 }));
    expect(paid).toMatchObject({ allowed: true, status: 200 });
    expect(paid.entryId).toMatch(/^e_/);
    expect(paid.holdId).toBeUndefined();
    const broke = await env.GATEWAY.authorize(request(ip, { apiKey: key, cost: 3 }));
    expect(broke).toMatchObject({ allowed: false, status: 402, code: "INSUFFICIENT_CREDITS", accountId, retryAfterMs: 0 });
    expect(broke.headers["Retry-After"]).toBeUndefined();
    expect(await env.CREDITS.balance({ accountId })).toMatchObject({ available: 2, consumed: 3 });
    expect(await ipRemaining(ip)).toBe(PER_IP_LIMIT - 1);
  });

  it("answers 402 SPEND_CAP_EXCEEDED when the key's daily cap would be passed", async () => {
    const ip = freshIp();
    const { key } = await account({ credits: 100, spendCap: { perDay: 5 } });
    expect(await env.GATEWAY.authorize(request(ip, { apiKey: key, cost: 4 }))).toMatchObject({ status: 200 });
    expect(await env.GATEWAY.authorize(request(ip, { apiKey: key, cost: 4 }))).toMatchObject({ status: 402, code: "SPEND_CAP_EXCEEDED" });
  });

  it("answers 429 from the key's own rules with its retry time and headers, giving the IP check back", async () => {
    const ip = freshIp();
    const rules: Rule[] = [{ name: "key-minute", algorithm: "fixed_window", limit: 2, periodMs: 366 * 86_400_000 }];
    const { key } = await account({ rules });
    const first = await env.GATEWAY.authorize(request(ip, { apiKey: key }));
    // The key's rule (1 left) binds before the IP's (99 left), so the client sees the key's.
    expect(first.headers["RateLimit-Policy"]).toBe('"key-minute";q=2;w=31622400');
    expect(first.headers["X-RateLimit-Remaining"]).toBe("1");
    expect(await env.GATEWAY.authorize(request(ip, { apiKey: key }))).toMatchObject({ status: 200 });
    const limited = await env.GATEWAY.authorize(request(ip, { apiKey: key }));
    expect(limited).toMatchObject({ allowed: false, status: 429, code: "RATE_LIMITED" });
    expect(limited.retryAfterMs).toBeGreaterThan(0);
    expect(Number(limited.headers["Retry-After"])).toBeGreaterThan(0);
    expect(limited.headers.RateLimit).toMatch(/^"key-minute";r=0;t=\d+$/);
    expect(await ipRemaining(ip)).toBe(PER_IP_LIMIT - 2);
  });

  it("on a per-IP 429 leaves the account's balance, holds, spend and key limits untouched", async () => {
    const ip = freshIp();
    const rules: Rule[] = [{ name: "key-minute", algorithm: "fixed_window", limit: 2, periodMs: 366 * 86_400_000 }];
    const { key, accountId } = await account({ credits: 50, rules, spendCap: { perDay: 10 } });
    // Use up the IP's minute from elsewhere.
    await env.LIMITS.check({ subject: `ip:${ip}`, policy: "per-ip", cost: PER_IP_LIMIT });
    const before = await env.CREDITS.balance({ accountId });
    for (const extra of [{ estimate: 10 }, { cost: 10 }, {}]) {
      const denied = await env.GATEWAY.authorize(request(ip, { apiKey: key, ...extra }));
      expect(denied).toMatchObject({ allowed: false, status: 429, code: "RATE_LIMITED", accountId });
      expect(denied.retryAfterMs).toBeGreaterThan(0);
      expect(denied.headers.RateLimit).toMatch(/^"minute";r=0;t=\d+$/);
    }
    const after = await env.CREDITS.balance({ accountId });
    expect(after).toEqual(before);
    // The key still has both of its requests and its whole daily cap.
    await env.LIMITS.reset({ subject: `ip:${ip}` });
    expect(await env.GATEWAY.authorize(request(ip, { apiKey: key, cost: 5 }))).toMatchObject({ status: 200 });
    expect(await env.GATEWAY.authorize(request(ip, { apiKey: key, cost: 5 }))).toMatchObject({ status: 200 });
    expect(await env.GATEWAY.authorize(request(ip, { apiKey: key, cost: 1 }))).toMatchObject({ status: 429, code: "RATE_LIMITED" });
    expect(await env.CREDITS.balance({ accountId })).toMatchObject({ available: 40, held: 0, consumed: 10 });
  });

  it("prefers 401 over a per-IP 429, and a per-IP 429 over the key's 402", async () => {
    const ip = freshIp();
    const { key, accountId, keyId } = await account({ credits: 1 });
    await env.LIMITS.check({ subject: `ip:${ip}`, policy: "per-ip", cost: PER_IP_LIMIT });
    expect(await env.GATEWAY.authorize(request(ip, { apiKey: "tg_nope" }))).toMatchObject({ status: 401 });
    expect(await env.GATEWAY.authorize(request(ip, { apiKey: key, cost: 5 }))).toMatchObject({ status: 429, accountId, keyId });
  });

  it("records every answered request in the path statistics after answering", async () => {
    const ip = freshIp();
    await env.GATEWAY.authorize({ ip, method: "GET", path: "/v1/orders/123" });
    await env.GATEWAY.authorize({ ip, method: "GET", path: "/v1/orders/456", apiKey: "bad" });
    let stats = await env.PATHS.clientStats({ ip });
    for (let attempt = 0; attempt < 100 && stats.totalRequests < 2; attempt += 1) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      stats = await env.PATHS.clientStats({ ip });
    }
    expect(stats.totalRequests).toBe(2);
    // Both were answered (200 and 401): path statistics count 5xx alone as errors.
    expect(stats.paths[0]).toMatchObject({ method: "GET", path: "/v1/orders/:id", requests: 2, errors: 0 });
  });

  it("rejects bad input with INVALID_ARGUMENT and changes nothing", async () => {
    const ip = freshIp();
    const { key, accountId } = await account();
    for (const bad of [
      { ...request(ip, { apiKey: key }), cost: 1, estimate: 2 },
      { ...request(ip, { apiKey: key }), cost: 1.5 },
      { ...request("not-an-ip", { apiKey: key }), cost: 1 },
      { ...request(ip, { apiKey: key }), path: "no-slash" },
      { ...request(ip, { apiKey: key }), extra: true },
    ]) {
      expect((await thrown(env.GATEWAY.authorize(bad as AuthorizeInput))).code).toBe("INVALID_ARGUMENT");
    }
    expect(await ipRemaining(ip)).toBe(PER_IP_LIMIT);
    expect((await env.CREDITS.balance({ accountId })).available).toBe(100);
    const settleError = await thrown(
      env.GATEWAY.settle({ accountId, holdId: "nope", actualCost: 1, status: 200, latencyMs: 1, idempotencyKey: "x" }),
    );
    expect(settleError.code).toBe("INVALID_ARGUMENT");
  });
});

describe("CreditLedgerDO.admitRequest and releaseAdmission", () => {
  it("survive eviction between admission and release, and a doubled release gives back once", async () => {
    const rules: Rule[] = [{ name: "key-minute", algorithm: "fixed_window", limit: 3, periodMs: 366 * 86_400_000 }];
    const { key, accountId, keyId } = await account({ credits: 20, rules, spendCap: { perDay: 15 } });
    const ledger = env.CREDIT_LEDGER.getByName(accountId);
    const admitted = await ledger.admitRequest({ key, amount: 15, mode: "debit", ttlMs: 60_000, idempotencyKey: "r1" });
    expect(admitted).toMatchObject({ ok: true, accountId, keyId, balance: { available: 5 } });
    if (!admitted.ok) throw new Error("expected admission");
    expect(admitted.keyLimits?.remaining).toBe(2);
    await evictDurableObject(ledger);
    const release = { accountId, keyId, entryId: admitted.entryId!, idempotencyKey: "r1:release" };
    expect(await env.CREDIT_LEDGER.getByName(accountId).releaseAdmission(release)).toMatchObject({
      balance: { available: 20, consumed: 0 },
    });
    expect(await env.CREDIT_LEDGER.getByName(accountId).releaseAdmission(release)).toMatchObject({
      balance: { available: 20, consumed: 0 },
    });
    // The rule got its one request back (3 left → 2 after this), and the day's cap is whole again.
    const again = await env.CREDIT_LEDGER.getByName(accountId).admitRequest({
      key,
      amount: 15,
      mode: "hold",
      ttlMs: 60_000,
      idempotencyKey: "r2",
    });
    expect(again).toMatchObject({ ok: true, keyLimits: { remaining: 2 }, balance: { available: 5, held: 15 } });
    expect(await env.CREDITS.verifyKey({ key })).toMatchObject({ valid: true });
    expect((await env.ADMIN.creditsAudit().audit({ accountId })).ok).toBe(true);
  });

  it("validates its input and refuses a key of another account", async () => {
    const mine = await account();
    const other = await account();
    const ledger = env.CREDIT_LEDGER.getByName(mine.accountId);
    expect((await thrown(ledger.admitRequest({ key: mine.key, amount: -1, mode: "hold", ttlMs: 1, idempotencyKey: "x" }))).code).toBe(
      "INVALID_ARGUMENT",
    );
    expect((await thrown(ledger.admitRequest({ key: other.key, amount: 0, mode: "hold", ttlMs: 1, idempotencyKey: "x" }))).code).toBe(
      "INVALID_ARGUMENT",
    );
    expect(await ledger.admitRequest({ key: "garbage", amount: 0, mode: "hold", ttlMs: 1, idempotencyKey: "x" })).toEqual({
      ok: false,
      code: "MALFORMED",
    });
  });
});
