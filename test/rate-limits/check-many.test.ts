import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { Rule } from "../../rpc/rate-limits";
import { codeOf } from "../fixtures/errors";

const YEAR = 366 * 24 * 3_600_000;
const perKey: Rule[] = [{ name: "key", algorithm: "gcra", limit: 5, periodMs: YEAR }];
const perIp: Rule[] = [{ name: "ip", algorithm: "fixed_window", limit: 1, periodMs: YEAR }];

describe("RateLimits.checkMany through a service binding", () => {
  it("admits when every subject admits, and charges each", async () => {
    const key = "key:many-ok";
    const ip = "ip:198.51.100.1";
    const result = await env.LIMITS.checkMany({
      checks: [
        { subject: key, rules: perKey },
        { subject: ip, rules: perIp },
      ],
    });
    expect(result).toMatchObject({ allowed: true, retryAfterMs: 0, deniedBy: [], refunded: [] });
    expect(result.decisions.map((d) => d.remaining)).toEqual([4, 0]);
    expect(result.headers["X-RateLimit-Remaining"]).toBe("0");
  });

  it("refunds the subjects that admitted when another denies, so a denial uses up no one's quota", async () => {
    const key = "key:many-denied";
    const ip = "ip:198.51.100.2";
    const checks = [
      { subject: key, rules: perKey },
      { subject: ip, rules: perIp },
    ];
    await env.LIMITS.checkMany({ checks });
    for (let i = 0; i < 3; i++) {
      const denied = await env.LIMITS.checkMany({ checks });
      expect(denied).toMatchObject({ allowed: false, deniedBy: [ip], refunded: [key] });
      expect(denied.retryAfterMs).toBeGreaterThan(0);
      expect(denied.headers["Retry-After"]).toMatch(/^\d+$/);
    }
    expect((await env.LIMITS.peek({ subject: key, rules: perKey })).remaining).toBe(4);
  });

  it("is retry-safe with an idempotency key: a retried denial neither charges nor refunds twice", async () => {
    const key = "key:many-retry";
    const ip = "ip:198.51.100.3";
    const checks = [
      { subject: key, rules: perKey, cost: 2 },
      { subject: ip, rules: perIp },
    ];
    await env.LIMITS.checkMany({ checks, idempotencyKey: "first" });
    const denied = await env.LIMITS.checkMany({ checks, idempotencyKey: "second" });
    const retried = await env.LIMITS.checkMany({ checks, idempotencyKey: "second" });
    expect(retried).toEqual(denied);
    expect((await env.LIMITS.peek({ subject: key, rules: perKey })).remaining).toBe(3);
  });

  it("refunds the others and passes the error on when one subject's call fails", async () => {
    const key = "key:many-error";
    const checks = [
      { subject: key, rules: perKey },
      { subject: "ip:198.51.100.4", policy: "no-such-policy" },
    ];
    expect(await codeOf(env.LIMITS.checkMany({ checks }))).toBe("NOT_FOUND");
    expect((await env.LIMITS.peek({ subject: key, rules: perKey })).remaining).toBe(5);
  });

  it("rejects bad input with INVALID_ARGUMENT before calling any subject", async () => {
    const key = "key:many-bad";
    const good = { subject: key, rules: perKey };
    for (const bad of [
      { checks: [] },
      { checks: [good, good] },
      { checks: Array.from({ length: 9 }, (_, i) => ({ subject: `s${i}`, rules: perKey })) },
      { checks: [{ ...good, idempotencyKey: "per-check" }] },
      { checks: [good], idempotencyKey: "k".repeat(113) },
      { checks: [{ ...good, cost: -1 }] },
    ]) {
      expect(await codeOf(env.LIMITS.checkMany(bad as never))).toBe("INVALID_ARGUMENT");
    }
    expect((await env.LIMITS.peek({ subject: key, rules: perKey })).remaining).toBe(5);
  });
});
