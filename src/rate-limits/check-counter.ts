import { CHECK_COUNT_RETENTION_MS } from "../platform/retention";
import { one, run } from "../platform/sql";

/** Charged checks per minute, allowed and denied (`check_counts`), read by denial_rate alert rules. */
export class CheckCounter {
  constructor(private readonly sql: SqlStorage) {}

  /** One upsert of this minute's row (a rowid table: no index to write). `exec`, not `run`: the hot path skips `changes()`. */
  count(allowed: boolean, nowMs: number): void {
    this.sql.exec(
      `INSERT INTO check_counts (minute_ms, allowed, denied) VALUES (?, ?, ?)
       ON CONFLICT (minute_ms) DO UPDATE SET allowed = allowed + excluded.allowed, denied = denied + excluded.denied`,
      nowMs - (nowMs % 60_000),
      allowed ? 1 : 0,
      allowed ? 0 : 1,
    );
  }

  /** Checks counted in the minutes from `sinceMinuteMs` on. */
  since(sinceMinuteMs: number): { allowed: number; denied: number } {
    const row = one<{ allowed: number | null; denied: number | null }>(
      this.sql,
      "SELECT SUM(allowed) AS allowed, SUM(denied) AS denied FROM check_counts WHERE minute_ms >= ?",
      sinceMinuteMs,
    );
    return { allowed: row.allowed ?? 0, denied: row.denied ?? 0 };
  }

  /**
   * Forgets counts older than their retention. Runs inside the object's existing cleanup tasks
   * (expire-state, prune-replays) rather than a task of its own: an idle subject keeps at most
   * a day of per-minute rows until its next check wakes the cleanup again.
   */
  prune(nowMs: number): void {
    run(this.sql, "DELETE FROM check_counts WHERE minute_ms < ?", nowMs - CHECK_COUNT_RETENTION_MS);
  }
}
