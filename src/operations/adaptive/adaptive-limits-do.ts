import { CHANGES_TTL_MS, KEEP_CHANGES } from "../../platform/retention";
import type {
  AdaptivePolicy,
  AdaptivePolicyState,
  AdaptiveState,
  AdjustedRule,
  LevelChange,
  SetAdaptivePolicyResult,
} from "../../../rpc/adaptive";
import type { Rule } from "../../../rpc/rate-limits";
import { combineFactors, describeFactors, factorsOf, type Leveled, type RuleFactors, scaleRule, toRuleFactors } from "./adjust";
import { step } from "./controller";
import { loadPolicies } from "../../rate-limits/policies";
import type { Env } from "../../platform/env";
import { invalidArgument, ServiceError } from "../../platform/errors";
import { resolveRange } from "../../platform/buckets";
import { adaptivePolicySchema, ADAPTIVE_BOUNDS, historyInputSchema, policyNameInputSchema } from "./schemas";
import type { Migration } from "../../platform/migrations";
import { all, maybeOne, one, run } from "../../platform/sql";
import { type ObjectControls, type ObjectHooks, type ObjectSpec, TollgateObject } from "../../platform/tollgate-object";
import { ADAPTIVE_LIMITS_NAME } from "../../platform/names";
import { aggregatorSignals, type SignalRead } from "./signal";

export { SIGNAL_SETTLE_MS } from "./signal";
/** Level changes kept (the newest), and for how long at most. */
export { CHANGES_TTL_MS, KEEP_CHANGES };

const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "adaptive policies and level changes",
    up(sql) {
      // The definition (JSON) and the controller's state side by side: one row per policy.
      sql.exec(`CREATE TABLE adaptive_policies (
        name TEXT PRIMARY KEY,
        definition TEXT NOT NULL,
        revision INTEGER NOT NULL,
        level INTEGER NOT NULL,
        last_change_at_ms INTEGER,
        below_since_ms INTEGER,
        last_value REAL,
        last_evaluated_at_ms INTEGER,
        last_error TEXT,
        created_at_ms INTEGER NOT NULL
      ) WITHOUT ROWID`);
      sql.exec(`CREATE TABLE level_changes (
        id INTEGER PRIMARY KEY,
        policy TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        value REAL,
        from_level INTEGER NOT NULL,
        to_level INTEGER NOT NULL,
        reason TEXT NOT NULL,
        rules TEXT NOT NULL
      )`);
      sql.exec("CREATE INDEX level_changes_by_at ON level_changes (at_ms)");
    },
  },
];

type PolicyRow = {
  name: string;
  definition: string;
  revision: number;
  level: number;
  last_change_at_ms: number | null;
  below_since_ms: number | null;
  last_value: number | null;
  last_evaluated_at_ms: number | null;
  last_error: string | null;
};

type ChangeRow = {
  id: number;
  policy: string;
  at_ms: number;
  value: number | null;
  from_level: number;
  to_level: number;
  reason: LevelChange["reason"];
  rules: string;
};

const taskId = (name: string) => `evaluate:${name}`;

/** What `AdaptiveLimitsHooks.attach` hands a test subclass: the base's controls plus one evaluation. */
export interface AdaptiveLimitsControls extends ObjectControls {
  /** Runs one policy's evaluation task body, as a retried alarm would. */
  evaluate(name: string, nowMs: number): Promise<void>;
}

/** What a test subclass may change besides the base's hooks (production passes none). */
export interface AdaptiveLimitsHooks extends Omit<ObjectHooks, "attach"> {
  /** Wraps the signal reader (a test makes reads fail, as an unreachable aggregator would). */
  wrapSignalRead?: (read: SignalRead) => SignalRead;
  /** Receives the object's controls, synchronously, during construction. */
  attach?: (controls: AdaptiveLimitsControls) => void;
}

/**
 * Adaptive limits (docs/adaptive-limits.md): the policies, each one's level, and the record of
 * every level change. Each policy is evaluated by its own recurring task: the signal is read
 * from the aggregator's rollups, `step` decides the level, and a change is stored together
 * with its history row. Limiters read the combined factors through `adjustments()`, cached
 * per isolate (src/operations/adaptive/adjustments-cache.ts), so this object sees one call per isolate
 * every few seconds, never one per check.
 */
export class AdaptiveLimitsDO extends TollgateObject {
  static readonly #spec: ObjectSpec<AdaptiveLimitsDO> = {
    component: "adaptive-limits",
    migrations: MIGRATIONS,
    tasks: (self) => ({
      evaluate: (payload, nowMs) => self.#evaluate((payload as { name: string }).name, nowMs),
    }),
    // Limiters ask an empty controller for its factors too: a restore must not leave that answer cached.
    afterImport: (self) => {
      self.#factors = undefined;
    },
  };

  /** The combined factors, rebuilt from storage after any change (an eviction just drops it). */
  #factors: RuleFactors | undefined;
  readonly #readSignal: SignalRead;

  constructor(ctx: DurableObjectState, env: Env, hooks: AdaptiveLimitsHooks = {}) {
    const { attach, wrapSignalRead, ...objectHooks } = hooks;
    let base: ObjectControls | undefined;
    super(ctx, env, AdaptiveLimitsDO.#spec, { ...objectHooks, attach: (controls) => (base = controls) });
    const read = aggregatorSignals(env);
    this.#readSignal = wrapSignalRead?.(read) ?? read;
    attach?.({ ...base!, evaluate: (name, nowMs) => this.#evaluate(name, nowMs) });
  }

  /** Creates or replaces a policy. A replaced policy keeps its level (capped at its stage count). */
  setPolicy(input: unknown): Promise<SetAdaptivePolicyResult> {
    return this.handle("setPolicy", adaptivePolicySchema, input, async (parsed) => {
      const policy = parsed as AdaptivePolicy;
      this.#assertSingleton();
      const ratePolicies = this.#ratePolicies();
      policy.stages.forEach((stage, i) => {
        const rules = ratePolicies.get(stage.policy);
        if (rules === undefined) {
          throw invalidArgument(`stages.${i}.policy: "${stage.policy}" is not a policy of RATE_LIMIT_POLICIES`, [
            { path: `stages.${i}.policy`, message: "unknown rate-limit policy" },
          ]);
        }
        stage.rules?.forEach((name, j) => {
          if (!rules.some((rule) => rule.name === name)) {
            throw invalidArgument(`stages.${i}.rules.${j}: policy "${stage.policy}" has no rule "${name}"`, [
              { path: `stages.${i}.rules.${j}`, message: "unknown rule" },
            ]);
          }
        });
      });
      const existing = this.#row(policy.name);
      if (existing === undefined && this.#count() >= ADAPTIVE_BOUNDS.maxPolicies) {
        throw new ServiceError("RESOURCE_EXHAUSTED", `at most ${ADAPTIVE_BOUNDS.maxPolicies} adaptive policies`);
      }
      const nowMs = this.now();
      this.ctx.storage.transactionSync(() => {
        if (existing === undefined) {
          run(
            this.sql,
            "INSERT INTO adaptive_policies (name, definition, revision, level, created_at_ms) VALUES (?, ?, 1, 0, ?)",
            policy.name,
            JSON.stringify(policy),
            nowMs,
          );
          return;
        }
        const before = this.#leveled(existing);
        const level = Math.min(existing.level, policy.stages.length);
        run(
          this.sql,
          "UPDATE adaptive_policies SET definition = ?, revision = revision + 1, level = ? WHERE name = ?",
          JSON.stringify(policy),
          level,
          policy.name,
        );
        const rules = this.#changedRules(before, { stages: policy.stages, level }, ratePolicies);
        if (rules.length > 0 || level !== existing.level) {
          this.#record(policy.name, nowMs, null, existing.level, level, "policy_changed", rules);
          if (level !== existing.level)
            run(this.sql, "UPDATE adaptive_policies SET last_change_at_ms = ? WHERE name = ?", nowMs, policy.name);
        }
      });
      this.#factors = undefined;
      await this.scheduler.schedule(
        "evaluate",
        nowMs + (policy.evaluateEveryMs ?? ADAPTIVE_BOUNDS.defaultEvaluateEveryMs),
        { name: policy.name },
        taskId(policy.name),
        "replace",
      );
      return { policy, state: this.#stateOf(this.#row(policy.name)!, ratePolicies) };
    });
  }

  /** Deletes a policy; what its stages tightened goes back to the configured limits. */
  deletePolicy(input: unknown): Promise<{ deleted: boolean }> {
    return this.handle("deletePolicy", policyNameInputSchema, input, async ({ name }) => {
      this.#assertSingleton();
      const existing = this.#row(name);
      if (existing === undefined) return { deleted: false };
      const nowMs = this.now();
      this.ctx.storage.transactionSync(() => {
        run(this.sql, "DELETE FROM adaptive_policies WHERE name = ?", name);
        if (existing.level > 0) {
          const before = this.#leveled(existing);
          const rules = this.#changedRules(before, { stages: before.stages, level: 0 }, this.#ratePolicies());
          this.#record(name, nowMs, null, existing.level, 0, "policy_deleted", rules);
        }
      });
      this.#factors = undefined;
      this.scheduler.cancel(taskId(name));
      await this.scheduler.rearm();
      return { deleted: true };
    });
  }

  policies(): Promise<{ policies: AdaptivePolicy[] }> {
    return this.handle("policies", async () => {
      return { policies: this.#rows().map((row) => JSON.parse(row.definition) as AdaptivePolicy) };
    });
  }

  state(): Promise<AdaptiveState> {
    return this.handle("state", async () => {
      const ratePolicies = this.#ratePolicies();
      return {
        policies: this.#rows().map((row) => this.#stateOf(row, ratePolicies)),
        effective: describeFactors(this.#adjustmentsNow(), ratePolicies),
      };
    });
  }

  /** Level changes, newest first. */
  history(input?: unknown): Promise<{ changes: LevelChange[] }> {
    return this.handle("history", historyInputSchema, input, async (parsed) => {
      const range = parsed.range === undefined ? { from: 0, to: Number.MAX_SAFE_INTEGER } : resolveRange(parsed.range, this.now());
      const rows = all<ChangeRow>(
        this.sql,
        `SELECT * FROM level_changes WHERE at_ms >= ? AND at_ms < ? ${parsed.policy === undefined ? "" : "AND policy = ?"}
         ORDER BY id DESC LIMIT ?`,
        range.from,
        range.to,
        ...(parsed.policy === undefined ? [] : [parsed.policy]),
        parsed.limit ?? 100,
      );
      return {
        changes: rows.map((row) => ({
          id: row.id,
          policy: row.policy,
          at: row.at_ms,
          value: row.value,
          from: row.from_level,
          to: row.to_level,
          reason: row.reason,
          rules: JSON.parse(row.rules) as AdjustedRule[],
        })),
      };
    });
  }

  /** The factors every limiter applies now, across all policies (the limiters cache this per isolate). */
  adjustments(): Promise<RuleFactors> {
    return this.handle("adjustments", async () => {
      return this.#adjustmentsNow();
    });
  }

  #adjustmentsNow(): RuleFactors {
    this.#factors ??= combineFactors(
      this.#rows()
        .filter((row) => row.level > 0)
        .map((row) => this.#leveled(row)),
      this.#ratePolicies(),
    );
    return this.#factors;
  }

  /**
   * Reads one policy's signal and applies `step`. Idempotent: the same reading at the same
   * instant decides the same thing, and `step` allows no second change within the dwell.
   * A failed reading holds the level (and is shown as `lastError`); it does not throw, so the
   * policy keeps its cadence instead of backing off.
   */
  async #evaluate(name: string, nowMs: number): Promise<void> {
    const row = this.#row(name);
    if (row === undefined) return;
    const policy = JSON.parse(row.definition) as AdaptivePolicy;
    let value: number | null = null;
    let error: string | null = null;
    try {
      value = await this.#readSignal(policy.signal, nowMs);
    } catch (caught) {
      error = caught instanceof Error ? caught.message.slice(0, 500) : String(caught);
      console.error(`adaptive policy ${name}: reading its signal failed; level held`, error);
    }
    // Replaced or deleted while the signal was read: the new definition has its own schedule.
    const current = this.#row(name);
    if (current === undefined || current.revision !== row.revision) return;
    const every = policy.evaluateEveryMs ?? ADAPTIVE_BOUNDS.defaultEvaluateEveryMs;
    if (error !== null) {
      run(this.sql, "UPDATE adaptive_policies SET last_error = ?, last_evaluated_at_ms = ? WHERE name = ?", error, nowMs, name);
    } else {
      const thresholds = {
        tightenAbove: policy.tightenAbove,
        relaxBelow: policy.relaxBelow,
        dwellMs: policy.dwellMs,
        stages: policy.stages.length,
      };
      const next = step(
        thresholds,
        { level: current.level, lastChangeAt: current.last_change_at_ms, belowSince: current.below_since_ms },
        value,
        nowMs,
      );
      this.ctx.storage.transactionSync(() => {
        run(
          this.sql,
          `UPDATE adaptive_policies SET level = ?, last_change_at_ms = ?, below_since_ms = ?, last_value = ?,
             last_evaluated_at_ms = ?, last_error = NULL WHERE name = ?`,
          next.state.level,
          next.state.lastChangeAt,
          next.state.belowSince,
          value,
          nowMs,
          name,
        );
        if (next.change !== undefined) {
          const rules = this.#changedRules(
            { stages: policy.stages, level: next.change.from },
            { stages: policy.stages, level: next.change.to },
            this.#ratePolicies(),
          );
          this.#record(name, nowMs, value, next.change.from, next.change.to, next.change.reason, rules);
        }
      });
      if (next.change !== undefined) {
        this.#factors = undefined;
        console.log(`adaptive policy ${name}: ${next.change.reason} ${next.change.from} -> ${next.change.to} at ${value}`);
      }
    }
    await this.scheduler.schedule("evaluate", nowMs + every, { name }, taskId(name), "replace");
  }

  #assertSingleton(): void {
    const name = this.ctx.id.name;
    if (name !== undefined && name !== ADAPTIVE_LIMITS_NAME)
      throw invalidArgument(`the adaptive controller is named "${ADAPTIVE_LIMITS_NAME}"`);
  }

  #ratePolicies(): ReadonlyMap<string, readonly Rule[]> {
    return loadPolicies(this.env.RATE_LIMIT_POLICIES);
  }

  #row(name: string): PolicyRow | undefined {
    return maybeOne<PolicyRow>(this.sql, "SELECT * FROM adaptive_policies WHERE name = ?", name);
  }

  #rows(): PolicyRow[] {
    return all<PolicyRow>(this.sql, "SELECT * FROM adaptive_policies ORDER BY name");
  }

  #count(): number {
    return one<{ n: number }>(this.sql, "SELECT COUNT(*) AS n FROM adaptive_policies").n;
  }

  #leveled(row: PolicyRow): Leveled {
    return { stages: (JSON.parse(row.definition) as AdaptivePolicy).stages, level: row.level };
  }

  #stateOf(row: PolicyRow, ratePolicies: ReadonlyMap<string, readonly Rule[]>): AdaptivePolicyState {
    const leveled = this.#leveled(row);
    return {
      name: row.name,
      level: row.level,
      stages: leveled.stages.length,
      lastValue: row.last_value,
      lastEvaluatedAt: row.last_evaluated_at_ms,
      lastChangeAt: row.last_change_at_ms,
      belowSince: row.below_since_ms,
      lastError: row.last_error,
      nextEvaluationAt: this.scheduler.get(taskId(row.name))?.dueMs ?? null,
      adjusted: describeFactors(toRuleFactors(factorsOf(leveled, ratePolicies)), ratePolicies),
    };
  }

  /** The rules whose factor differs between two levels, with their limits after the change. */
  #changedRules(before: Leveled, after: Leveled, ratePolicies: ReadonlyMap<string, readonly Rule[]>): AdjustedRule[] {
    const was = factorsOf(before, ratePolicies);
    const now = factorsOf(after, ratePolicies);
    const out: AdjustedRule[] = [];
    for (const [policy, rules] of ratePolicies) {
      for (const rule of rules) {
        const from = was.get(policy)?.get(rule.name) ?? 1;
        const to = now.get(policy)?.get(rule.name) ?? 1;
        if (from === to) continue;
        const scaled = to < 1 ? scaleRule(rule, to) : rule;
        const adjusted: AdjustedRule = { policy, rule: rule.name, factor: to, limit: rule.limit, adjustedLimit: scaled.limit };
        if (rule.burst !== undefined) Object.assign(adjusted, { burst: rule.burst, adjustedBurst: scaled.burst! });
        out.push(adjusted);
      }
    }
    return out;
  }

  #record(
    policy: string,
    atMs: number,
    value: number | null,
    from: number,
    to: number,
    reason: LevelChange["reason"],
    rules: AdjustedRule[],
  ): void {
    run(
      this.sql,
      "INSERT INTO level_changes (policy, at_ms, value, from_level, to_level, reason, rules) VALUES (?, ?, ?, ?, ?, ?, ?)",
      policy,
      atMs,
      value,
      from,
      to,
      reason,
      JSON.stringify(rules),
    );
    run(
      this.sql,
      "DELETE FROM level_changes WHERE at_ms < ? OR id <= (SELECT id FROM level_changes ORDER BY id DESC LIMIT 1 OFFSET ?)",
      atMs - CHANGES_TTL_MS,
      KEEP_CHANGES,
    );
  }
}
