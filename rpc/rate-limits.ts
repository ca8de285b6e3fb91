/** Rate-limit contract: entrypoint `RateLimits`, object `RateLimiterDO`. Types only. */

export type Algorithm = "fixed_window" | "sliding_window" | "sliding_log" | "token_bucket" | "gcra";

/**
 * One limit. `name` is a lowercase key (`[a-z][a-z0-9_.-]*`, at most 64 chars) because it
 * is written into the IETF `RateLimit` headers. State is kept per rule name: changing a
 * rule's algorithm or period starts its state afresh; changing only its limit keeps the count.
 */
export interface Rule {
  name: string;
  algorithm: Algorithm;
  /** Requests (or cost units) admitted per period. A positive safe integer. */
  limit: number;
  /** Period in milliseconds, 1 ms to 366 days; `limit * periodMs` must be a safe integer. */
  periodMs: number;
  burst?: number;
  blockMs?: number;
  /** Evaluated and reported, never denies. */
  shadow?: boolean;
}

export interface CheckInput {
  subject: string;
  rules?: Rule[];
  policy?: string;
  /** Units to charge; default 1; 0 peeks without consuming. */
  cost?: number;
  /** A retried check with the same key returns the first decision and is charged once. */
  idempotencyKey?: string;
}

export interface PeekInput {
  subject: string;
  rules?: Rule[];
  policy?: string;
}

/** What one rule decided. */
export interface RuleState {
  name: string;
  algorithm: Algorithm;
  limit: number;
  periodMs: number;
  allowed: boolean;
  /** Units still admissible after this call. */
  remaining: number;
  /** When the rule's quota is fully restored, epoch ms. */
  resetAt: number;
  /** 0 when allowed; otherwise how long until the same call would be admitted by this rule. */
  retryAfterMs: number;
  shadow: boolean;
}

export interface Decision {
  allowed: boolean;
  /** The smallest `remaining` of the enforced (non-shadow) rules. */
  remaining: number;
  /** The limit of the rule that has the smallest `remaining`. */
  limit: number;
  resetAt: number;
  /** 0 when allowed; otherwise when every denying rule would admit the same call. */
  retryAfterMs: number;
  /** Names of every enforced rule that denied; empty when allowed. */
  deniedBy: string[];
  rules: RuleState[];
  /** `RateLimit-Policy`, `RateLimit` (IETF draft), `Retry-After` when denied, legacy `X-RateLimit-*`. */
  headers: Record<string, string>;
}

export interface ResetInput {
  subject: string;
  /** One rule's name; every rule when absent. */
  rule?: string;
}

export interface ResetResult {
  /** How many rule states were cleared. */
  cleared: number;
}

/** The `RateLimits` entrypoint, and the `AdminApi.rateLimits()` capability over capnweb. */
export interface RateLimitsApi {
  check(input: CheckInput): Promise<Decision>;
  peek(input: PeekInput): Promise<Decision>;
  reset(input: ResetInput): Promise<ResetResult>;
}
