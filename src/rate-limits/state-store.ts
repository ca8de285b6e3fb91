import { CHECK_COUNT_RETENTION_MS } from "../platform/retention";
import { maybeOne, one } from "../platform/sql";
import { type MinuteCounts, SubjectState, type SubjectStateRow } from "./subject-state";

/**
 * Where a RateLimiterDO keeps its `SubjectState`: the one `subject_state` row, plus the
 * `check_counts` table for minutes older than the row holds. Synchronous SQL only.
 */
export class StateStore {
  /** The minute `check_counts` was last pruned in: a write prunes it at most once a minute. */
  #prunedMinuteMs = -1;

  constructor(private readonly sql: SqlStorage) {}

  /** The stored state (empty when there is no row). */
  load(): SubjectState {
    const row = maybeOne<SubjectStateRow>(this.sql, "SELECT rules, shadow, block, check_counts FROM subject_state WHERE id = 1");
    return row === undefined ? new SubjectState() : SubjectState.fromRow(row);
  }

  /**
   * Writes `state` as of `nowMs`: what has expired is dropped first, minutes older than the row
   * holds move to `check_counts` (whose rows past retention are deleted, at most once a minute:
   * a statement that usually writes nothing), and the row is one upsert (a rowid table: no index
   * to write), or a delete when nothing is left. Run it in the flush's transaction: on failure
   * the object discards `state` and reloads it.
   */
  write(state: SubjectState, nowMs: number): void {
    state.trim(nowMs);
    for (const [minute, counts] of state.takeOldMinutes(nowMs)) this.#addCounts(minute, counts);
    if (nowMs - (nowMs % 60_000) !== this.#prunedMinuteMs) this.pruneCounts(nowMs);
    if (state.isEmpty()) {
      this.sql.exec("DELETE FROM subject_state WHERE id = 1");
      return;
    }
    const row = state.toRow();
    this.sql.exec(
      `INSERT INTO subject_state (id, rules, shadow, block, check_counts) VALUES (1, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET rules = excluded.rules, shadow = excluded.shadow, block = excluded.block,
         check_counts = excluded.check_counts`,
      row.rules,
      row.shadow,
      row.block,
      row.check_counts,
    );
  }

  /** Checks counted in `check_counts` in the minutes from `sinceMinuteMs` on, within their retention. */
  storedCountsSince(sinceMinuteMs: number, nowMs: number): MinuteCounts {
    const row = one<{ allowed: number | null; denied: number | null }>(
      this.sql,
      "SELECT SUM(allowed) AS allowed, SUM(denied) AS denied FROM check_counts WHERE minute_ms >= ?",
      Math.max(sinceMinuteMs, nowMs - CHECK_COUNT_RETENTION_MS),
    );
    return { allowed: row.allowed ?? 0, denied: row.denied ?? 0 };
  }

  /** Deletes the `check_counts` rows past their retention. */
  pruneCounts(nowMs: number): void {
    this.sql.exec("DELETE FROM check_counts WHERE minute_ms < ?", nowMs - CHECK_COUNT_RETENTION_MS);
    this.#prunedMinuteMs = nowMs - (nowMs % 60_000);
  }

  #addCounts(minuteMs: number, counts: MinuteCounts): void {
    this.sql.exec(
      `INSERT INTO check_counts (minute_ms, allowed, denied) VALUES (?, ?, ?)
       ON CONFLICT (minute_ms) DO UPDATE SET allowed = allowed + excluded.allowed, denied = denied + excluded.denied`,
      minuteMs,
      counts.allowed,
      counts.denied,
    );
  }
}
