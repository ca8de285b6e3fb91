import { ALERT_RETENTION_MS, KEEP_ALERTS } from "../../platform/retention";
import type { Alert, AlertNotification, AlertRule, AlertRuleView, AlertStatus, DeliveryState, AlertRuleState } from "../../../rpc/alerts";
import { crossingMessage, nextState } from "./crossing";
import { productionReaders, UNAVAILABLE } from "./signals";
import type { SignalReader, SignalReaders, SignalReading } from "./signals/types";
import type { Env } from "../../platform/env";
import { invalidArgument, notFound, ServiceError } from "../../platform/errors";
import { ALERT_BOUNDS, alertRefSchema, alertRuleSchema, listAlertsInputSchema, muteSchema, noInputSchema, ruleRefSchema, triggerOf } from "./schemas";
import { parseInput } from "../../platform/schemas";
import { retryDelayMs } from "../../platform/backoff";
import type { TaskHandlers } from "../../platform/task-scheduler";
import type { Migration } from "../../platform/migrations";
import { all, maybeOne, one, run } from "../../platform/sql";
import { TollgateObject } from "../../platform/tollgate-object";

/** The one alerts object's name. */
export const ALERTS_NAME = "alerts";
/** Alerts sent per delivery run; a longer outbox continues at once in the next run. */
export const DELIVERY_BATCH = 50;
/** A delivery in flight is not picked up by a concurrent run until this long has passed. */
const IN_FLIGHT_MS = 60_000;
/** Resolved, no longer pending alerts are kept this long, and at most `KEEP_ALERTS` in all. */
export { ALERT_RETENTION_MS };
const PRUNE_EVERY_MS = 86_400_000;

const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "rules, crossing counters, alerts and outbox",
    up(sql) {
      sql.exec(`CREATE TABLE alert_rules (
        rule_id TEXT PRIMARY KEY,
        definition TEXT NOT NULL,
        revision INTEGER NOT NULL,
        state TEXT NOT NULL,
        open_alert_id TEXT,
        muted_until_ms INTEGER,
        last_value REAL,
        last_evaluated_at_ms INTEGER,
        last_error TEXT,
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL
      )`);
      // Never deleted with a rule, so a re-created rule id continues its numbering and an
      // alert id (<ruleId>#<crossing>) is never reused.
      sql.exec("CREATE TABLE crossing_counters (rule_id TEXT PRIMARY KEY, crossings INTEGER NOT NULL)");
      sql.exec(`CREATE TABLE alerts (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        alert_id TEXT NOT NULL UNIQUE,
        rule_id TEXT NOT NULL,
        notification TEXT NOT NULL,
        delivery TEXT NOT NULL,
        delivered_at_ms INTEGER,
        acknowledged_at_ms INTEGER,
        resolved_at_ms INTEGER,
        resolved_value REAL,
        fired_at_ms INTEGER NOT NULL
      )`);
      sql.exec("CREATE INDEX alerts_by_rule ON alerts (rule_id, seq)");
      sql.exec(`CREATE TABLE outbox (
        alert_id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL,
        in_flight_until_ms INTEGER,
        last_error TEXT
      )`);
      sql.exec("CREATE INDEX outbox_by_due ON outbox (next_attempt_ms, seq)");
    },
  },
];

interface RuleRow extends Record<string, SqlStorageValue> {
  rule_id: string;
  definition: string;
  revision: number;
  state: string;
  open_alert_id: string | null;
  muted_until_ms: number | null;
  last_value: number | null;
  last_evaluated_at_ms: number | null;
  last_error: string | null;
  created_at_ms: number;
  updated_at_ms: number;
}

interface AlertRow extends Record<string, SqlStorageValue> {
  seq: number;
  alert_id: string;
  notification: string;
  delivery: string;
  delivered_at_ms: number | null;
  acknowledged_at_ms: number | null;
  resolved_at_ms: number | null;
  resolved_value: number | null;
  attempts: number | null;
  next_attempt_ms: number | null;
  last_error: string | null;
}

const ALERT_COLUMNS = `a.seq, a.alert_id, a.notification, a.delivery, a.delivered_at_ms, a.acknowledged_at_ms,
  a.resolved_at_ms, a.resolved_value, o.attempts, o.next_attempt_ms, o.last_error`;

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
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env, { component: "alerts", migrations: MIGRATIONS });
  }

  /** The clock. Test subclasses drive it. */
  protected now(): number {
    return Date.now();
  }

  /** The signal readers by kind; tests add fakes. */
  protected signalReaders(): SignalReaders {
    return productionReaders(this.env);
  }

  /** Where alerts go: the `ALERT_SINK` service binding (a sibling Worker's entrypoint with `notify`). */
  protected sink(): { notify(alert: AlertNotification): Promise<unknown> } | undefined {
    return this.env.ALERT_SINK;
  }

  override async alarm(): Promise<void> {
    await this.runAlarm(this.now());
  }

  // ---------------------------------------------------------------- rules

  /** Creates or replaces a rule. An identical definition changes nothing; a changed one starts over as OK. */
  async setRule(input: unknown): Promise<AlertRuleView> {
    const rule = parseInput(alertRuleSchema, input, "alert rule") as AlertRule;
    if (this.signalReaders()[rule.kind] === undefined) throw new ServiceError("UNIMPLEMENTED", UNAVAILABLE[rule.kind]);
    const nowMs = this.now();
    const definition = JSON.stringify(rule);
    const existing = this.ruleRow(rule.ruleId);
    if (existing?.definition === definition) return this.view(existing);
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
        this.resolveOpen(existing, nowMs, null);
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
    return this.view(this.ruleRow(rule.ruleId)!);
  }

  /** Deletes a rule; its open alert is resolved, its history and pending deliveries stay. */
  async deleteRule(input: unknown): Promise<{ deleted: boolean }> {
    const { ruleId } = parseInput(ruleRefSchema, input, "deleteRule input");
    const existing = this.ruleRow(ruleId);
    if (existing === undefined) return { deleted: false };
    this.ctx.storage.transactionSync(() => {
      this.resolveOpen(existing, this.now(), null);
      run(this.sql, "DELETE FROM alert_rules WHERE rule_id = ?", ruleId);
    });
    this.scheduler.cancel(evalTaskId(ruleId));
    return { deleted: true };
  }

  async rules(input?: unknown): Promise<{ rules: AlertRuleView[] }> {
    parseInput(noInputSchema, input, "rules input");
    return { rules: all<RuleRow>(this.sql, "SELECT * FROM alert_rules ORDER BY rule_id").map((row) => this.view(row)) };
  }

  /** Until `untilMs`, the rule still changes state but its crossings are recorded as suppressed, never delivered. */
  async mute(input: unknown): Promise<AlertRuleView> {
    const parsed = parseInput(muteSchema, input, "mute input");
    const nowMs = this.now();
    if (parsed.untilMs <= nowMs) throw invalidArgument("untilMs must be in the future");
    if (parsed.untilMs > nowMs + ALERT_BOUNDS.maxMuteMs) throw invalidArgument("untilMs must be at most 366 days ahead");
    this.requireRule(parsed.ruleId);
    run(this.sql, "UPDATE alert_rules SET muted_until_ms = ? WHERE rule_id = ?", parsed.untilMs, parsed.ruleId);
    return this.view(this.requireRule(parsed.ruleId));
  }

  async unmute(input: unknown): Promise<AlertRuleView> {
    const { ruleId } = parseInput(ruleRefSchema, input, "unmute input");
    this.requireRule(ruleId);
    run(this.sql, "UPDATE alert_rules SET muted_until_ms = NULL WHERE rule_id = ?", ruleId);
    return this.view(this.requireRule(ruleId));
  }

  // ---------------------------------------------------------------- alerts

  /** Alerts, newest first. */
  async list(input?: unknown): Promise<{ alerts: Alert[] }> {
    const parsed = parseInput(listAlertsInputSchema, input, "list input");
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
  }

  /** Marks an alert seen. Idempotent: the first acknowledgement's time is kept. */
  async acknowledge(input: unknown): Promise<Alert> {
    const { alertId } = parseInput(alertRefSchema, input, "acknowledge input");
    this.requireAlert(alertId);
    run(this.sql, "UPDATE alerts SET acknowledged_at_ms = ? WHERE alert_id = ? AND acknowledged_at_ms IS NULL", this.now(), alertId);
    return this.requireAlert(alertId);
  }

  // ---------------------------------------------------------------- the alarm's work

  protected override taskHandlers(): TaskHandlers {
    return {
      evaluate: (payload, nowMs) => this.evaluate((payload as { ruleId: string }).ruleId, nowMs),
      deliver: (_payload, nowMs) => this.deliver(nowMs),
      prune: (_payload, nowMs) => this.prune(nowMs),
    };
  }

  /**
   * Reads the rule's signal and applies the crossing rule. The read is an RPC (other calls may
   * run meanwhile), so the decision is taken afterwards, in one transaction, against the state
   * stored then: a rule changed meanwhile is left to its next evaluation, and a result older
   * than one already stored is dropped. Safe to run twice: the second run finds the state the
   * first one left.
   */
  protected async evaluate(ruleId: string, nowMs: number): Promise<void> {
    const row = this.ruleRow(ruleId);
    if (row === undefined) return;
    const rule = JSON.parse(row.definition) as AlertRule;
    if (rule.enabled === false) return;
    let reading: SignalReading | undefined;
    let failure: string | undefined;
    try {
      const reader = this.signalReaders()[rule.kind] as SignalReader | undefined;
      if (reader === undefined) throw new Error(UNAVAILABLE[rule.kind]);
      reading = await reader.read(rule, nowMs);
    } catch (error) {
      failure = error instanceof Error ? error.message : String(error);
    }
    let enqueued = false;
    this.ctx.storage.transactionSync(() => {
      const current = this.ruleRow(ruleId);
      if (current === undefined || current.revision !== row.revision) return;
      if (current.last_evaluated_at_ms !== null && current.last_evaluated_at_ms > nowMs) return;
      if (reading === undefined) {
        run(this.sql, "UPDATE alert_rules SET last_error = ?, last_evaluated_at_ms = ? WHERE rule_id = ?", (failure ?? "").slice(0, 500), nowMs, ruleId);
        return;
      }
      const threshold = reading.threshold ?? triggerOf(rule).threshold;
      const step = nextState(rule, current.state as AlertRuleState, reading.value, threshold);
      let openAlertId = current.open_alert_id;
      if (step.transition === "fire") {
        openAlertId = this.enqueue(rule, current, reading.value!, threshold!, nowMs);
        enqueued = maybeOne(this.sql, "SELECT 1 AS x FROM outbox WHERE alert_id = ?", openAlertId) !== undefined;
      } else if (step.transition === "resolve") {
        this.resolveOpen(current, nowMs, reading.value);
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
    if (this.ruleRow(ruleId)?.revision === row.revision) {
      await this.scheduler.schedule("evaluate", nowMs + (rule.intervalMs ?? ALERT_BOUNDS.defaultIntervalMs), { ruleId }, evalTaskId(ruleId), "replace");
    }
  }

  /** Records a crossing as an alert: into the outbox, or suppressed while the rule is muted. Returns its id. */
  private enqueue(rule: AlertRule, row: RuleRow, value: number, threshold: number, nowMs: number): string {
    run(
      this.sql,
      `INSERT INTO crossing_counters (rule_id, crossings) VALUES (?, 1)
       ON CONFLICT (rule_id) DO UPDATE SET crossings = crossings + 1`,
      rule.ruleId,
    );
    const crossing = one<{ crossings: number }>(this.sql, "SELECT crossings FROM crossing_counters WHERE rule_id = ?", rule.ruleId).crossings;
    const alertId = `${rule.ruleId}#${crossing}`;
    const notification: AlertNotification = {
      alertId,
      ruleId: rule.ruleId,
      kind: rule.kind,
      crossing,
      firedAt: nowMs,
      value,
      threshold,
      message: crossingMessage(rule, value, threshold),
      ...(rule.description === undefined ? {} : { description: rule.description }),
    };
    const muted = row.muted_until_ms !== null && row.muted_until_ms > nowMs;
    run(
      this.sql,
      "INSERT INTO alerts (alert_id, rule_id, notification, delivery, fired_at_ms) VALUES (?, ?, ?, ?, ?)",
      alertId,
      rule.ruleId,
      JSON.stringify(notification),
      muted ? "suppressed" : "pending",
      nowMs,
    );
    if (!muted) {
      const seq = one<{ seq: number }>(this.sql, "SELECT seq FROM alerts WHERE alert_id = ?", alertId).seq;
      run(this.sql, "INSERT INTO outbox (alert_id, seq, next_attempt_ms) VALUES (?, ?, ?)", alertId, seq, nowMs);
    }
    return alertId;
  }

  private resolveOpen(row: RuleRow, nowMs: number, value: number | null): void {
    if (row.open_alert_id === null) return;
    run(
      this.sql,
      "UPDATE alerts SET resolved_at_ms = ?, resolved_value = ? WHERE alert_id = ? AND resolved_at_ms IS NULL",
      nowMs,
      value,
      row.open_alert_id,
    );
  }

  /**
   * Sends due outbox entries, oldest first, one at a time. Each is claimed before the send (so
   * a concurrent run skips it) and leaves the outbox only after `notify` returned; a failure
   * is retried with backoff (1 s doubling to 1 h) and never dropped. Safe to run twice.
   */
  protected async deliver(nowMs: number): Promise<void> {
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
    const sink = this.sink();
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
    const next = due.length === DELIVERY_BATCH
      ? nowMs
      : one<{ next: number | null }>(this.sql, "SELECT MIN(MAX(next_attempt_ms, COALESCE(in_flight_until_ms, 0))) AS next FROM outbox").next;
    // "replace": the running task's own row is due earlier and would win, then be deleted as done.
    if (next !== null) await this.scheduler.schedule("deliver", Math.max(next, nowMs), null, "deliver", "replace");
  }

  /** Forgets old resolved alerts that have nothing left to deliver; idempotent. */
  protected async prune(nowMs: number): Promise<void> {
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

  // ---------------------------------------------------------------- internals

  private ruleRow(ruleId: string): RuleRow | undefined {
    return maybeOne<RuleRow>(this.sql, "SELECT * FROM alert_rules WHERE rule_id = ?", ruleId);
  }

  private requireRule(ruleId: string): RuleRow {
    const row = this.ruleRow(ruleId);
    if (row === undefined) throw notFound(`no alert rule "${ruleId}"`);
    return row;
  }

  private requireAlert(alertId: string): Alert {
    const row = maybeOne<AlertRow>(this.sql, `SELECT ${ALERT_COLUMNS} FROM alerts a LEFT JOIN outbox o ON o.alert_id = a.alert_id WHERE a.alert_id = ?`, alertId);
    if (row === undefined) throw notFound(`no alert "${alertId}"`);
    return toAlert(row);
  }

  private view(row: RuleRow): AlertRuleView {
    const crossings = maybeOne<{ crossings: number }>(this.sql, "SELECT crossings FROM crossing_counters WHERE rule_id = ?", row.rule_id)?.crossings ?? 0;
    const view: AlertRuleView = {
      rule: JSON.parse(row.definition) as AlertRule,
      state: row.state as AlertRuleState,
      crossings,
      createdAt: row.created_at_ms,
      updatedAt: row.updated_at_ms,
    };
    if (row.open_alert_id !== null) view.openAlertId = row.open_alert_id;
    if (row.muted_until_ms !== null && row.muted_until_ms > this.now()) view.mutedUntil = row.muted_until_ms;
    if (row.last_evaluated_at_ms !== null) {
      view.lastEvaluatedAt = row.last_evaluated_at_ms;
      view.lastValue = row.last_value;
    }
    if (row.last_error !== null) view.lastError = row.last_error;
    return view;
  }
}

function evalTaskId(ruleId: string): string {
  return `eval:${ruleId}`;
}

function toAlert(row: AlertRow): Alert {
  const notification = JSON.parse(row.notification) as AlertNotification;
  const status: AlertStatus = row.resolved_at_ms !== null ? "resolved" : row.acknowledged_at_ms !== null ? "acknowledged" : "firing";
  const alert: Alert = { ...notification, status, delivery: row.delivery as DeliveryState, attempts: row.attempts ?? 0 };
  if (row.delivered_at_ms !== null) alert.deliveredAt = row.delivered_at_ms;
  if (row.delivery === "pending" && row.next_attempt_ms !== null) alert.nextAttemptAt = row.next_attempt_ms;
  if (row.last_error !== null) alert.lastError = row.last_error;
  if (row.acknowledged_at_ms !== null) alert.acknowledgedAt = row.acknowledged_at_ms;
  if (row.resolved_at_ms !== null) {
    alert.resolvedAt = row.resolved_at_ms;
    alert.resolvedValue = row.resolved_value;
  }
  return alert;
}
