import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { errorCodeOf } from "../rpc/errors";

async function thrown(promise: Promise<unknown>): Promise<{ code?: string; message: string; details?: unknown }> {
  try {
    await promise;
  } catch (error) {
    const { message, details } = error as { message: string; details?: unknown };
    return { code: errorCodeOf(error), message, details };
  }
  throw new Error("expected the call to throw");
}

describe("errorCodeOf", () => {
  it("reads the code from the property, the message prefix, or a prefix behind one more hop's error name", () => {
    expect(errorCodeOf({ code: "NOT_FOUND", message: "x" })).toBe("NOT_FOUND");
    expect(errorCodeOf(new Error("[INVALID_ARGUMENT] bad"))).toBe("INVALID_ARGUMENT");
    expect(errorCodeOf(new Error("ServiceError: [INVALID_ARGUMENT] bad"))).toBe("INVALID_ARGUMENT");
    expect(errorCodeOf(new Error("ServiceError: [NO_SUCH_CODE] bad"))).toBeUndefined();
    expect(errorCodeOf(new Error("something [INVALID_ARGUMENT] later"))).toBeUndefined();
    expect(errorCodeOf("[INVALID_ARGUMENT]")).toBeUndefined();
  });
});

describe("the RateLimits entrypoint through a service binding", () => {
  const rules = [{ name: "minute", algorithm: "fixed_window" as const, limit: 2, periodMs: 366 * 86_400_000 }];

  it("checks, peeks and resets the way a sibling Worker calls it", async () => {
    const subject = "key:sibling";
    expect(await env.LIMITS.check({ subject, rules })).toMatchObject({ allowed: true, remaining: 1 });
    expect(await env.LIMITS.check({ subject, rules })).toMatchObject({ allowed: true, remaining: 0 });
    const denied = await env.LIMITS.check({ subject, rules });
    expect(denied).toMatchObject({ allowed: false, deniedBy: ["minute"] });
    expect(denied.headers["Retry-After"]).toMatch(/^\d+$/);
    expect(await env.LIMITS.reset({ subject })).toEqual({ cleared: 1 });
    expect(await env.LIMITS.peek({ subject, rules })).toMatchObject({ allowed: true, remaining: 2 });
  });

  it("delivers INVALID_ARGUMENT with its code and details to the caller", async () => {
    const error = await thrown(env.LIMITS.check({ subject: "key:bad", rules, cost: -3 }));
    expect(error.code).toBe("INVALID_ARGUMENT");
    expect(error.message).toMatch(/^\[INVALID_ARGUMENT\] invalid check input at cost/);
    expect(error.details).toEqual([{ path: "cost", message: "must be at least 0" }]);
  });
});

describe("the Credits entrypoint through a service binding", () => {
  it("creates an account with a generated id, grants and debits the way a sibling Worker calls it", async () => {
    const account = await env.CREDITS.createAccount({ name: "sibling" });
    expect(account.accountId).toMatch(/^acc-[0-9a-f]{16}$/);
    const { accountId } = account;
    await env.CREDITS.grant({ accountId, amount: 5, reason: "welcome", idempotencyKey: "welcome" });
    const debit = await env.CREDITS.debit({ accountId, amount: 2, reason: "call", idempotencyKey: "call-1" });
    expect(debit).toMatchObject({ ok: true, balance: { available: 3, consumed: 2 } });
  });

  it("delivers INVALID_ARGUMENT for a fractional amount and NOT_FOUND for an unknown account", async () => {
    const error = await thrown(env.CREDITS.debit({ accountId: "nobody", amount: 1.5, reason: "x", idempotencyKey: "k" }));
    expect(error.code).toBe("INVALID_ARGUMENT");
    expect(error.details).toEqual([{ path: "amount", message: "must be a safe integer" }]);
    expect((await thrown(env.CREDITS.balance({ accountId: "nobody" }))).code).toBe("NOT_FOUND");
  });
});

describe("the example gateway, an auxiliary Worker bound to the Gateway entrypoint", () => {
  it("passes requests to its upstream with rate-limit headers, then answers 429 with Retry-After", async () => {
    const ip = "198.51.100.77";
    const get = () => env.EXAMPLE_GATEWAY.fetch("http://gateway/hello", { headers: { "CF-Connecting-IP": ip } });
    const first = await get();
    expect(first.status).toBe(200);
    expect(await first.json()).toMatchObject({ message: "hello from the upstream API" });
    expect(first.headers.get("RateLimit-Policy")).toBe('"minute";q=100;w=60');
    expect(first.headers.get("X-RateLimit-Remaining")).toBe("99");

    // The per-ip policy admits 100 a minute (sliding window); a minute boundary in the middle
    // can only admit fewer in the first 100, never more, so send until the first 429.
    let denied: Response | undefined;
    for (let i = 0; i < 200 && denied === undefined; i++) {
      const response = await get();
      if (response.status === 429) denied = response;
      else await response.body?.cancel();
    }
    expect(denied).toBeDefined();
    expect(Number(denied!.headers.get("Retry-After"))).toBeGreaterThan(0);
    expect(denied!.headers.get("RateLimit")).toMatch(/^"minute";r=0;t=\d+$/);
    expect(await denied!.json()).toMatchObject({ error: { code: "RATE_LIMITED" } });

    const otherIp = await env.EXAMPLE_GATEWAY.fetch("http://gateway/hello", { headers: { "CF-Connecting-IP": "198.51.100.78" } });
    expect(otherIp.status).toBe(200);
  });
});
