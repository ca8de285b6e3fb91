import type { Decision, Rule } from "../../rpc/rate-limits";
import type { Env } from "../env";
import { conflict, invalidArgument } from "../errors";
import { loadPolicies, resolveRules } from "../config/policies";
import { evaluateRules } from "../limits/evaluate-rules";
import type { WindowState } from "../limits/rule-state";
import { parseInput } from "../schemas/common";
import { checkInputSchema, peekInputSchema, resetInputSchema } from "../schemas/rate-limits";
import type { TaskHandlers } from "../scheduling/task-scheduler";
import { all, maybeOne, run } from "../storage/sql";
import { RATE_LIMITER_MIGRATIONS } from "./rate-limiter-schema";
import { TollgateObject } from "./tollgate-object";

/** Idempotency keys of `check` are honoured for at least this long. */
export const CHECK_REPLAY_TTL_MS = 24 * 3_600_000;
/** Cleanup waits this long past the last expiry, so a busy subject does not wake its alarm every window. */
const CLEANUP_SLACK_MS = 60_000;

type RuleStateRow = {
  rule_name: string;
  algorithm: string;
  period_ms: number;
  window_start_ms: number;
  count: number;
  previous_count: number;
};

/**
 * The rate-limit state of one subject (`"ip:203.0.113.9"`, `"key:k_123"`). Single-threaded,
 * so every decision is exact: the state is read, decided on and written with no await in
 * between. All rules of one check are applied atomically.
 */
export class RateLimiterDO extends TollgateObject {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env, { component: "rate-limiter", migrations: RATE_LIMITER_MIGRATIONS });
  }

  /** Decides one call and, when every enforced rule admits it, charges `cost` to all of them. */
  async check(input: unknown): Promise<Decision> {
    const parsed = parseInput(checkInputSchema, input, "check input");
    this.assertSubject(parsed.subject);
    const rules = this.rulesFor(parsed);
    const cost = parsed.cost ?? 1;
    if (cost === 0) return this.decide(rules, 1, false).decision;

    const nowMs = Date.now();
    const key = parsed.idempotencyKey;
    const fingerprint = JSON.stringify({ rules, cost });
    if (key !== undefined) {
      const replay = this.findReplay(key, nowMs);
      if (replay) {
        if (replay.fingerprint !== fingerprint) {
          throw conflict(`idempotency key "${key}" was used for a different check`);
        }
        return JSON.parse(replay.decision) as Decision;
      }
    }

    const { decision, writes } = this.decide(rules, cost, true, nowMs);
    this.ctx.storage.transactionSync(() => {
      for (const [name, { state, expiresAtMs }] of writes) this.saveState(name, state, expiresAtMs);
      if (key !== undefined) this.saveReplay(key, fingerprint, decision, nowMs);
    });
    if (writes.size > 0) {
      const lastExpiry = Math.max(...[...writes.values()].map((write) => write.expiresAtMs));
      await this.scheduler.schedule("expire-state", lastExpiry + CLEANUP_SLACK_MS, null, "expire-state", "latest");
    }
    if (key !== undefined) {
      await this.scheduler.schedule("prune-replays", nowMs + CHECK_REPLAY_TTL_MS + CLEANUP_SLACK_MS, null, "prune-replays", "earliest");
    }
    return decision;
  }

  /** Whether a call of cost 1 would be admitted now, and what remains; never consumes. */
  async peek(input: unknown): Promise<Decision> {
    const parsed = parseInput(peekInputSchema, input, "peek input");
    this.assertSubject(parsed.subject);
    return this.decide(this.rulesFor(parsed), 1, false).decision;
  }

  /** Clears one rule's state, or every rule's. */
  async reset(input: unknown): Promise<{ cleared: number }> {
    const parsed = parseInput(resetInputSchema, input, "reset input");
    this.assertSubject(parsed.subject);
    const cleared = parsed.rule === undefined
      ? run(this.sql, "DELETE FROM rule_states")
      : run(this.sql, "DELETE FROM rule_states WHERE rule_name = ?", parsed.rule);
    return { cleared };
  }

  protected override taskHandlers(): TaskHandlers {
    return {
      "expire-state": (_payload, nowMs) => this.expireState(nowMs),
      "prune-replays": (_payload, nowMs) => this.pruneReplays(nowMs),
    };
  }

  private decide(rules: readonly Rule[], cost: number, charge: boolean, nowMs: number = Date.now()) {
    return evaluateRules(rules, this.loadStates(rules), nowMs, cost, charge);
  }

  private rulesFor(input: { rules?: Rule[]; policy?: string }): readonly Rule[] {
    return resolveRules(input, loadPolicies(this.env.RATE_LIMIT_POLICIES));
  }

  /** An object serves exactly the subject it is named after; a mismatch is a caller bug. */
  private assertSubject(subject: string): void {
    const name = this.ctx.id.name;
    if (name !== undefined && name !== subject) {
      throw invalidArgument(`subject "${subject}" does not belong to this object`);
    }
  }

  private loadStates(rules: readonly Rule[]): Map<string, WindowState> {
    const names = rules.map((rule) => rule.name);
    const rows = all<RuleStateRow>(
      this.sql,
      `SELECT * FROM rule_states WHERE rule_name IN (${names.map(() => "?").join(", ")})`,
      ...names,
    );
    return new Map(
      rows.map((row) => [
        row.rule_name,
        {
          algorithm: row.algorithm as WindowState["algorithm"],
          periodMs: row.period_ms,
          windowStartMs: row.window_start_ms,
          count: row.count,
          previousCount: row.previous_count,
        },
      ]),
    );
  }

  private saveState(name: string, state: WindowState, expiresAtMs: number): void {
    run(
      this.sql,
      `INSERT INTO rule_states (rule_name, algorithm, period_ms, window_start_ms, count, previous_count, expires_at_ms)
       VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (rule_name) DO UPDATE SET algorithm = excluded.algorithm, period_ms = excluded.period_ms,
         window_start_ms = excluded.window_start_ms, count = excluded.count,
         previous_count = excluded.previous_count, expires_at_ms = excluded.expires_at_ms`,
      name,
      state.algorithm,
      state.periodMs,
      state.windowStartMs,
      state.count,
      state.previousCount,
      expiresAtMs,
    );
  }

  private findReplay(key: string, nowMs: number) {
    return maybeOne<{ fingerprint: string; decision: string }>(
      this.sql,
      "SELECT fingerprint, decision FROM check_replays WHERE idempotency_key = ? AND expires_at_ms > ?",
      key,
      nowMs,
    );
  }

  private saveReplay(key: string, fingerprint: string, decision: Decision, nowMs: number): void {
    run(
      this.sql,
      `INSERT OR REPLACE INTO check_replays (idempotency_key, fingerprint, decision, created_at_ms, expires_at_ms)
       VALUES (?, ?, ?, ?, ?)`,
      key,
      fingerprint,
      JSON.stringify(decision),
      nowMs,
      nowMs + CHECK_REPLAY_TTL_MS,
    );
  }

  /** Deletes rule state nobody can observe any more; idempotent. */
  private async expireState(nowMs: number): Promise<void> {
    run(this.sql, "DELETE FROM rule_states WHERE expires_at_ms <= ?", nowMs);
    const last = maybeOne<{ last: number | null }>(this.sql, "SELECT MAX(expires_at_ms) AS last FROM rule_states")?.last;
    if (last != null) await this.scheduler.schedule("expire-state", last + CLEANUP_SLACK_MS, null, "expire-state", "latest");
  }

  /** Forgets idempotency keys older than the replay window; idempotent. */
  private async pruneReplays(nowMs: number): Promise<void> {
    run(this.sql, "DELETE FROM check_replays WHERE expires_at_ms <= ?", nowMs);
    const next = maybeOne<{ next: number | null }>(this.sql, "SELECT MIN(expires_at_ms) AS next FROM check_replays")?.next;
    if (next != null) await this.scheduler.schedule("prune-replays", next + CLEANUP_SLACK_MS, null, "prune-replays", "earliest");
  }
}
