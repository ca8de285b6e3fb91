import { RateLimiterDO } from "../../src/rate-limits/limiter-do";

/**
 * tollgate's RateLimiterDO, unchanged, plus two bench-only methods. The bench binds
 * `RATE_LIMITER` to this class, so `check` runs the shipped code on the very object the
 * ceiling's no-op runs on: same constructor (migrations), same isolate, same route.
 */
export class BenchRateLimiterDO extends RateLimiterDO {
  /** The ceiling: everything a call costs except tollgate's own work. */
  async noop(): Promise<null> {
    return null;
  }

  /**
   * The ceiling of a call that must persist something: one synchronous KV write, which
   * the output gate holds the reply for until it is committed, as it does for `check`.
   */
  async noopWrite(): Promise<null> {
    this.ctx.storage.kv.put("bench:last-write", Date.now());
    return null;
  }

  /** Bytes this subject occupies on disk (SQLite pages, including tollgate's internal tables). */
  async storedBytes(): Promise<number> {
    return this.ctx.storage.sql.databaseSize;
  }
}
