import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { Rule } from "../../rpc/rate-limits";

/**
 * The example gateway (examples/gateway/) as its clients see it: a bearer key, JSON bodies,
 * statuses and headers. It reaches tollgate only through its TOLLGATE service binding.
 */
let ipCounter = 0;
const freshIp = () => `198.19.${(ipCounter += 1)}.9`;

async function customer(credits: number, rules?: Rule[]) {
  const accountId = `eg-${crypto.randomUUID().slice(0, 8)}`;
  await env.CREDITS.createAccount({ accountId, name: "gateway customer" });
  if (credits > 0) await env.CREDITS.grant({ accountId, amount: credits, reason: "welcome", idempotencyKey: "welcome" });
  const { key, keyId } = await env.CREDITS.createKey({
    accountId,
    name: "app",
    scopes: ["api.*"],
    ...(rules === undefined ? {} : { rules }),
  });
  return { accountId, keyId, key };
}

function call(path: string, ip: string, key?: string, init: RequestInit = {}) {
  const headers = new Headers(init.headers);
  headers.set("CF-Connecting-IP", ip);
  if (key !== undefined) headers.set("Authorization", `Bearer ${key}`);
  return env.EXAMPLE_GATEWAY.fetch(`http://gateway${path}`, { ...init, headers });
}

/** Settling runs after the response (waitUntil): wait until the balance shows it (bounded). */
async function balanceWhen(accountId: string, done: (b: { available: number; held: number }) => boolean) {
  let balance = await env.CREDITS.balance({ accountId });
  for (let attempt = 0; attempt < 100 && !done(balance); attempt += 1) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    balance = await env.CREDITS.balance({ accountId });
  }
  return balance;
}

describe("the example gateway with bearer keys", () => {
  it("answers a paid request with a bearer key: 200, the upstream body, rate-limit headers, and the real cost settled", async () => {
    const ip = freshIp();
    const { key, accountId } = await customer(100);
    const response = await call("/v1/completions", ip, key, { method: "POST", body: "x".repeat(250) });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ units: 3 });
    expect(response.headers.get("RateLimit-Policy")).toBe('"minute";q=100;w=60');
    expect(response.headers.get("X-RateLimit-Remaining")).toBe("99");
    // 10 were held; the upstream reported 3 units, so 3 are consumed and 7 released.
    const balance = await balanceWhen(accountId, (b) => b.held === 0);
    expect(balance).toMatchObject({ available: 97, held: 0, consumed: 3 });
  });

  it("answers 401 with a JSON body without a key, with a malformed key, and with another auth scheme", async () => {
    const ip = freshIp();
    for (const [key, code] of [
      [undefined, "MISSING_KEY"],
      ["tg_not_a_key", "INVALID_KEY"],
    ] as const) {
      const response = await call("/v1/echo?msg=hi", ip, key);
      expect(response.status).toBe(401);
      expect(response.headers.get("Content-Type")).toContain("application/json");
      expect(response.headers.get("WWW-Authenticate")).toMatch(/^Bearer realm="tollgate"/);
      expect(await response.json()).toMatchObject({ error: { code } });
    }
    const basic = await env.EXAMPLE_GATEWAY.fetch("http://gateway/v1/echo", {
      headers: { Authorization: "Basic dXNlcjpwYXNz", "CF-Connecting-IP": ip },
    });
    expect(basic.status).toBe(401);
    // Public routes need no key.
    expect((await call("/hello", ip)).status).toBe(200);
  });

  it("answers 429 with Retry-After once the key's limit is used up", async () => {
    const ip = freshIp();
    const rules: Rule[] = [{ name: "burst", algorithm: "fixed_window", limit: 2, periodMs: 366 * 86_400_000 }];
    const { key } = await customer(100, rules);
    expect((await call("/v1/echo", ip, key)).status).toBe(200);
    expect((await call("/v1/echo", ip, key)).status).toBe(200);
    const limited = await call("/v1/echo", ip, key);
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get("Retry-After"))).toBeGreaterThan(0);
    const body = (await limited.json()) as { error: { code: string; retryAfterMs: number } };
    expect(body.error.code).toBe("RATE_LIMITED");
    expect(body.error.retryAfterMs).toBeGreaterThan(0);
  });

  it("answers 402 when the account is out of credits", async () => {
    const ip = freshIp();
    const { key, accountId } = await customer(11);
    expect((await call("/v1/echo", ip, key)).status).toBe(200);
    await balanceWhen(accountId, (b) => b.held === 0);
    // The gateway holds 10 per request and each costs 1: 10 left, one more fits, then 9 do not cover a hold.
    expect((await call("/v1/echo", ip, key)).status).toBe(200);
    await balanceWhen(accountId, (b) => b.held === 0);
    const broke = await call("/v1/echo", ip, key);
    expect(broke.status).toBe(402);
    expect(await broke.json()).toMatchObject({ error: { code: "INSUFFICIENT_CREDITS" } });
  });

  it("answers 401 on the very next request after the key is revoked", async () => {
    const ip = freshIp();
    const { key, accountId, keyId } = await customer(100);
    expect((await call("/v1/echo?msg=a", ip, key)).status).toBe(200);
    await env.CREDITS.revokeKey({ accountId, keyId });
    const revoked = await call("/v1/echo?msg=b", ip, key);
    expect(revoked.status).toBe(401);
    expect(await revoked.json()).toMatchObject({ error: { code: "KEY_REVOKED" } });
  });
});
