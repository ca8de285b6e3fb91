import { NO_FACTORS, type RuleFactors } from "./adjust";

/** A limiter refreshes its isolate's copy of the adaptive factors at most this often, in the background. */
export const ADJUSTMENTS_REFRESH_MS = 5_000;
/** A copy older than this (an isolate idle for a while) is not used: the call waits for a fresh one. */
export const ADJUSTMENTS_MAX_STALE_MS = 30_000;

/**
 * The adaptive factors as one isolate knows them, shared by every limiter object in it, so a
 * check never waits on the controller except when the copy is missing or too old:
 * stale-while-revalidate. A change reaches a busy isolate within `ADJUSTMENTS_REFRESH_MS`
 * plus one round trip. Only plain data is shared between objects; each object awaits only
 * promises it started itself (a promise must not cross Durable Object contexts).
 */
export class AdjustmentsCache {
  #value: RuleFactors | undefined;
  #fetchedAtMs = 0;
  #refreshingSinceMs: number | null = null;

  constructor(
    private readonly refreshMs: number = ADJUSTMENTS_REFRESH_MS,
    private readonly maxStaleMs: number = ADJUSTMENTS_MAX_STALE_MS,
  ) {}

  /**
   * The factors to apply now. `fetch` reads them from the controller; when it fails, the last
   * known copy stays in use (or none, the configured limits, when nothing is known) and the
   * read is retried after `refreshMs`.
   */
  async get(fetch: () => Promise<RuleFactors>, nowMs: number): Promise<RuleFactors> {
    const age = nowMs - this.#fetchedAtMs;
    if (this.#value === undefined || age > this.maxStaleMs || age < 0) return this.#load(fetch, nowMs);
    if (age >= this.refreshMs && (this.#refreshingSinceMs === null || nowMs - this.#refreshingSinceMs > this.refreshMs)) {
      this.#refreshingSinceMs = nowMs;
      this.#load(fetch, nowMs).catch(() => undefined);
    }
    return this.#value;
  }

  /** Drops the copy, so the next call fetches (tests; and after this isolate changed a policy). */
  forget(): void {
    this.#value = undefined;
    this.#fetchedAtMs = 0;
    this.#refreshingSinceMs = null;
  }

  async #load(fetch: () => Promise<RuleFactors>, nowMs: number): Promise<RuleFactors> {
    try {
      const value = await fetch();
      this.#value = value;
      this.#fetchedAtMs = nowMs;
      return value;
    } catch (error) {
      console.error("adaptive limits: reading the factors failed; limits apply unadjusted", error);
      this.#value ??= NO_FACTORS;
      this.#fetchedAtMs = nowMs;
      return this.#value;
    } finally {
      this.#refreshingSinceMs = null;
    }
  }
}

/** The one copy of this isolate. */
export const adjustmentsCache = new AdjustmentsCache();
