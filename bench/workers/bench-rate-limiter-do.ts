import type { CheckInput, Decision, RuleState } from "../../rpc/rate-limits";
import type { Env } from "../../src/platform/env";
import { rateLimitHeaders } from "../../src/rate-limits/algorithms/headers";
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

  /**
   * The one-write ceiling of a call that carries `check`'s bytes: it takes a check's input and
   * answers a decision of the same shape (every rule admitted, headers built by tollgate's own
   * `rateLimitHeaders`) after one synchronous KV write. It validates, decides and meters
   * nothing: between it and `check` lies tollgate's own work, and between it and `noopWrite`
   * the cost of moving a decision across two RPC hops.
   */
  async noopWriteAnswering(input: CheckInput): Promise<Decision> {
    const nowMs = Date.now();
    this.ctx.storage.kv.put("bench:last-write", nowMs);
    const rules: RuleState[] = (input.rules ?? []).map((rule) => ({
      name: rule.name,
      algorithm: rule.algorithm,
      limit: rule.limit,
      periodMs: rule.periodMs,
      allowed: true,
      remaining: rule.limit - 1,
      resetAt: nowMs + rule.periodMs,
      retryAfterMs: 0,
      shadow: false,
    }));
    const tightest = rules.reduce((a, b) => (b.remaining < a.remaining ? b : a));
    const decision: Decision = {
      allowed: true,
      remaining: tightest.remaining,
      limit: tightest.limit,
      resetAt: tightest.resetAt,
      retryAfterMs: 0,
      deniedBy: [],
      rules,
      headers: {},
    };
    decision.headers = rateLimitHeaders(decision, nowMs);
    return decision;
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
