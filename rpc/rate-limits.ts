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
  /**
   * Units admitted per period (a positive safe integer). `token_bucket`: tokens added every
   * period; `gcra`: units emitted per period, evenly. `sliding_log`: at most 1,000.
   */
  limit: number;
  /** Period in milliseconds, 1 ms to 366 days; `limit * periodMs` must be a safe integer. */
  periodMs: number;
  /**
   * `token_bucket` and `gcra` only: the most units available at once (the bucket's size);
   * default `limit`. `burst * periodMs` must be a safe integer.
   */
  burst?: number;
  /** Once this rule denies a call, the whole subject is blocked for this long (1 ms to 366 days). */
  blockMs?: number;
  /** Evaluated and reported (with a count of calls it would have denied), never denies. */
  shadow?: boolean;
  /**
   * Charge this rule for denied calls too (default false: a denied call charges nothing), never
   * beyond full, so a client that keeps calling while denied stays denied until it slows down.
   */
  countDenied?: boolean;
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
  /** The rule's `burst`, when it has one. */
  burst?: number;
  allowed: boolean;
  /** Units still admissible after this call. */
  remaining: number;
  /** When the rule's quota is fully restored, epoch ms. */
  resetAt: number;
  /** 0 when allowed; otherwise how long until the same call would be admitted by this rule. */
  retryAfterMs: number;
  shadow: boolean;
  /**
   * Shadow rules only: how many charged calls this rule would have denied, counting this one
   * (kept until a day passes without one; cleared by `reset`).
   */
  wouldHaveDenied?: number;
}

/** Why a subject is refused regardless of its rules, and until when. */
export interface Block {
  /** Epoch ms; calls are admitted again from this instant. */
  untilMs: number;
  reason: string;
  /** The rule whose `blockMs` started the block; absent for a block set by hand. */
  rule?: string;
}

export interface Decision {
  allowed: boolean;
  /** The smallest `remaining` of the enforced (non-shadow) rules; 0 while blocked. */
  remaining: number;
  /** The limit of the rule that has the smallest `remaining`. */
  limit: number;
  resetAt: number;
  /** 0 when allowed; otherwise when every denying rule (and any block) would admit the same call. */
  retryAfterMs: number;
  /** Names of every enforced rule that denied; empty when allowed (or when only a block denied). */
  deniedBy: string[];
  rules: RuleState[];
  /** Present when the subject is blocked (by hand, or by a rule's `blockMs`): the call was denied. */
  blocked?: Block;
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

/** Gives units back, e.g. for a request that failed upstream and should not count. */
export interface RefundInput {
  subject: string;
  rules?: Rule[];
  policy?: string;
  /** Units to give back to every rule, 1 to 1e9. */
  cost: number;
  /** Required: a retried refund with the same key gives back once. */
  idempotencyKey: string;
}

export interface RefundResult {
  /** Per rule: what was given back, never more than the rule currently holds. */
  rules: { name: string; refunded: number }[];
}

export interface AcquireInput {
  subject: string;
  /** At most this many leases may be held at once on the subject, 1 to 10,000. */
  limit: number;
  /** The lease frees itself this long after it was granted or last renewed, 1 ms to 7 days. */
  ttlMs: number;
  /** A retried acquire with the same key returns the same lease while it is held. */
  idempotencyKey?: string;
}

export interface AcquireResult {
  granted: boolean;
  leaseId?: string;
  /** When the lease expires unless renewed (granted only). */
  expiresAt?: number;
  /** Leases held on the subject after this call. */
  active: number;
  /** 0 when granted; otherwise until the earliest held lease expires (it may be released sooner). */
  retryAfterMs: number;
}

export interface ReleaseInput {
  subject: string;
  leaseId: string;
}

export interface ReleaseResult {
  /** False when the lease was already released or had expired. */
  released: boolean;
  active: number;
}

export interface HeartbeatInput {
  subject: string;
  leaseId: string;
  /** The new time to live, from now. */
  ttlMs: number;
}

export interface HeartbeatResult {
  /** False when the lease is no longer held (released or expired): stop the work it guards. */
  renewed: boolean;
  expiresAt?: number;
}

export interface SetOverrideInput {
  subject: string;
  /** Replaces the rules (inline or from a policy) of every call on this subject until cleared. */
  rules: Rule[];
}

export interface OverrideResult {
  subject: string;
  rules: Rule[];
  setAt: number;
}

export interface SubjectInput {
  subject: string;
}

export interface ClearOverrideResult {
  /** False when the subject had no override. */
  cleared: boolean;
}

export interface BlockInput {
  subject: string;
  /** Epoch ms, in the future, at most 366 days ahead. */
  untilMs: number;
  reason: string;
}

export interface BlockResult {
  blocked: Block;
}

export interface UnblockResult {
  /** False when the subject was not blocked. */
  unblocked: boolean;
}

/** One subject's part of a `checkMany`. */
export type SubjectCheck = Omit<CheckInput, "idempotencyKey">;

export interface CheckManyInput {
  /** 1 to 8 checks on distinct subjects (e.g. per key and per IP). */
  checks: SubjectCheck[];
  /** Makes the whole call retry-safe: each subject's check and refund is keyed from it. */
  idempotencyKey?: string;
}

export interface CheckManyResult {
  /** True only when every subject admitted. */
  allowed: boolean;
  /** 0 when allowed; otherwise the longest wait among the denying subjects. */
  retryAfterMs: number;
  /** Subjects that denied. */
  deniedBy: string[];
  /** Subjects whose charge was given back because another subject denied. */
  refunded: string[];
  /** Each subject's decision, in the order of `checks`. */
  decisions: Decision[];
  /** The headers of the first denying subject's decision, or of the tightest one when allowed. */
  headers: Record<string, string>;
}

/** The `RateLimits` entrypoint, and the `AdminApi.rateLimits()` capability over capnweb. */
export interface RateLimitsApi {
  check(input: CheckInput): Promise<Decision>;
  checkMany(input: CheckManyInput): Promise<CheckManyResult>;
  peek(input: PeekInput): Promise<Decision>;
  reset(input: ResetInput): Promise<ResetResult>;
  refund(input: RefundInput): Promise<RefundResult>;
  acquire(input: AcquireInput): Promise<AcquireResult>;
  release(input: ReleaseInput): Promise<ReleaseResult>;
  heartbeat(input: HeartbeatInput): Promise<HeartbeatResult>;
  setOverride(input: SetOverrideInput): Promise<OverrideResult>;
  clearOverride(input: SubjectInput): Promise<ClearOverrideResult>;
  block(input: BlockInput): Promise<BlockResult>;
  unblock(input: SubjectInput): Promise<UnblockResult>;
}

/** A subject's charged checks since `sinceMs` (a minute boundary), by outcome (read by denial_rate alert rules). */
export interface CheckCounts {
  allowed: number;
  denied: number;
  sinceMs: number;
}
