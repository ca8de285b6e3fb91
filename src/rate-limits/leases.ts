import { maybeOne, one, run } from "../platform/sql";

/**
 * The concurrency leases of one RateLimiterDO (`leases`). Only live leases (expiring after
 * `nowMs`) count, so every answer is exact even before the expiry alarm has deleted an
 * expired one.
 */
export class Leases {
  constructor(private readonly sql: SqlStorage) {}

  /** The live lease taken with idempotency key `key`, if any. */
  heldBy(key: string, nowMs: number): { leaseId: string; expiresAt: number } | undefined {
    const held = maybeOne<{ lease_id: string; expires_at_ms: number }>(
      this.sql,
      "SELECT lease_id, expires_at_ms FROM leases WHERE idempotency_key = ? AND expires_at_ms > ?",
      key,
      nowMs,
    );
    return held === undefined ? undefined : { leaseId: held.lease_id, expiresAt: held.expires_at_ms };
  }

  active(nowMs: number): number {
    return one<{ n: number }>(this.sql, "SELECT COUNT(*) AS n FROM leases WHERE expires_at_ms > ?", nowMs).n;
  }

  /** When the first live lease expires (call only when one is live). */
  earliestExpiry(nowMs: number): number {
    return one<{ earliest: number }>(this.sql, "SELECT MIN(expires_at_ms) AS earliest FROM leases WHERE expires_at_ms > ?", nowMs).earliest;
  }

  /** Stores a new lease, dropping the expired ones first (run it in a transaction). */
  grant(leaseId: string, expiresAt: number, nowMs: number, key: string | null): void {
    run(this.sql, "DELETE FROM leases WHERE expires_at_ms <= ?", nowMs);
    run(
      this.sql,
      "INSERT INTO leases (lease_id, expires_at_ms, acquired_at_ms, idempotency_key) VALUES (?, ?, ?, ?)",
      leaseId,
      expiresAt,
      nowMs,
      key,
    );
  }

  /** Deletes the lease; whether it was live. */
  release(leaseId: string, nowMs: number): boolean {
    const live = maybeOne(this.sql, "SELECT 1 AS live FROM leases WHERE lease_id = ? AND expires_at_ms > ?", leaseId, nowMs);
    run(this.sql, "DELETE FROM leases WHERE lease_id = ?", leaseId);
    return live !== undefined;
  }

  /** Moves a live lease's expiry to `expiresAt`; whether it was live. */
  renew(leaseId: string, expiresAt: number, nowMs: number): boolean {
    return run(this.sql, "UPDATE leases SET expires_at_ms = ? WHERE lease_id = ? AND expires_at_ms > ?", expiresAt, leaseId, nowMs) > 0;
  }

  /** Deletes the expired leases; when the next one expires, or null when none is left. */
  expire(nowMs: number): number | null {
    run(this.sql, "DELETE FROM leases WHERE expires_at_ms <= ?", nowMs);
    return one<{ next: number | null }>(this.sql, "SELECT MIN(expires_at_ms) AS next FROM leases").next;
  }
}
