import { env } from "cloudflare:workers";
import { evictDurableObject, runDurableObjectAlarm } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { codeOf } from "../fixtures/errors";

const HOUR = 3_600_000;
const limiter = (subject: string) => env.RATE_LIMITER.getByName(subject);

describe("concurrency leases", () => {
  it("grants exactly `limit` of 100 concurrent acquires", async () => {
    const subject = "lease:concurrent";
    const stub = limiter(subject);
    const results = await Promise.all(Array.from({ length: 100 }, () => stub.acquire({ subject, limit: 10, ttlMs: HOUR })));
    const granted = results.filter((r) => r.granted);
    expect(granted).toHaveLength(10);
    expect(new Set(granted.map((r) => r.leaseId)).size).toBe(10);
    const denied = results.find((r) => !r.granted)!;
    expect(denied.active).toBe(10);
    expect(denied.retryAfterMs).toBeGreaterThan(HOUR - 60_000);
    expect(denied.leaseId).toBeUndefined();
  });

  it("frees a slot on release, once, and keeps leases across an eviction", async () => {
    const subject = "lease:release";
    const stub = limiter(subject);
    const a = await stub.acquire({ subject, limit: 2, ttlMs: HOUR });
    const b = await stub.acquire({ subject, limit: 2, ttlMs: HOUR });
    expect([a.granted, b.granted, a.active, b.active]).toEqual([true, true, 1, 2]);
    await evictDurableObject(stub);
    expect((await stub.acquire({ subject, limit: 2, ttlMs: HOUR })).granted).toBe(false);
    expect(await stub.release({ subject, leaseId: a.leaseId! })).toEqual({ released: true, active: 1 });
    expect(await stub.release({ subject, leaseId: a.leaseId! })).toEqual({ released: false, active: 1 });
    expect(await stub.release({ subject, leaseId: "never-granted" })).toEqual({ released: false, active: 1 });
    expect((await stub.acquire({ subject, limit: 2, ttlMs: HOUR })).granted).toBe(true);
  });

  it("returns the same lease to an acquire retried with the same key", async () => {
    const subject = "lease:idempotent";
    const stub = limiter(subject);
    const first = await stub.acquire({ subject, limit: 1, ttlMs: HOUR, idempotencyKey: "job-7" });
    const retried = await stub.acquire({ subject, limit: 1, ttlMs: HOUR, idempotencyKey: "job-7" });
    expect(retried).toEqual(first);
    expect((await stub.acquire({ subject, limit: 1, ttlMs: HOUR, idempotencyKey: "job-8" })).granted).toBe(false);
  });

  it("expires an unreleased lease by alarm at its TTL, freeing its slot; the alarm is safe to run twice", async () => {
    const subject = "lease:expiry";
    const stub = env.TEST_RATE_LIMITER.getByName(subject);
    const lease = await stub.acquire({ subject, limit: 1, ttlMs: HOUR });
    const task = (await stub.tasks()).find((t) => t.kind === "expire-leases")!;
    expect(task.dueMs).toBe(lease.expiresAt);

    expect(await stub.runAlarmAt(lease.expiresAt! - 1)).toMatchObject({ ran: 0 });
    expect(await stub.storedLeases()).toHaveLength(1);
    expect(await stub.runAlarmAt(lease.expiresAt!)).toMatchObject({ ran: 1, failed: 0, nextDueMs: null });
    expect(await stub.storedLeases()).toEqual([]);
    expect(await stub.runAlarmAt(lease.expiresAt!)).toMatchObject({ ran: 0, failed: 0 });
    expect(await runDurableObjectAlarm(stub)).toBe(false);
    expect(await stub.heartbeat({ subject, leaseId: lease.leaseId!, ttlMs: HOUR })).toEqual({ renewed: false });
    expect((await stub.acquire({ subject, limit: 1, ttlMs: HOUR })).granted).toBe(true);
  });

  it("keeps a renewed lease when the alarm for its old expiry fires, and expires it at the new one", async () => {
    const subject = "lease:heartbeat";
    const stub = env.TEST_RATE_LIMITER.getByName(subject);
    const lease = await stub.acquire({ subject, limit: 1, ttlMs: HOUR });
    const beat = await stub.heartbeat({ subject, leaseId: lease.leaseId!, ttlMs: 3 * HOUR });
    expect(beat.renewed).toBe(true);
    expect(beat.expiresAt).toBeGreaterThan(lease.expiresAt! + HOUR);

    const report = await stub.runAlarmAt(lease.expiresAt!);
    expect(report).toMatchObject({ ran: 1, failed: 0, nextDueMs: beat.expiresAt });
    expect((await stub.storedLeases()).map((l) => l.lease_id)).toEqual([lease.leaseId]);
    expect(await stub.runAlarmAt(beat.expiresAt!)).toMatchObject({ ran: 1, nextDueMs: null });
    expect(await stub.storedLeases()).toEqual([]);
  });

  describe("rejects bad input with INVALID_ARGUMENT and changes nothing", () => {
    const subject = "lease:validation";
    const bad: [string, () => Promise<unknown>][] = [
      ["a zero limit", () => limiter(subject).acquire({ subject, limit: 0, ttlMs: HOUR })],
      ["a limit above 10,000", () => limiter(subject).acquire({ subject, limit: 10_001, ttlMs: HOUR })],
      ["a zero TTL", () => limiter(subject).acquire({ subject, limit: 1, ttlMs: 0 })],
      ["a TTL above 7 days", () => limiter(subject).acquire({ subject, limit: 1, ttlMs: 8 * 24 * HOUR })],
      ["a fractional TTL", () => limiter(subject).acquire({ subject, limit: 1, ttlMs: 1.5 })],
      ["a release without a lease id", () => limiter(subject).release({ subject } as never)],
      ["a heartbeat with an unknown field", () => limiter(subject).heartbeat({ subject, leaseId: "x", ttlMs: 1, extra: 1 } as never)],
    ];
    for (const [what, call] of bad) {
      it(`refuses ${what}`, async () => {
        expect(await codeOf(call())).toBe("INVALID_ARGUMENT");
        expect((await limiter(subject).acquire({ subject, limit: 10_000, ttlMs: 1, idempotencyKey: "probe" })).active).toBe(1);
      });
    }
  });
});
