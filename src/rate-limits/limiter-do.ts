import type {
  AcquireResult,
  Block,
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
import { evaluateRules, refundRules, type StateWrite } from "./algorithms/evaluate-rules";
import type { LimiterState, LogEntry } from "./algorithms/rule-state";
import { parseInput } from "../platform/schemas";
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
import type { TaskHandlers } from "../platform/task-scheduler";
import { all, maybeOne, one, run } from "../platform/sql";
import { ADAPTIVE_LIMITS_NAME } from "../operations/adaptive/adaptive-limits-do";
import { RATE_LIMITER_MIGRATIONS } from "./limiter-tables";
import { TollgateObject } from "../platform/tollgate-object";

/** Idempotency keys of `check` and `refund` are honoured this long by default (`RETENTION.limiterIdempotency`). */
export const CHECK_REPLAY_TTL_MS = DEFAULT_DATA_RETENTION.limiterIdempotency;
/** A shadow rule's would-have-denied count is kept until this long passes without a new one. */
export { SHADOW_COUNT_TTL_MS };
/** Cleanup waits this long past the last expiry, so a busy subject does not wake its alarm every window. */
const CLEANUP_SLACK_MS = 60_000;
/** Most expired idempotency records one alarm run deletes (retention in small batches). */
export const PRUNE_BATCH = 1_000;
/** Per-minute check counts are kept this long: the longest window a denial_rate alert reads, plus an hour. */
export { CHECK_COUNT_RETENTION_MS };

type RuleStateRow = {
  rule_name: string;
  algorithm: string;
  period_ms: number;
  window_start_ms: number;
  count: number;
  previous_count: number;
  level: number;
  level_at_ms: number;
};

type BlockRow = { until_ms: number; reason: string; rule_name: string | null };

/**
 * The rate-limit state of one subject (`"ip:203.0.113.9"`, `"key:k_123"`). Single-threaded,
 * so every decision is exact: the state is read, decided on and written with no await in
 * between. All rules of one check are applied atomically.
 *
 * The subject's block and override are read on every check, so they are cached in memory
 * after the first read; this object is their only writer, and an eviction simply drops the
 * cache (storage stays the source of truth).
 */
export class RateLimiterDO extends TollgateObject {
  #block: Block | null | undefined;
  #override: readonly Rule[] | null | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env, { component: "rate-limiter", migrations: RATE_LIMITER_MIGRATIONS });
  }

  /** Decides one call and, when every enforced rule admits it, charges `cost` to all of them. */
  async check(input: unknown): Promise<Decision> {
    const parsed = parseInput(checkInputSchema, input, "check input");
    this.assertSubject(parsed.subject);
    const named = this.namedRules(parsed);
    const rules = await this.enforcedRules(parsed, named);
    const cost = parsed.cost ?? 1;
    const nowMs = Date.now();
    if (cost === 0) return this.decide(rules, 1, false, nowMs).decision;

    // The fingerprint is of what the caller asked, so a retry stays a replay even if an
    // override was set or cleared in between.
    const key = parsed.idempotencyKey;
    const fingerprint = JSON.stringify({ rules: named, cost });
    if (key !== undefined) {
      const replay = this.findReplay(key, fingerprint, nowMs);
      if (replay !== undefined) return replay as Decision;
    }

    const { decision, writes, newBlock, shadowDenials, states } = this.decide(rules, cost, true, nowMs);
    this.ctx.storage.transactionSync(() => {
      this.saveStates(writes, states);
      if (newBlock !== undefined) this.saveBlock(newBlock);
      for (const name of shadowDenials) {
        run(
          this.sql,
          `INSERT INTO shadow_denials (rule_name, denied, last_at_ms) VALUES (?, 1, ?)
           ON CONFLICT (rule_name) DO UPDATE SET denied = denied + 1, last_at_ms = excluded.last_at_ms`,
          name,
          nowMs,
        );
      }
      if (key !== undefined) this.saveReplay(key, fingerprint, decision, nowMs);
      this.countCheck(decision.allowed, nowMs);
    });
    const expiries = [...writes.values()].map((write) => write.expiresAtMs);
    if (newBlock !== undefined) expiries.push(newBlock.untilMs);
    if (shadowDenials.length > 0) expiries.push(nowMs + SHADOW_COUNT_TTL_MS);
    await this.scheduleExpiry(expiries);
    if (key !== undefined) await this.scheduleReplayPruning(nowMs);
    return decision;
  }

  /** Charged checks since `sinceMs` (whole minutes: the minute holding `sinceMs` counts), allowed and denied. */
  async checkCounts(input: unknown): Promise<CheckCounts> {
    const parsed = parseInput(checkCountsInputSchema, input, "checkCounts input");
    this.assertSubject(parsed.subject);
    const since = parsed.sinceMs - (parsed.sinceMs % 60_000);
    const row = one<{ allowed: number | null; denied: number | null }>(
      this.sql,
      "SELECT SUM(allowed) AS allowed, SUM(denied) AS denied FROM check_counts WHERE minute_ms >= ?",
      since,
    );
    return { allowed: row.allowed ?? 0, denied: row.denied ?? 0, sinceMs: since };
  }

  /** Whether a call of cost 1 would be admitted now, and what remains; never consumes. */
  async peek(input: unknown): Promise<Decision> {
    const parsed = parseInput(peekInputSchema, input, "peek input");
    this.assertSubject(parsed.subject);
    return this.decide(await this.enforcedRules(parsed, this.namedRules(parsed)), 1, false, Date.now()).decision;
  }

  /** Clears one rule's state (and its shadow count), or every rule's. */
  async reset(input: unknown): Promise<{ cleared: number }> {
    const parsed = parseInput(resetInputSchema, input, "reset input");
    this.assertSubject(parsed.subject);
    return this.ctx.storage.transactionSync(() => {
      if (parsed.rule === undefined) {
        run(this.sql, "DELETE FROM rule_log");
        run(this.sql, "DELETE FROM shadow_denials");
        return { cleared: run(this.sql, "DELETE FROM rule_states") };
      }
      run(this.sql, "DELETE FROM rule_log WHERE rule_name = ?", parsed.rule);
      run(this.sql, "DELETE FROM shadow_denials WHERE rule_name = ?", parsed.rule);
      return { cleared: run(this.sql, "DELETE FROM rule_states WHERE rule_name = ?", parsed.rule) };
    });
  }

  /**
   * Gives `cost` units back to every rule, each never beyond empty (what was taken). A retried
   * refund with the same key gives back once.
   */
  async refund(input: unknown): Promise<RefundResult> {
    const parsed = parseInput(refundInputSchema, input, "refund input");
    this.assertSubject(parsed.subject);
    const named = this.namedRules(parsed);
    const rules = await this.enforcedRules(parsed, named);
    const nowMs = Date.now();
    const key = parsed.idempotencyKey;
    const fingerprint = JSON.stringify({ refund: { rules: named, cost: parsed.cost } });
    const replay = this.findReplay(key, fingerprint, nowMs);
    if (replay !== undefined) return replay as RefundResult;

    const states = this.loadStates(rules);
    const { rules: refunded, writes } = refundRules(rules, states, nowMs, parsed.cost);
    const result: RefundResult = { rules: refunded };
    this.ctx.storage.transactionSync(() => {
      this.saveStates(writes, states);
      this.saveReplay(key, fingerprint, result, nowMs);
    });
    await this.scheduleReplayPruning(nowMs);
    return result;
  }

  /** Blocks the subject until `untilMs`, replacing any block it had. */
  async block(input: unknown): Promise<BlockResult> {
    const parsed = parseInput(blockInputSchema, input, "block input");
    this.assertSubject(parsed.subject);
    const nowMs = Date.now();
    if (parsed.untilMs <= nowMs) throw invalidArgument("untilMs must be in the future");
    if (parsed.untilMs > nowMs + RULE_BOUNDS.maxPeriodMs) throw invalidArgument("untilMs must be at most 366 days ahead");
    const block: Block = { untilMs: parsed.untilMs, reason: parsed.reason };
    this.saveBlock(block);
    await this.scheduleExpiry([block.untilMs]);
    return { blocked: block };
  }

  /** Lifts the subject's block, whether set by hand or by a rule's `blockMs`. */
  async unblock(input: unknown): Promise<UnblockResult> {
    const parsed = parseInput(subjectInputSchema, input, "unblock input");
    this.assertSubject(parsed.subject);
    const active = this.currentBlock(Date.now()) !== undefined;
    run(this.sql, "DELETE FROM subject_block");
    this.#block = null;
    return { unblocked: active };
  }

  /** Replaces the rules of every later call on this subject, whatever rules or policy it names. */
  async setOverride(input: unknown): Promise<OverrideResult> {
    const parsed = parseInput(setOverrideInputSchema, input, "setOverride input");
    this.assertSubject(parsed.subject);
    const setAt = Date.now();
    run(
      this.sql,
      "INSERT OR REPLACE INTO subject_override (id, rules, set_at_ms) VALUES (1, ?, ?)",
      JSON.stringify(parsed.rules),
      setAt,
    );
    this.#override = parsed.rules;
    return { subject: parsed.subject, rules: parsed.rules, setAt };
  }

  /** Goes back to the rules or policy each call names. */
  async clearOverride(input: unknown): Promise<ClearOverrideResult> {
    const parsed = parseInput(subjectInputSchema, input, "clearOverride input");
    this.assertSubject(parsed.subject);
    const cleared = run(this.sql, "DELETE FROM subject_override") > 0;
    this.#override = null;
    return { cleared };
  }

  /**
   * Takes one of at most `limit` concurrent leases. Only live leases count, so the answer is
   * exact even before the expiry alarm has deleted an expired one.
   */
  async acquire(input: unknown): Promise<AcquireResult> {
    const parsed = parseInput(acquireInputSchema, input, "acquire input");
    this.assertSubject(parsed.subject);
    const nowMs = Date.now();
    const key = parsed.idempotencyKey;
    if (key !== undefined) {
      const held = maybeOne<{ lease_id: string; expires_at_ms: number }>(
        this.sql,
        "SELECT lease_id, expires_at_ms FROM leases WHERE idempotency_key = ? AND expires_at_ms > ?",
        key,
        nowMs,
      );
      if (held !== undefined) {
        return { granted: true, leaseId: held.lease_id, expiresAt: held.expires_at_ms, active: this.activeLeases(nowMs), retryAfterMs: 0 };
      }
    }
    const active = this.activeLeases(nowMs);
    if (active >= parsed.limit) {
      const earliest = one<{ earliest: number }>(
        this.sql,
        "SELECT MIN(expires_at_ms) AS earliest FROM leases WHERE expires_at_ms > ?",
        nowMs,
      ).earliest;
      return { granted: false, active, retryAfterMs: earliest - nowMs };
    }
    const leaseId = crypto.randomUUID();
    const expiresAt = nowMs + parsed.ttlMs;
    this.ctx.storage.transactionSync(() => {
      run(this.sql, "DELETE FROM leases WHERE expires_at_ms <= ?", nowMs);
      run(
        this.sql,
        "INSERT INTO leases (lease_id, expires_at_ms, acquired_at_ms, idempotency_key) VALUES (?, ?, ?, ?)",
        leaseId,
        expiresAt,
        nowMs,
        key ?? null,
      );
    });
    await this.scheduler.schedule("expire-leases", expiresAt, null, "expire-leases", "earliest");
    return { granted: true, leaseId, expiresAt, active: active + 1, retryAfterMs: 0 };
  }

  /** Frees a lease's slot at once. */
  async release(input: unknown): Promise<ReleaseResult> {
    const parsed = parseInput(releaseInputSchema, input, "release input");
    this.assertSubject(parsed.subject);
    const nowMs = Date.now();
    const live = maybeOne(this.sql, "SELECT 1 AS live FROM leases WHERE lease_id = ? AND expires_at_ms > ?", parsed.leaseId, nowMs);
    run(this.sql, "DELETE FROM leases WHERE lease_id = ?", parsed.leaseId);
    return { released: live !== undefined, active: this.activeLeases(nowMs) };
  }

  /** Extends a held lease to `ttlMs` from now; an expired or released lease stays gone. */
  async heartbeat(input: unknown): Promise<HeartbeatResult> {
    const parsed = parseInput(heartbeatInputSchema, input, "heartbeat input");
    this.assertSubject(parsed.subject);
    const nowMs = Date.now();
    const expiresAt = nowMs + parsed.ttlMs;
    const renewed = run(
      this.sql,
      "UPDATE leases SET expires_at_ms = ? WHERE lease_id = ? AND expires_at_ms > ?",
      expiresAt,
      parsed.leaseId,
      nowMs,
    ) > 0;
    // The pending expiry task fires at the old time, finds this lease live, and re-arms.
    return renewed ? { renewed, expiresAt } : { renewed };
  }

  protected override taskHandlers(): TaskHandlers {
    return {
      "expire-state": (_payload, nowMs) => this.expireState(nowMs),
      "prune-replays": (_payload, nowMs) => this.pruneReplays(nowMs),
      "expire-leases": (_payload, nowMs) => this.expireLeases(nowMs),
    };
  }

  /** One upsert of this minute's row (a rowid table: no index to write). `exec`, not `run`: the hot path skips `changes()`. */
  private countCheck(allowed: boolean, nowMs: number): void {
    this.sql.exec(
      `INSERT INTO check_counts (minute_ms, allowed, denied) VALUES (?, ?, ?)
       ON CONFLICT (minute_ms) DO UPDATE SET allowed = allowed + excluded.allowed, denied = denied + excluded.denied`,
      nowMs - (nowMs % 60_000),
      allowed ? 1 : 0,
      allowed ? 0 : 1,
    );
  }

  /**
   * Forgets check counts older than their retention. Runs inside the existing cleanup tasks
   * (expire-state, prune-replays) rather than a task of its own: an idle subject keeps at most
   * a day of per-minute rows until its next check wakes the cleanup again.
   */
  private pruneCheckCounts(nowMs: number): void {
    run(this.sql, "DELETE FROM check_counts WHERE minute_ms < ?", nowMs - CHECK_COUNT_RETENTION_MS);
  }

  private decide(rules: readonly Rule[], cost: number, charge: boolean, nowMs: number) {
    const shadows = rules.filter((rule) => rule.shadow).map((rule) => rule.name);
    const context = {
      block: this.currentBlock(nowMs),
      shadowDenied: shadows.length === 0 ? undefined : this.loadShadowCounts(shadows),
    };
    const states = this.loadStates(rules);
    return { ...evaluateRules(rules, states, nowMs, cost, charge, context), states };
  }

  /**
   * The rules to enforce: the subject's override, which wins; else the named rules, a named
   * policy as adaptive limits currently adjust it (docs/adaptive-limits.md). The factors come
   * from this isolate's cache, so only a cold or stale cache waits on the controller; the
   * override is read after that wait, so one set meanwhile still wins.
   */
  private async enforcedRules(input: { policy?: string }, named: readonly Rule[]): Promise<readonly Rule[]> {
    if (this.currentOverride() !== undefined || input.policy === undefined) return this.currentOverride() ?? named;
    const factors = await adjustmentsCache.get(() => this.env.ADAPTIVE_LIMITS.getByName(ADAPTIVE_LIMITS_NAME).adjustments(), Date.now());
    return this.currentOverride() ?? adjustRules(input.policy, named, factors);
  }

  /** The rules the call names (inline or by policy); validated even when an override wins. */
  private namedRules(input: { rules?: Rule[]; policy?: string }): readonly Rule[] {
    return resolveRules(input, loadPolicies(this.env.RATE_LIMIT_POLICIES));
  }

  /** An object serves exactly the subject it is named after; a mismatch is a caller bug. */
  private assertSubject(subject: string): void {
    const name = this.ctx.id.name;
    if (name !== undefined && name !== subject) {
      throw invalidArgument(`subject "${subject}" does not belong to this object`);
    }
  }

  private currentOverride(): readonly Rule[] | undefined {
    if (this.#override === undefined) {
      const row = maybeOne<{ rules: string }>(this.sql, "SELECT rules FROM subject_override WHERE id = 1");
      this.#override = row === undefined ? null : (JSON.parse(row.rules) as Rule[]);
    }
    return this.#override ?? undefined;
  }

  private currentBlock(nowMs: number): Block | undefined {
    if (this.#block === undefined) {
      const row = maybeOne<BlockRow>(this.sql, "SELECT until_ms, reason, rule_name FROM subject_block WHERE id = 1");
      this.#block = row === undefined ? null : toBlock(row);
    }
    return this.#block !== null && this.#block.untilMs > nowMs ? this.#block : undefined;
  }

  private saveBlock(block: Block): void {
    run(
      this.sql,
      "INSERT OR REPLACE INTO subject_block (id, until_ms, reason, rule_name) VALUES (1, ?, ?, ?)",
      block.untilMs,
      block.reason,
      block.rule ?? null,
    );
    this.#block = block;
  }

  private activeLeases(nowMs: number): number {
    return one<{ n: number }>(this.sql, "SELECT COUNT(*) AS n FROM leases WHERE expires_at_ms > ?", nowMs).n;
  }

  private loadShadowCounts(names: string[]): Map<string, number> {
    const rows = all<{ rule_name: string; denied: number }>(
      this.sql,
      `SELECT rule_name, denied FROM shadow_denials WHERE rule_name IN (${names.map(() => "?").join(", ")})`,
      ...names,
    );
    return new Map(rows.map((row) => [row.rule_name, row.denied]));
  }

  private loadStates(rules: readonly Rule[]): Map<string, LimiterState> {
    const names = rules.map((rule) => rule.name);
    const rows = all<RuleStateRow>(
      this.sql,
      `SELECT * FROM rule_states WHERE rule_name IN (${names.map(() => "?").join(", ")})`,
      ...names,
    );
    const logged = rows.filter((row) => row.algorithm === "sliding_log").map((row) => row.rule_name);
    const logs = new Map<string, LogEntry[]>(logged.map((name) => [name, []]));
    if (logged.length > 0) {
      const entries = all<{ rule_name: string; at_ms: number; cost: number }>(
        this.sql,
        `SELECT rule_name, at_ms, cost FROM rule_log WHERE rule_name IN (${logged.map(() => "?").join(", ")})
         ORDER BY rule_name, at_ms`,
        ...logged,
      );
      for (const entry of entries) logs.get(entry.rule_name)!.push({ atMs: entry.at_ms, cost: entry.cost });
    }
    return new Map(rows.map((row) => [row.rule_name, toState(row, logs.get(row.rule_name))]));
  }

  /** Stores each write; `stored` is what was loaded, to notice a rule that stopped being a sliding_log. */
  private saveStates(writes: ReadonlyMap<string, StateWrite>, stored: ReadonlyMap<string, LimiterState>): void {
    for (const [name, { state, expiresAtMs }] of writes) this.saveState(name, state, expiresAtMs, stored.get(name));
  }

  private saveState(name: string, state: LimiterState, expiresAtMs: number, previous: LimiterState | undefined): void {
    const window = "windowStartMs" in state ? state : { windowStartMs: 0, count: 0, previousCount: 0 };
    const level = "level" in state ? state : { level: 0, atMs: 0 };
    run(
      this.sql,
      `INSERT INTO rule_states (rule_name, algorithm, period_ms, window_start_ms, count, previous_count, level, level_at_ms, expires_at_ms)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (rule_name) DO UPDATE SET algorithm = excluded.algorithm, period_ms = excluded.period_ms,
         window_start_ms = excluded.window_start_ms, count = excluded.count,
         previous_count = excluded.previous_count, level = excluded.level,
         level_at_ms = excluded.level_at_ms, expires_at_ms = excluded.expires_at_ms`,
      name,
      state.algorithm,
      state.periodMs,
      window.windowStartMs,
      window.count,
      window.previousCount,
      level.level,
      level.atMs,
      expiresAtMs,
    );
    if (state.algorithm === "sliding_log") this.saveLog(name, state.entries);
    else if (previous?.algorithm === "sliding_log") run(this.sql, "DELETE FROM rule_log WHERE rule_name = ?", name);
  }

  /**
   * Stores a log that differs from the stored one only at its ends: a check drops expired
   * entries from the front and appends (or merges into) the last; a refund trims the back; a
   * `countDenied` charge trims the front and appends. So only the two end entries are
   * written, never the whole log.
   */
  private saveLog(name: string, entries: readonly LogEntry[]): void {
    const first = entries[0];
    const last = entries.at(-1);
    if (first === undefined || last === undefined) {
      run(this.sql, "DELETE FROM rule_log WHERE rule_name = ?", name);
      return;
    }
    run(this.sql, "DELETE FROM rule_log WHERE rule_name = ? AND (at_ms < ? OR at_ms > ?)", name, first.atMs, last.atMs);
    for (const entry of first === last ? [last] : [first, last]) {
      run(
        this.sql,
        `INSERT INTO rule_log (rule_name, at_ms, cost) VALUES (?, ?, ?)
         ON CONFLICT (rule_name, at_ms) DO UPDATE SET cost = excluded.cost`,
        name,
        entry.atMs,
        entry.cost,
      );
    }
  }

  /** The stored answer to a retried call, or undefined for a new key; CONFLICT if the key was used differently. */
  private findReplay(key: string, fingerprint: string, nowMs: number): unknown {
    // Read before anything is written: a malformed RETENTION fails the call (INTERNAL) with no change.
    loadDataRetention(this.env);
    const replay = maybeOne<{ fingerprint: string; decision: string }>(
      this.sql,
      "SELECT fingerprint, decision FROM check_replays WHERE idempotency_key = ? AND expires_at_ms > ?",
      key,
      nowMs,
    );
    if (replay === undefined) return undefined;
    if (replay.fingerprint !== fingerprint) throw conflict(`idempotency key "${key}" was used for a different call`);
    return JSON.parse(replay.decision);
  }

  private saveReplay(key: string, fingerprint: string, result: object, nowMs: number): void {
    run(
      this.sql,
      `INSERT OR REPLACE INTO check_replays (idempotency_key, fingerprint, decision, created_at_ms, expires_at_ms)
       VALUES (?, ?, ?, ?, ?)`,
      key,
      fingerprint,
      JSON.stringify(result),
      nowMs,
      nowMs + loadDataRetention(this.env).limiterIdempotency,
    );
  }

  private async scheduleExpiry(expiries: number[]): Promise<void> {
    if (expiries.length === 0) return;
    await this.scheduler.schedule("expire-state", Math.max(...expiries) + CLEANUP_SLACK_MS, null, "expire-state", "latest");
  }

  private async scheduleReplayPruning(nowMs: number): Promise<void> {
    await this.scheduler.schedule("prune-replays", nowMs + loadDataRetention(this.env).limiterIdempotency + CLEANUP_SLACK_MS, null, "prune-replays", "earliest");
  }

  /** Deletes rule state, shadow counts and a block nobody can observe any more; idempotent. */
  private async expireState(nowMs: number): Promise<void> {
    this.ctx.storage.transactionSync(() => {
      run(this.sql, "DELETE FROM rule_log WHERE rule_name IN (SELECT rule_name FROM rule_states WHERE expires_at_ms <= ?)", nowMs);
      run(this.sql, "DELETE FROM rule_states WHERE expires_at_ms <= ?", nowMs);
      run(this.sql, "DELETE FROM shadow_denials WHERE last_at_ms <= ?", nowMs - SHADOW_COUNT_TTL_MS);
      run(this.sql, "DELETE FROM subject_block WHERE until_ms <= ?", nowMs);
      this.pruneCheckCounts(nowMs);
    });
    this.#block = undefined;
    const last = one<{ last: number | null }>(
      this.sql,
      `SELECT MAX(t) AS last FROM (
         SELECT MAX(expires_at_ms) AS t FROM rule_states
         UNION ALL SELECT MAX(last_at_ms) + ? FROM shadow_denials
         UNION ALL SELECT MAX(until_ms) FROM subject_block)`,
      SHADOW_COUNT_TTL_MS,
    ).last;
    if (last !== null) await this.scheduleExpiry([last]);
  }

  /** Forgets idempotency keys older than the replay window; idempotent. */
  private async pruneReplays(nowMs: number): Promise<void> {
    this.pruneCheckCounts(nowMs);
    // In batches, so a backlog never holds the object for long; a full batch comes back at once.
    const deleted = run(
      this.sql,
      "DELETE FROM check_replays WHERE idempotency_key IN (SELECT idempotency_key FROM check_replays WHERE expires_at_ms <= ? ORDER BY expires_at_ms LIMIT ?)",
      nowMs,
      PRUNE_BATCH,
    );
    const next = deleted === PRUNE_BATCH ? nowMs : maybeOne<{ next: number | null }>(this.sql, "SELECT MIN(expires_at_ms) AS next FROM check_replays")?.next;
    // "replace", not "earliest": the running task's own row is due earlier and would win,
    // and then be deleted as done, leaving the remaining keys unpruned.
    if (next != null) await this.scheduler.schedule("prune-replays", next === nowMs ? nowMs : next + CLEANUP_SLACK_MS, null, "prune-replays", "replace");
  }

  /** Frees the slots of leases whose TTL has passed; idempotent. */
  private async expireLeases(nowMs: number): Promise<void> {
    run(this.sql, "DELETE FROM leases WHERE expires_at_ms <= ?", nowMs);
    const next = one<{ next: number | null }>(this.sql, "SELECT MIN(expires_at_ms) AS next FROM leases").next;
    // "replace": see pruneReplays.
    if (next !== null) await this.scheduler.schedule("expire-leases", next, null, "expire-leases", "replace");
  }
}

function toBlock(row: BlockRow): Block {
  const block: Block = { untilMs: row.until_ms, reason: row.reason };
  if (row.rule_name !== null) block.rule = row.rule_name;
  return block;
}

function toState(row: RuleStateRow, entries: LogEntry[] | undefined): LimiterState {
  switch (row.algorithm) {
    case "sliding_log":
      return { algorithm: "sliding_log", periodMs: row.period_ms, entries: entries ?? [] };
    case "token_bucket":
    case "gcra":
      return { algorithm: row.algorithm, periodMs: row.period_ms, level: row.level, atMs: row.level_at_ms };
    default:
      return {
        algorithm: row.algorithm as "fixed_window" | "sliding_window",
        periodMs: row.period_ms,
        windowStartMs: row.window_start_ms,
        count: row.count,
        previousCount: row.previous_count,
      };
  }
}
