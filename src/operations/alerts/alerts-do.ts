import { ALERT_RETENTION_MS, KEEP_ALERTS } from "../../platform/retention";
import type { Alert, AlertNotification, AlertRule, AlertRuleView, AlertRuleState } from "../../../rpc/alerts";
import { nextState } from "./crossing";
import { productionReaders, UNAVAILABLE } from "./signals";
import type { SignalReader, SignalReaders, SignalReading } from "./signals/types";
import type { Env } from "../../platform/env";
import { invalidArgument, ServiceError } from "../../platform/errors";
import {
  ALERT_BOUNDS,
  alertRefSchema,
  alertRuleSchema,
  listAlertsInputSchema,
  muteSchema,
  noInputSchema,
  ruleRefSchema,
  triggerOf,
} from "./schemas";
import { retryDelayMs } from "../../platform/backoff";
import { all, maybeOne, one, run } from "../../platform/sql";
import { type ObjectControls, type ObjectHooks, type ObjectSpec, TollgateObject } from "../../platform/tollgate-object";
import { ALERT_COLUMNS, ALERTS_MIGRATIONS, type AlertRow, AlertStore, evalTaskId, type RuleRow, toAlert } from "./alert-store";

/** Alerts sent per delivery run; a longer outbox continues at once in the next run. */
export const DELIVERY_BATCH = 50;
/** A delivery in flight is not picked up by a concurrent run until this long has passed. */
const IN_FLIGHT_MS = 60_000;
/** Resolved, no longer pending alerts are kept this long, and at most `KEEP_ALERTS` in all. */
export { ALERT_RETENTION_MS };
const PRUNE_EVERY_MS = 86_400_000;

/** Where alerts go: a sibling Worker's entrypoint with `notify`. */
export interface AlertSink {
  notify(alert: AlertNotification): Promise<unknown>;
}

/** What `AlertsHooks.attach` hands a test subclass: the base's controls plus single task bodies. */
export interface AlertsControls extends ObjectControls {
  /** One rule's evaluation task body, as a doubled or retried alarm would run it again. */
  evaluate(ruleId: string, nowMs: number): Promise<void>;
  /** The delivery task body. */
  deliver(nowMs: number): Promise<void>;
}

/** What a test subclass may change besides the base's hooks (production passes none). */
export interface AlertsHooks extends Omit<ObjectHooks, "attach"> {
  /** The signal readers by kind, read at every use. Default: the production readers. */
  signalReaders?: (env: Env) => SignalReaders;
  /** Where alerts go. Default: the `ALERT_SINK` service binding. */
  sink?: (env: Env) => AlertSink | undefined;
  /** Receives the object's controls, synchronously, during construction. */
  attach?: (controls: AlertsControls) => void;
}

/**
 * The deployment's alert rules, their OK/FIRING state, the alert history and the outbox. One
 * instance (`ALERTS_NAME`). Its alarm evaluates each enabled rule on the rule's interval (task
 * `eval:<ruleId>`) and drains the outbox to the `ALERT_SINK` service binding (task `deliver`).
 *
 * Exactly once per crossing, as the outbox sees it: the OK → FIRING change and the alert it
 * enqueues are one `transactionSync`, decided against the stored state, so a doubled or
 * retried evaluation finds the rule FIRING and adds nothing. An alert leaves the outbox only
 * when the sink's `notify` returned, in the transaction that marks it delivered, so a doubled
 * drain sends nothing twice; a failed one is retried with backoff. Across the network it is
 * at least once (a `notify` whose answer was lost is sent again), with a stable `alertId`.
 * See docs/alerts.md.
 */
export class AlertsDO extends TollgateObject {
  static readonly #spec: ObjectSpec<AlertsDO> = {
    component: "alerts",
    migrations: ALERTS_MIGRATIONS,
    tasks: (self) => ({
      evaluate: (payload, nowMs) => self.#evaluate((payload as { ruleId: string }).ruleId, nowMs),
      deliver: (_payload, nowMs) => self.#deliver(nowMs),
      prune: (_payload, nowMs) => self.#prune(nowMs),
    }),
  };

  readonly #store: AlertStore;
  readonly #signalReaders: (env: Env) => SignalReaders;
  readonly #sink: (env: Env) => AlertSink | undefined;

  constructor(ctx: DurableObjectState, env: Env, hooks: AlertsHooks = {}) {
    const { attach, signalReaders, sink, ...objectHooks } = hooks;
    let base: ObjectControls | undefined;
    super(ctx, env, AlertsDO.#spec, { ...objectHooks, attach: (controls) => (base = controls) });
    this.#store = new AlertStore(this.sql, this.now);
    this.#signalReaders = signalReaders ?? productionReaders;
    this.#sink = sink ?? ((env) => env.ALERT_SINK);
    attach?.({
      ...base!,
      evaluate: (ruleId, nowMs) => this.#evaluate(ruleId, nowMs),
      deliver: (nowMs) => this.#deliver(nowMs),
    });
  }

  // ---------------------------------------------------------------- rules

  /** Creates or replaces a rule. An identical definition changes nothing; a changed one starts over as OK. */
  setRule(input: unknown): Promise<AlertRuleView> {
    return this.handle("setRule", alertRuleSchema, input, async (parsed) => {
      const rule = parsed as AlertRule;
      if (this.#signalReaders(this.env)[rule.kind] === undefined) throw new ServiceError("UNIMPLEMENTED", UNAVAILABLE[rule.kind]);
      const nowMs = this.now();
      const definition = JSON.stringify(rule);
      const existing = this.#store.ruleRow(rule.ruleId);
      if (existing?.definition === definition) return this.#store.view(existing);
      if (existing === undefined && one<{ n: number }>(this.sql, "SELECT COUNT(*) AS n FROM alert_rules").n >= ALERT_BOUNDS.maxRules) {
        throw new ServiceError("RESOURCE_EXHAUSTED", `at most ${ALERT_BOUNDS.maxRules} alert rules`);
      }
      this.ctx.storage.transactionSync(() => {
        if (existing === undefined) {
          run(
            this.sql,
            `INSERT INTO alert_rules (rule_id, definition, revision, state, created_at_ms, updated_at_ms) VALUES (?, ?, 1, 'ok', ?, ?)`,
            rule.ruleId,
            definition,
            nowMs,
            nowMs,
          );
        } else {
          // A changed rule is a new question: its open alert (if any) is closed and it starts OK.
          this.#store.resolveOpen(existing, nowMs, null);
          run(
            this.sql,
            `UPDATE alert_rules SET definition = ?, revision = revision + 1, state = 'ok', open_alert_id = NULL,
               last_value = NULL, last_evaluated_at_ms = NULL, last_error = NULL, updated_at_ms = ? WHERE rule_id = ?`,
            definition,
            nowMs,
            rule.ruleId,
          );
        }
      });
      if (rule.enabled === false) this.scheduler.cancel(evalTaskId(rule.ruleId));
      else await this.scheduler.schedule("evaluate", nowMs, { ruleId: rule.ruleId }, evalTaskId(rule.ruleId), "replace");
      return this.#store.view(this.#store.ruleRow(rule.ruleId)!);
    });
  }

  /** Deletes a rule; its open alert is resolved, its history and pending deliveries stay. */
  deleteRule(input: unknown): Promise<{ deleted: boolean }> {
    return this.handle("deleteRule", ruleRefSchema, input, async ({ ruleId }) => {
      const existing = this.#store.ruleRow(ruleId);
      if (existing === undefined) return { deleted: false };
      this.ctx.storage.transactionSync(() => {
        this.#store.resolveOpen(existing, this.now(), null);
        run(this.sql, "DELETE FROM alert_rules WHERE rule_id = ?", ruleId);
      });
      this.scheduler.cancel(evalTaskId(ruleId));
      return { deleted: true };
    });
  }

  rules(input?: unknown): Promise<{ rules: AlertRuleView[] }> {
    return this.handle("rules", noInputSchema, input, async () => {
      return { rules: all<RuleRow>(this.sql, "SELECT * FROM alert_rules ORDER BY rule_id").map((row) => this.#store.view(row)) };
    });
  }

  /** Until `untilMs`, the rule still changes state but its crossings are recorded as suppressed, never delivered. */
  mute(input: unknown): Promise<AlertRuleView> {
    return this.handle("mute", muteSchema, input, async (parsed) => {
      const nowMs = this.now();
      if (parsed.untilMs <= nowMs) throw invalidArgument("untilMs must be in the future");
      if (parsed.untilMs > nowMs + ALERT_BOUNDS.maxMuteMs) throw invalidArgument("untilMs must be at most 366 days ahead");
      this.#store.requireRule(parsed.ruleId);
      run(this.sql, "UPDATE alert_rules SET muted_until_ms = ? WHERE rule_id = ?", parsed.untilMs, parsed.ruleId);
      return this.#store.view(this.#store.requireRule(parsed.ruleId));
    });
  }

  unmute(input: unknown): Promise<AlertRuleView> {
    return this.handle("unmute", ruleRefSchema, input, async ({ ruleId }) => {
      this.#store.requireRule(ruleId);
      run(this.sql, "UPDATE alert_rules SET muted_until_ms = NULL WHERE rule_id = ?", ruleId);
      return this.#store.view(this.#store.requireRule(ruleId));
    });
  }

  // ---------------------------------------------------------------- alerts

  /** Alerts, newest first. */
  list(input?: unknown): Promise<{ alerts: Alert[] }> {
    return this.handle("list", listAlertsInputSchema, input, async (parsed) => {
      const where: string[] = [];
      const bindings: unknown[] = [];
      if (parsed.ruleId !== undefined) {
        where.push("a.rule_id = ?");
        bindings.push(parsed.ruleId);
      }
      if (parsed.status === "resolved") where.push("a.resolved_at_ms IS NOT NULL");
      if (parsed.status === "acknowledged") where.push("a.resolved_at_ms IS NULL AND a.acknowledged_at_ms IS NOT NULL");
      if (parsed.status === "firing") where.push("a.resolved_at_ms IS NULL AND a.acknowledged_at_ms IS NULL");
      const rows = all<AlertRow>(
        this.sql,
        `SELECT ${ALERT_COLUMNS} FROM alerts a LEFT JOIN outbox o ON o.alert_id = a.alert_id
         ${where.length === 0 ? "" : `WHERE ${where.join(" AND ")}`} ORDER BY a.seq DESC LIMIT ?`,
        ...bindings,
        parsed.limit ?? ALERT_BOUNDS.defaultListLimit,
      );
      return { alerts: rows.map(toAlert) };
    });
  }

  /** Marks an alert seen. Idempotent: the first acknowledgement's time is kept. */
  acknowledge(input: unknown): Promise<Alert> {
    return this.handle("acknowledge", alertRefSchema, input, async ({ alertId }) => {
      this.#store.requireAlert(alertId);
      run(this.sql, "UPDATE alerts SET acknowledged_at_ms = ? WHERE alert_id = ? AND acknowledged_at_ms IS NULL", this.now(), alertId);
      return this.#store.requireAlert(alertId);
    });
  }

  // ---------------------------------------------------------------- the alarm's work

  /**
   * Reads the rule's signal and applies the crossing rule. The read is an RPC (other calls may
   * run meanwhile), so the decision is taken afterwards, in one transaction, against the state
   * stored then: a rule changed meanwhile is left to its next evaluation, and a result older
   * than one already stored is dropped. Safe to run twice: the second run finds the state the
   * first one left.
   */
  async #evaluate(ruleId: string, nowMs: number): Promise<void> {
    const row = this.#store.ruleRow(ruleId);
    if (row === undefined) return;
    const rule = JSON.parse(row.definition) as AlertRule;
    if (rule.enabled === false) return;
    let reading: SignalReading | undefined;
    let failure: string | undefined;
    try {
      const reader = this.#signalReaders(this.env)[rule.kind] as SignalReader | undefined;
      if (reader === undefined) throw new Error(UNAVAILABLE[rule.kind]);
      reading = await reader.read(rule, nowMs);
    } catch (error) {
      failure = error instanceof Error ? error.message : String(error);
    }
    let enqueued = false;
    this.ctx.storage.transactionSync(() => {
      const current = this.#store.ruleRow(ruleId);
      if (current === undefined || current.revision !== row.revision) return;
      if (current.last_evaluated_at_ms !== null && current.last_evaluated_at_ms > nowMs) return;
      if (reading === undefined) {
        run(
          this.sql,
          "UPDATE alert_rules SET last_error = ?, last_evaluated_at_ms = ? WHERE rule_id = ?",
          (failure ?? "").slice(0, 500),
          nowMs,
          ruleId,
        );
        return;
      }
      const threshold = reading.threshold ?? triggerOf(rule).threshold;
      const step = nextState(rule, current.state as AlertRuleState, reading.value, threshold);
      let openAlertId = current.open_alert_id;
      if (step.transition === "fire") {
        openAlertId = this.#store.enqueue(rule, current, reading.value!, threshold!, nowMs);
        enqueued = maybeOne(this.sql, "SELECT 1 AS x FROM outbox WHERE alert_id = ?", openAlertId) !== undefined;
      } else if (step.transition === "resolve") {
        this.#store.resolveOpen(current, nowMs, reading.value);
        openAlertId = null;
      }
      run(
        this.sql,
        "UPDATE alert_rules SET state = ?, open_alert_id = ?, last_value = ?, last_evaluated_at_ms = ?, last_error = NULL WHERE rule_id = ?",
        step.state,
        openAlertId,
        reading.value,
        nowMs,
        ruleId,
      );
    });
    if (enqueued) {
      await this.scheduler.schedule("deliver", nowMs, null, "deliver", "earliest");
      await this.scheduler.schedule("prune", nowMs + PRUNE_EVERY_MS, null, "prune", "earliest");
    }
    if (this.#store.ruleRow(ruleId)?.revision === row.revision) {
      await this.scheduler.schedule(
        "evaluate",
        nowMs + (rule.intervalMs ?? ALERT_BOUNDS.defaultIntervalMs),
        { ruleId },
        evalTaskId(ruleId),
        "replace",
      );
    }
  }

  /**
   * Sends due outbox entries, oldest first, one at a time. Each is claimed before the send (so
   * a concurrent run skips it) and leaves the outbox only after `notify` returned; a failure
   * is retried with backoff (1 s doubling to 1 h) and never dropped. Safe to run twice.
   */
  async #deliver(nowMs: number): Promise<void> {
    const due = all<{ alert_id: string; attempts: number; notification: string }>(
      this.sql,
      `SELECT o.alert_id, o.attempts, a.notification FROM outbox o JOIN alerts a ON a.alert_id = o.alert_id
       WHERE o.next_attempt_ms <= ? AND (o.in_flight_until_ms IS NULL OR o.in_flight_until_ms <= ?)
       ORDER BY o.seq LIMIT ?`,
      nowMs,
      nowMs,
      DELIVERY_BATCH,
    );
    for (const entry of due) {
      run(this.sql, "UPDATE outbox SET in_flight_until_ms = ? WHERE alert_id = ?", nowMs + IN_FLIGHT_MS, entry.alert_id);
    }
    const sink = this.#sink(this.env);
    for (const entry of due) {
      try {
        if (sink === undefined) throw new Error("no ALERT_SINK service binding is configured");
        await sink.notify(JSON.parse(entry.notification) as AlertNotification);
        this.ctx.storage.transactionSync(() => {
          if (run(this.sql, "DELETE FROM outbox WHERE alert_id = ?", entry.alert_id) > 0) {
            run(this.sql, "UPDATE alerts SET delivery = 'delivered', delivered_at_ms = ? WHERE alert_id = ?", nowMs, entry.alert_id);
          }
        });
      } catch (error) {
        const attempts = entry.attempts + 1;
        const message = error instanceof Error ? error.message : String(error);
        run(
          this.sql,
          "UPDATE outbox SET attempts = ?, next_attempt_ms = ?, in_flight_until_ms = NULL, last_error = ? WHERE alert_id = ?",
          attempts,
          nowMs + retryDelayMs(attempts),
          message.slice(0, 500),
          entry.alert_id,
        );
      }
    }
    const next =
      due.length === DELIVERY_BATCH
        ? nowMs
        : one<{ next: number | null }>(this.sql, "SELECT MIN(MAX(next_attempt_ms, COALESCE(in_flight_until_ms, 0))) AS next FROM outbox")
            .next;
    // "replace": the running task's own row is due earlier and would win, then be deleted as done.
    if (next !== null) await this.scheduler.schedule("deliver", Math.max(next, nowMs), null, "deliver", "replace");
  }

  /** Forgets old resolved alerts that have nothing left to deliver; idempotent. */
  async #prune(nowMs: number): Promise<void> {
    run(
      this.sql,
      "DELETE FROM alerts WHERE resolved_at_ms IS NOT NULL AND resolved_at_ms <= ? AND delivery <> 'pending'",
      nowMs - ALERT_RETENTION_MS,
    );
    run(
      this.sql,
      `DELETE FROM alerts WHERE delivery <> 'pending' AND resolved_at_ms IS NOT NULL
       AND seq NOT IN (SELECT seq FROM alerts ORDER BY seq DESC LIMIT ?)`,
      KEEP_ALERTS,
    );
    if (maybeOne(this.sql, "SELECT 1 AS x FROM alerts LIMIT 1") !== undefined) {
      await this.scheduler.schedule("prune", nowMs + PRUNE_EVERY_MS, null, "prune", "replace");
    }
  }
}
