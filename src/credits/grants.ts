import { all, maybeOne, one, write } from "../platform/sql";
import { WriteBackRows } from "../platform/write-back";
import type { GrantRow } from "./ledger-rows";

/** A change to a grant's counters (each added), and whether its expiry is now booked. */
export interface GrantChange {
  remaining?: number;
  consumed?: number;
  repaid?: number;
  expired?: number;
  expiryBooked?: true;
}

/** The counters a change may move, in the order an update writes them. */
const COUNTERS = ["remaining", "consumed", "repaid", "expired", "expiry_booked"] as const;

/**
 * The `grants` table. A grant many spends draw from is the ledger's hottest row, so changes go
 * to a write-back cache (platform/write-back.ts): every change within one transaction (a batch
 * of calls) is applied in memory and the grant is written once, at commit, with only the
 * columns that moved (an unchanged `expiry_booked` leaves `grants_to_expire` unwritten). Every
 * read inside a transaction goes through here and sees the changes so far.
 */
export class Grants {
  readonly cache: WriteBackRows<GrantRow>;

  constructor(private readonly sql: SqlStorage) {
    this.cache = new WriteBackRows<GrantRow>({
      load: (grantId) => maybeOne<GrantRow>(sql, "SELECT * FROM grants WHERE grant_id = ?", grantId),
      store: (grantId, row, stored) => {
        const moved = COUNTERS.filter((column) => stored === undefined || row[column] !== stored[column]);
        if (moved.length === 0) return;
        const set = moved.map((column) => `${column} = ?`).join(", ");
        write(sql, `UPDATE grants SET ${set} WHERE grant_id = ?`, ...moved.map((column) => row[column]), grantId);
      },
    });
  }

  insert(grantId: string, seq: number, amount: number, priority: number, expiresAtMs: number | null): void {
    write(
      this.sql,
      "INSERT INTO grants (grant_id, seq, amount, remaining, priority, expires_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
      grantId,
      seq,
      amount,
      amount,
      priority,
      expiresAtMs,
    );
  }

  /** A grant known to exist. */
  get(grantId: string): GrantRow {
    const row = this.cache.get(grantId);
    // Read again to fail the way a missing row always has (an internal error: entries name only real grants).
    return row ?? one<GrantRow>(this.sql, "SELECT * FROM grants WHERE grant_id = ?", grantId);
  }

  /** Grants with credit left (the burn-down's candidates). */
  withRemaining(): GrantRow[] {
    const stored = all<GrantRow>(this.sql, "SELECT * FROM grants WHERE remaining > 0");
    return this.cache.overlay(
      stored,
      (g) => g.grant_id,
      (g) => g.remaining > 0,
    );
  }

  /** Grants that repaid overdraft debt, newest first. */
  repaying(): GrantRow[] {
    const stored = all<GrantRow>(this.sql, "SELECT * FROM grants WHERE repaid > 0");
    return this.cache
      .overlay(
        stored,
        (g) => g.grant_id,
        (g) => g.repaid > 0,
      )
      .sort((a, b) => b.seq - a.seq);
  }

  /** Grants whose expiry is due at `nowMs` and not booked yet, in expiry order. */
  dueToExpire(nowMs: number): GrantRow[] {
    const due = (g: GrantRow) => g.expiry_booked === 0 && g.expires_at_ms !== null && g.expires_at_ms <= nowMs;
    const stored = all<GrantRow>(
      this.sql,
      "SELECT * FROM grants WHERE expiry_booked = 0 AND expires_at_ms IS NOT NULL AND expires_at_ms <= ?",
      nowMs,
    );
    return this.cache.overlay(stored, (g) => g.grant_id, due).sort((a, b) => a.expires_at_ms! - b.expires_at_ms! || a.seq - b.seq);
  }

  change(grantId: string, change: GrantChange): void {
    const row = this.get(grantId);
    this.cache.set(grantId, {
      ...row,
      remaining: row.remaining + (change.remaining ?? 0),
      consumed: row.consumed + (change.consumed ?? 0),
      repaid: row.repaid + (change.repaid ?? 0),
      expired: row.expired + (change.expired ?? 0),
      expiry_booked: change.expiryBooked ? 1 : row.expiry_booked,
    });
  }
}
