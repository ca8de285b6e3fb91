import type {
  AcquireResult,
  BlockResult,
  CheckCounts,
  ClearOverrideResult,
  Decision,
  HeartbeatResult,
  OverrideResult,
  RefundResult,
  ReleaseResult,
  Rule,
  UnblockResult,
} from "../../rpc/rate-limits";
import type { Env } from "../platform/env";
import { conflict, invalidArgument } from "../platform/errors";
import { adjustRules } from "../operations/adaptive/adjust";
import { adjustmentsCache } from "../operations/adaptive/adjustments-cache";
import { loadPolicies, resolveRules } from "./policies";
import { CHECK_COUNT_RETENTION_MS, DEFAULT_DATA_RETENTION, loadDataRetention, SHADOW_COUNT_TTL_MS } from "../platform/retention";
import { evaluateRules, refundRules } from "./algorithms/evaluate-rules";
import {
  acquireInputSchema,
  blockInputSchema,
  checkCountsInputSchema,
  checkInputSchema,
  heartbeatInputSchema,
  peekInputSchema,
  refundInputSchema,
  releaseInputSchema,
  resetInputSchema,
  RULE_BOUNDS,
  setOverrideInputSchema,
  subjectInputSchema,
} from "./schemas";
import { RATE_LIMITER_MIGRATIONS } from "./limiter-tables";
import { type ObjectHooks, type ObjectSpec, TollgateObject } from "../platform/tollgate-object";
import { IdempotencyStore, PRUNE_BATCH } from "../platform/idempotency";
import { ADAPTIVE_LIMITS_NAME } from "../platform/names";
import { GroupCommit } from "../platform/group-commit";
import { Leases } from "./leases";
import { StateStore } from "./state-store";
import type { SubjectState } from "./subject-state";
import { SubjectOverride } from "./subject-override";

/** Idempotency keys of `check` and `refund` are honoured this long by default (`RETENTION.limiterIdempotency`). */
export const CHECK_REPLAY_TTL_MS = DEFAULT_DATA_RETENTION.limiterIdempotency;
/** A shadow rule's would-have-denied count is kept until this long passes without a new one. */
export { SHADOW_COUNT_TTL_MS };
/** Replay pruning waits this long past the oldest key's expiry, so one run takes the keys expiring near it. */
const CLEANUP_SLACK_MS = 60_000;
/** Most expired idempotency records one alarm run deletes (retention in small batches). */
export { PRUNE_BATCH };
/** Per-minute check counts are kept this long: the longest window a denial_rate alert reads, plus an hour. */
export { CHECK_COUNT_RETENTION_MS };

const keyReusedMessage = (key: string) => `idempotency key "${key}" was used for a different call`;

/**
 * The rate-limit state of one subject (`"ip:203.0.113.9"`, `"key:k_123"`). Single-threaded,
 * so every decision is exact: the state is read, decided on and changed with no await in
 * between. All rules of one check are applied atomically.
 *
 * The subject's state (`SubjectState`: rule states, shadow counts, block, recent check counts)
 * lives in memory and is written back as one row by group commit (src/platform/group-commit.ts):
 * every call that reads or changes it waits for the flush that writes what it saw, so no
 * answer leaves before its write, and concurrent calls share one write.
 *
 * Its tables are kept by plain classes held in `#private` fields, so only the contract
 * methods below are reachable over RPC.
 */
export class RateLimiterDO extends TollgateObject {
  static readonly #spec: ObjectSpec<RateLimiterDO> = {
    component: "rate-limiter",
    migrations: RATE_LIMITER_MIGRATIONS,
    tasks: (self) => ({
      // Scheduled by objects before the state row (migration 4); nothing schedules it now.
      "expire-state": (_payload, nowMs) => self.#expireLegacy(nowMs),
      "prune-replays": (_payload, nowMs) => self.#pruneReplays(nowMs),
      "expire-leases": (_payload, nowMs) => self.#expireLeases(nowMs),
    }),
    // A restore writes the tables behind the cached state and override: both are read again, and
    // a change still waiting for its flush (possible only in an object with no data) is refused.
    afterImport: (self) => self.#commit.abandon(conflict("the subject was restored while this call waited for its write")),
  };

  readonly #store = new StateStore(this.sql);
  readonly #override = new SubjectOverride(this.sql);
  readonly #leases = new Leases(this.sql);
  // The stored answers of `check` and `refund` calls with an idempotency key. A record past its
  // window is dead at once (a new call replaces it). `this.env`, not a copy: a test subclass may
  // give the object its own RETENTION later.
  readonly #replays = new IdempotencyStore(this.sql, {
    table: "check_replays",
    resultColumn: "decision",
    windowMs: () => loadDataRetention(this.env).limiterIdempotency,
    replaysExpired: false,
    conflictMessage: keyReusedMessage,
    transaction: (body) => this.ctx.storage.transactionSync(body),
  });
  /** The subject's state as of the last change; undefined until first read, and after a failed flush. */
  #state: SubjectState | undefined;
  /** Answers of keyed calls made since the last flush, written by the next one. */
  readonly #pendingReplays = new Map<string, { request: unknown; result: object; nowMs: number }>();
  readonly #commit = new GroupCommit({
    flush: () => this.#flush(),
    transaction: (body) => this.ctx.storage.transactionSync(body),
    durable: () => this.ctx.storage.sync(),
    discard: () => this.#forget(),
  });

  constructor(ctx: DurableObjectState, env: Env, hooks?: ObjectHooks) {
    super(ctx, env, RateLimiterDO.#spec, hooks);
  }

  /** Decides one call and, when every enforced rule admits it, charges `cost` to all of them. */
  check(input: unknown): Promise<Decision> {
    return this.handle("check", checkInputSchema, input, async (parsed) => {
      this.#assertSubject(parsed.subject);
      const named = this.#namedRules(parsed);
      const rules = await this.#enforcedRules(parsed, named);
      const cost = parsed.cost ?? 1;
      const nowMs = this.now();
      if (cost === 0) return this.#commit.read(() => this.#decide(rules, 1, false, nowMs).decision);

      // The fingerprint is of what the caller asked, so a retry stays a replay even if an
      // override was set or cleared in between.
      const key = parsed.idempotencyKey;
      const request = { rules: named, cost };
      if (key !== undefined) {
        const replay = this.#findReplay<Decision>(key, request, nowMs);
        if (replay !== undefined) return this.#commit.read(() => replay);
      }

      const decision = await this.#commit.change(() => {
        const evaluation = this.#decide(rules, cost, true, nowMs);
        this.#subject().applyCheck(evaluation, nowMs);
        if (key !== undefined) this.#pendingReplays.set(key, { request, result: evaluation.decision, nowMs });
        return evaluation.decision;
      });
      if (key !== undefined) await this.#scheduleReplayPruning(nowMs);
      return decision;
    });
  }

  /** Charged checks since `sinceMs` (whole minutes: the minute holding `sinceMs` counts), allowed and denied. */
  checkCounts(input: unknown): Promise<CheckCounts> {
    return this.handle("checkCounts", checkCountsInputSchema, input, async (parsed) => {
      this.#assertSubject(parsed.subject);
      const since = parsed.sinceMs - (parsed.sinceMs % 60_000);
      const nowMs = this.now();
      return this.#commit.read(() => {
        // The last hour's minutes are in the state row (memory), older ones in check_counts.
        const recent = this.#subject().countsSince(since, nowMs);
        const older = this.#store.storedCountsSince(since, nowMs);
        return { allowed: recent.allowed + older.allowed, denied: recent.denied + older.denied, sinceMs: since };
      });
    });
  }

  /** Whether a call of cost 1 would be admitted now, and what remains; never consumes. */
  peek(input: unknown): Promise<Decision> {
    return this.handle("peek", peekInputSchema, input, async (parsed) => {
      this.#assertSubject(parsed.subject);
      const rules = await this.#enforcedRules(parsed, this.#namedRules(parsed));
      const nowMs = this.now();
      return this.#commit.read(() => this.#decide(rules, 1, false, nowMs).decision);
    });
  }

  /** Clears one rule's state (and its shadow count), or every rule's. */
  reset(input: unknown): Promise<{ cleared: number }> {
    return this.handle("reset", resetInputSchema, input, async (parsed) => {
      this.#assertSubject(parsed.subject);
      return this.#commit.change(() => ({ cleared: this.#subject().clearRules(parsed.rule) }));
    });
  }

  /**
   * Gives `cost` units back to every rule, each never beyond empty (what was taken). A retried
   * refund with the same key gives back once.
   */
  refund(input: unknown): Promise<RefundResult> {
    return this.handle("refund", refundInputSchema, input, async (parsed) => {
      this.#assertSubject(parsed.subject);
      const named = this.#namedRules(parsed);
      const rules = await this.#enforcedRules(parsed, named);
      const nowMs = this.now();
      const key = parsed.idempotencyKey;
      const request = { refund: { rules: named, cost: parsed.cost } };
      const replay = this.#findReplay<RefundResult>(key, request, nowMs);
      if (replay !== undefined) return this.#commit.read(() => replay);

      const result = await this.#commit.change(() => {
        const state = this.#subject();
        const refunded = refundRules(rules, state.ruleStates(rules.map((rule) => rule.name)), nowMs, parsed.cost);
        state.applyWrites(refunded.writes);
        const answer: RefundResult = { rules: refunded.rules };
        this.#pendingReplays.set(key, { request, result: answer, nowMs });
        return answer;
      });
      await this.#scheduleReplayPruning(nowMs);
      return result;
    });
  }

  /** Blocks the subject until `untilMs`, replacing any block it had. */
  block(input: unknown): Promise<BlockResult> {
    return this.handle("block", blockInputSchema, input, async (parsed) => {
      this.#assertSubject(parsed.subject);
      const nowMs = this.now();
      if (parsed.untilMs <= nowMs) throw invalidArgument("untilMs must be in the future");
      if (parsed.untilMs > nowMs + RULE_BOUNDS.maxPeriodMs) throw invalidArgument("untilMs must be at most 366 days ahead");
      const block = { untilMs: parsed.untilMs, reason: parsed.reason };
      await this.#commit.change(() => {
        this.#subject().block = block;
      });
      return { blocked: { ...block } };
    });
  }

  /** Lifts the subject's block, whether set by hand or by a rule's `blockMs`. */
  unblock(input: unknown): Promise<UnblockResult> {
    return this.handle("unblock", subjectInputSchema, input, async (parsed) => {
      this.#assertSubject(parsed.subject);
      const nowMs = this.now();
      return this.#commit.change(() => {
        const state = this.#subject();
        const active = state.activeBlock(nowMs) !== undefined;
        state.block = null;
        return { unblocked: active };
      });
    });
  }

  /** Replaces the rules of every later call on this subject, whatever rules or policy it names. */
  setOverride(input: unknown): Promise<OverrideResult> {
    return this.handle("setOverride", setOverrideInputSchema, input, async (parsed) => {
      this.#assertSubject(parsed.subject);
      const setAt = this.now();
      this.#override.set(parsed.rules, setAt);
      return { subject: parsed.subject, rules: parsed.rules, setAt };
    });
  }

  /** Goes back to the rules or policy each call names. */
  clearOverride(input: unknown): Promise<ClearOverrideResult> {
    return this.handle("clearOverride", subjectInputSchema, input, async (parsed) => {
      this.#assertSubject(parsed.subject);
      return { cleared: this.#override.clear() };
    });
  }

  /**
   * Takes one of at most `limit` concurrent leases. Only live leases count, so the answer is
   * exact even before the expiry alarm has deleted an expired one.
   */
  acquire(input: unknown): Promise<AcquireResult> {
    return this.handle("acquire", acquireInputSchema, input, async (parsed) => {
      this.#assertSubject(parsed.subject);
      const nowMs = this.now();
      const key = parsed.idempotencyKey;
      if (key !== undefined) {
        const held = this.#leases.heldBy(key, nowMs);
        if (held !== undefined) return { granted: true, ...held, active: this.#leases.active(nowMs), retryAfterMs: 0 };
      }
      const active = this.#leases.active(nowMs);
      if (active >= parsed.limit) return { granted: false, active, retryAfterMs: this.#leases.earliestExpiry(nowMs) - nowMs };
      const leaseId = crypto.randomUUID();
      const expiresAt = nowMs + parsed.ttlMs;
      this.ctx.storage.transactionSync(() => this.#leases.grant(leaseId, expiresAt, nowMs, key ?? null));
      await this.scheduler.schedule("expire-leases", expiresAt, null, "expire-leases", "earliest");
      return { granted: true, leaseId, expiresAt, active: active + 1, retryAfterMs: 0 };
    });
  }

  /** Frees a lease's slot at once. */
  release(input: unknown): Promise<ReleaseResult> {
    return this.handle("release", releaseInputSchema, input, async (parsed) => {
      this.#assertSubject(parsed.subject);
      const nowMs = this.now();
      const released = this.#leases.release(parsed.leaseId, nowMs);
      return { released, active: this.#leases.active(nowMs) };
    });
  }

  /** Extends a held lease to `ttlMs` from now; an expired or released lease stays gone. */
  heartbeat(input: unknown): Promise<HeartbeatResult> {
    return this.handle("heartbeat", heartbeatInputSchema, input, async (parsed) => {
      this.#assertSubject(parsed.subject);
      const nowMs = this.now();
      const expiresAt = nowMs + parsed.ttlMs;
      const renewed = this.#leases.renew(parsed.leaseId, expiresAt, nowMs);
      // The pending expiry task fires at the old time, finds this lease live, and re-arms.
      return renewed ? { renewed, expiresAt } : { renewed };
    });
  }

  #decide(rules: readonly Rule[], cost: number, charge: boolean, nowMs: number) {
    const state = this.#subject();
    const shadows = rules.filter((rule) => rule.shadow).map((rule) => rule.name);
    const context = {
      block: state.activeBlock(nowMs),
      shadowDenied: shadows.length === 0 ? undefined : state.shadowCounts(shadows, nowMs),
    };
    return evaluateRules(rules, state.ruleStates(rules.map((rule) => rule.name)), nowMs, cost, charge, context);
  }

  /** The subject's state, read from storage on first use (and after eviction, a restore or a failed flush). */
  #subject(): SubjectState {
    return (this.#state ??= this.#store.load());
  }

  /** Writes the state and the keyed answers changed since the last flush (in the flush's transaction). */
  #flush(): void {
    if (this.#state !== undefined) this.#store.write(this.#state, this.now());
    for (const [key, { request, result, nowMs }] of this.#pendingReplays) this.#replays.save(key, request, result, nowMs);
    this.#pendingReplays.clear();
  }

  /** Drops everything cached from storage, so the next call reads it again. */
  #forget(): void {
    this.#state = undefined;
    this.#pendingReplays.clear();
    this.#override.forget();
  }

  /** The first answer to a keyed call, written or still waiting for its flush; CONFLICT for a key used differently. */
  #findReplay<T>(key: string, request: unknown, nowMs: number): T | undefined {
    const pending = this.#pendingReplays.get(key);
    if (pending === undefined) return this.#replays.find<T>(key, request, nowMs);
    if (JSON.stringify(pending.request) !== JSON.stringify(request)) throw conflict(keyReusedMessage(key));
    return pending.result as T;
  }

  /**
   * The rules to enforce: the subject's override, which wins; else the named rules, a named
   * policy as adaptive limits currently adjust it (docs/adaptive-limits.md). The factors come
   * from this isolate's cache, so only a cold or stale cache waits on the controller; the
   * override is read after that wait, so one set meanwhile still wins.
   */
  async #enforcedRules(input: { policy?: string }, named: readonly Rule[]): Promise<readonly Rule[]> {
    if (this.#override.get() !== undefined || input.policy === undefined) return this.#override.get() ?? named;
    const factors = await adjustmentsCache.get(() => this.env.ADAPTIVE_LIMITS.getByName(ADAPTIVE_LIMITS_NAME).adjustments(), this.now());
    return this.#override.get() ?? adjustRules(input.policy, named, factors);
  }

  /** The rules the call names (inline or by policy); validated even when an override wins. */
  #namedRules(input: { rules?: Rule[]; policy?: string }): readonly Rule[] {
    return resolveRules(input, loadPolicies(this.env.RATE_LIMIT_POLICIES));
  }

  /** An object serves exactly the subject it is named after; a mismatch is a caller bug. */
  #assertSubject(subject: string): void {
    const name = this.ctx.id.name;
    if (name !== undefined && name !== subject) {
      throw invalidArgument(`subject "${subject}" does not belong to this object`);
    }
  }

  async #scheduleReplayPruning(nowMs: number): Promise<void> {
    const dueMs = nowMs + loadDataRetention(this.env).limiterIdempotency + CLEANUP_SLACK_MS;
    await this.scheduler.schedule("prune-replays", dueMs, null, "prune-replays", "earliest");
  }

  /**
   * The cleanup task objects scheduled before state became one row: one flush drops what has
   * expired from the row (as every write does), and old check counts go; it schedules nothing.
   */
  async #expireLegacy(nowMs: number): Promise<void> {
    this.#store.pruneCounts(nowMs);
    await this.#commit.change(() => this.#subject().trim(nowMs));
  }

  /** Forgets idempotency keys older than the replay window, and check counts past theirs; idempotent. */
  async #pruneReplays(nowMs: number): Promise<void> {
    this.#store.pruneCounts(nowMs);
    const next = this.#replays.prune(nowMs) === PRUNE_BATCH ? nowMs : this.#replays.earliestExpiry();
    // "replace", not "earliest": the running task's own row is due earlier and would win,
    // and then be deleted as done, leaving the remaining keys unpruned. A full batch comes back at once.
    if (next === null) return;
    await this.scheduler.schedule("prune-replays", next === nowMs ? nowMs : next + CLEANUP_SLACK_MS, null, "prune-replays", "replace");
  }

  /** Frees the slots of leases whose TTL has passed; idempotent. */
  async #expireLeases(nowMs: number): Promise<void> {
    const next = this.#leases.expire(nowMs);
    // "replace": see #pruneReplays.
    if (next !== null) await this.scheduler.schedule("expire-leases", next, null, "expire-leases", "replace");
  }
}
