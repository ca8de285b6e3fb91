import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { Rule } from "../../rpc/rate-limits";

const YEAR = 366 * 24 * 3_600_000;
const rules: Rule[] = [{ name: "day", algorithm: "token_bucket", limit: 3, periodMs: YEAR }];

describe("every RateLimits method through a service binding, as a sibling Worker calls it", () => {
  it("refunds, overrides, blocks and unblocks", async () => {
    const subject = "entry:controls";
    await env.LIMITS.check({ subject, rules, cost: 2 });
    expect(await env.LIMITS.refund({ subject, rules, cost: 1, idempotencyKey: "r" })).toEqual({ rules: [{ name: "day", refunded: 1 }] });
    expect((await env.LIMITS.peek({ subject, rules })).remaining).toBe(2);

    const override: Rule[] = [{ name: "day", algorithm: "token_bucket", limit: 1, periodMs: YEAR }];
    expect((await env.LIMITS.setOverride({ subject, rules: override })).rules).toEqual(override);
    expect((await env.LIMITS.peek({ subject, rules })).limit).toBe(1);
    expect(await env.LIMITS.clearOverride({ subject })).toEqual({ cleared: true });

    const untilMs = Date.now() + 60_000;
    expect(await env.LIMITS.block({ subject, untilMs, reason: "test" })).toEqual({ blocked: { untilMs, reason: "test" } });
    expect(await env.LIMITS.check({ subject, rules })).toMatchObject({ allowed: false, blocked: { untilMs } });
    expect(await env.LIMITS.unblock({ subject })).toEqual({ unblocked: true });
    expect(await env.LIMITS.check({ subject, rules })).toMatchObject({ allowed: true, remaining: 1 });
  });

  it("acquires, renews and releases a lease", async () => {
    const subject = "entry:lease";
    const lease = await env.LIMITS.acquire({ subject, limit: 1, ttlMs: 60_000 });
    expect(lease).toMatchObject({ granted: true, active: 1, retryAfterMs: 0 });
    expect((await env.LIMITS.heartbeat({ subject, leaseId: lease.leaseId!, ttlMs: 120_000 })).renewed).toBe(true);
    expect(await env.LIMITS.acquire({ subject, limit: 1, ttlMs: 60_000 })).toMatchObject({ granted: false, active: 1 });
    expect(await env.LIMITS.release({ subject, leaseId: lease.leaseId! })).toEqual({ released: true, active: 0 });
  });
});
