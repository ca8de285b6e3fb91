import { DurableObject } from "cloudflare:workers";

type State = { requests: number[] };

const KEY = "limit:subject";

/**
 * The seeds' sample limiter (kv-vs-do-analysis, "Step 1"), kept as written there: one
 * JSON array of timestamps, read with `storage.get`, filtered, and written back with
 * `storage.put` on every admitted call. Bench-only: it exists to be compared with, never
 * shipped. Its window size and limit come from the caller instead of constants.
 */
export class SeedLimiterDO extends DurableObject {
  async checkAndIncrement(input: { limit: number; windowMs: number }): Promise<{ allowed: boolean; retryAfter?: number }> {
    const state = await this.ctx.storage.get<State>(KEY);
    const now = Date.now();
    const windowStart = now - input.windowMs;
    const validRequests = (state?.requests ?? []).filter((t) => t > windowStart);
    if (validRequests.length >= input.limit) {
      return { allowed: false, retryAfter: validRequests[0]! + input.windowMs - now };
    }
    validRequests.push(now);
    await this.ctx.storage.put(KEY, { requests: validRequests });
    return { allowed: true };
  }

  /** Set-up: `count` timestamps spread over the newer half of the window, in one put. */
  async prefill(input: { count: number; windowMs: number }): Promise<number> {
    const now = Date.now();
    const step = input.windowMs / 2 / Math.max(1, input.count);
    const requests = Array.from({ length: input.count }, (_, i) => Math.floor(now - input.windowMs / 2 + i * step));
    await this.ctx.storage.put(KEY, { requests });
    return requests.length;
  }

  async entries(): Promise<number> {
    return (await this.ctx.storage.get<State>(KEY))?.requests.length ?? 0;
  }

  async storedBytes(): Promise<number> {
    return this.ctx.storage.sql.databaseSize;
  }
}
