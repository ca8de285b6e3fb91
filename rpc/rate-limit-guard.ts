import { errorCodeOf } from "./errors";
import type { CheckInput, Decision, RateLimitsApi } from "./rate-limits";

/**
 * What to answer when tollgate cannot: `"fail-open"` admits the call (availability first:
 * an outage of the limiter does not become an outage of the API), `"fail-closed"` denies it
 * (protection first: nothing passes unmetered). There is no default; the caller decides.
 */
export type Unavailable = "fail-open" | "fail-closed";

export interface RateLimitGuardOptions {
  /** How long to wait for tollgate's answer before treating it as unavailable. */
  timeoutMs: number;
  onUnavailable: Unavailable;
  /** The `retryAfterMs` of a fail-closed denial; default 1,000. */
  failClosedRetryAfterMs?: number;
  /** The most denials remembered at once (oldest forgotten first); default 10,000. */
  maxCachedDenials?: number;
  /** Told about each timeout or fault that was answered by `onUnavailable`. */
  onError?: (error: unknown) => void;
  /** The clock, for tests; default `Date.now`. */
  now?: () => number;
}

/** A decision, and where it came from. */
export type GuardedDecision = Decision & {
  source: "tollgate" | "deny-cache" | "fail-open" | "fail-closed";
};

/** Errors that mean the call itself is wrong: passed to the caller, never failed open or closed. */
const CALLER_ERRORS = new Set([
  "INVALID_ARGUMENT",
  "NOT_FOUND",
  "CONFLICT",
  "UNAUTHENTICATED",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "UNIMPLEMENTED",
]);

const TIMED_OUT = Symbol("timed out");

interface CachedDenial {
  retryAt: number;
  cost: number;
  decision: Decision;
}

/**
 * A caller-side wrapper of `RateLimits.check` for sibling Workers (or any holder of a
 * `RateLimitsApi`), kept in the isolate:
 *
 * - **Deny cache.** A denied subject is answered from memory until its `retryAt`, without a
 *   round trip, for the same rules (or policy) and any cost at least as large; a blocked
 *   subject for any rules. Denials are monotone in cost and time only moves towards
 *   admitting, so a cached denial is never wrong before `retryAt`; only admissions go to
 *   tollgate (an early admission after a `reset` or `unblock` is the one thing it can miss,
 *   for at most the cached wait, since isolates share no memory).
 * - **Timeout** with an explicit fail-open or fail-closed answer. A timeout, a network
 *   fault or an `INTERNAL` error gets that answer; a contract error (`INVALID_ARGUMENT`,
 *   `NOT_FOUND`, ...) is thrown, since retrying or ignoring it cannot help.
 *
 * `source` on each decision says which of these answered.
 */
export class RateLimitGuard {
  readonly #limits: Pick<RateLimitsApi, "check">;
  readonly #options: RateLimitGuardOptions;
  readonly #denials = new Map<string, CachedDenial>();

  constructor(limits: Pick<RateLimitsApi, "check">, options: RateLimitGuardOptions) {
    if (!(options.timeoutMs > 0)) throw new RangeError("timeoutMs must be positive");
    if (options.onUnavailable !== "fail-open" && options.onUnavailable !== "fail-closed") {
      throw new RangeError('onUnavailable must be "fail-open" or "fail-closed"');
    }
    this.#limits = limits;
    this.#options = options;
  }

  async check(input: CheckInput): Promise<GuardedDecision> {
    const now = this.#now();
    const cost = input.cost ?? 1;
    const key = cacheKey(input);
    const cached = this.#cached(`block:${input.subject}`, now, 0) ?? this.#cached(key, now, cost);
    if (cached !== undefined) return cached;

    let decision: Decision;
    try {
      decision = await this.#withTimeout(this.#limits.check(input));
    } catch (error) {
      const code = errorCodeOf(error);
      if (code !== undefined && CALLER_ERRORS.has(code)) throw error;
      this.#options.onError?.(error);
      return this.#unavailable(now);
    }
    if (!decision.allowed && decision.retryAfterMs > 0 && cost > 0) {
      const retryAt = this.#now() + decision.retryAfterMs;
      this.#remember(decision.blocked ? `block:${input.subject}` : key, { retryAt, cost: decision.blocked ? 0 : cost, decision });
    }
    return { ...decision, source: "tollgate" };
  }

  /** Forgets cached denials: of one subject, or all (after a `reset` or `unblock` you made). */
  forget(subject?: string): void {
    if (subject === undefined) {
      this.#denials.clear();
      return;
    }
    for (const key of [...this.#denials.keys()]) {
      if (key === `block:${subject}` || key.startsWith(`${JSON.stringify(subject)}|`)) this.#denials.delete(key);
    }
  }

  /** How many denials are cached now. */
  get cachedDenials(): number {
    return this.#denials.size;
  }

  #cached(key: string, now: number, cost: number): GuardedDecision | undefined {
    const entry = this.#denials.get(key);
    if (entry === undefined) return undefined;
    if (entry.retryAt <= now) {
      this.#denials.delete(key);
      return undefined;
    }
    if (cost < entry.cost) return undefined;
    const retryAfterMs = entry.retryAt - now;
    return {
      ...entry.decision,
      retryAfterMs,
      headers: { ...entry.decision.headers, "Retry-After": String(Math.max(1, Math.ceil(retryAfterMs / 1000))) },
      source: "deny-cache",
    };
  }

  #remember(key: string, entry: CachedDenial): void {
    this.#denials.delete(key);
    this.#denials.set(key, entry);
    const max = this.#options.maxCachedDenials ?? 10_000;
    while (this.#denials.size > max) this.#denials.delete(this.#denials.keys().next().value!);
  }

  async #withTimeout(call: Promise<Decision>): Promise<Decision> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<typeof TIMED_OUT>((resolve) => {
      timer = setTimeout(() => resolve(TIMED_OUT), this.#options.timeoutMs);
    });
    // The call may still settle after the timeout; its outcome is then ignored, not unhandled.
    call.catch(() => undefined);
    try {
      const result = await Promise.race([call, timeout]);
      if (result === TIMED_OUT) throw new Error(`tollgate did not answer within ${this.#options.timeoutMs} ms`);
      return result;
    } finally {
      if (timer !== undefined) clearTimeout(timer);
    }
  }

  #unavailable(now: number): GuardedDecision {
    if (this.#options.onUnavailable === "fail-open") {
      return {
        allowed: true,
        remaining: 0,
        limit: 0,
        resetAt: now,
        retryAfterMs: 0,
        deniedBy: [],
        rules: [],
        headers: {},
        source: "fail-open",
      };
    }
    const retryAfterMs = this.#options.failClosedRetryAfterMs ?? 1_000;
    return {
      allowed: false,
      remaining: 0,
      limit: 0,
      resetAt: now + retryAfterMs,
      retryAfterMs,
      deniedBy: [],
      rules: [],
      headers: { "Retry-After": String(Math.max(1, Math.ceil(retryAfterMs / 1000))) },
      source: "fail-closed",
    };
  }

  #now(): number {
    return (this.#options.now ?? Date.now)();
  }
}

/** Denials are cached per subject and per rules (or policy): another rule set may still admit. */
function cacheKey(input: CheckInput): string {
  return `${JSON.stringify(input.subject)}|${JSON.stringify(input.rules ?? null)}|${JSON.stringify(input.policy ?? null)}`;
}
