import type { Env } from "../../src/platform/env";
import { RateLimiterDO } from "../../src/rate-limits/limiter-do";
import { costMeter, countRequestsOf } from "./cost-meter";

/**
 * tollgate's RateLimiterDO, unchanged, plus bench-only methods. The bench binds
 * `RATE_LIMITER` to this class, so `check` runs the shipped code on the very object the
 * ceiling's no-op runs on: same constructor (migrations), same isolate, same route. It is
 * constructed with the cost meter's hooks (bench/workers/cost-meter.ts), as every object is.
 */
export class BenchRateLimiterDO extends RateLimiterDO {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env, costMeter.hooks(ctx, "RateLimiterDO"));
    countRequestsOf("RateLimiterDO");
  }

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

  /** See MeteredObject (bench/workers/metered-objects.ts). */
  benchPing(): null {
    return null;
  }

  benchRunAlarm(): Promise<{ ran: number; nextDueMs: number | null }> {
    return costMeter.runAlarm(this.ctx);
  }

  benchNudge(): Promise<boolean> {
    return costMeter.nudge(this.ctx, this.scheduler);
  }
}
