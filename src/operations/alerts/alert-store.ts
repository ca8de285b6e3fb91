import type { Alert, AlertNotification, AlertRule, AlertRuleState, AlertRuleView, AlertStatus, DeliveryState } from "../../../rpc/alerts";
import { notFound } from "../../platform/errors";
import type { Migration } from "../../platform/migrations";
import { maybeOne, one, run } from "../../platform/sql";
import { crossingMessage } from "./crossing";

export const ALERTS_MIGRATIONS: readonly Migration[] = [
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

export interface RuleRow extends Record<string, SqlStorageValue> {
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

export interface AlertRow extends Record<string, SqlStorageValue> {
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

export const ALERT_COLUMNS = `a.seq, a.alert_id, a.notification, a.delivery, a.delivered_at_ms, a.acknowledged_at_ms,
  a.resolved_at_ms, a.resolved_value, o.attempts, o.next_attempt_ms, o.last_error`;

const CROSSINGS_OF_RULE = "SELECT crossings FROM crossing_counters WHERE rule_id = ?";

/** The task that evaluates one rule. */
export function evalTaskId(ruleId: string): string {
  return `eval:${ruleId}`;
}

/**
 * The rule and alert rows of `AlertsDO`, read and written row by row. A plain class the object
 * holds privately, so none of it is reachable over RPC; transactions stay with the object.
 */
export class AlertStore {
  readonly #sql: SqlStorage;
  readonly #now: () => number;

  constructor(sql: SqlStorage, now: () => number) {
    this.#sql = sql;
    this.#now = now;
  }

  ruleRow(ruleId: string): RuleRow | undefined {
    return maybeOne<RuleRow>(this.#sql, "SELECT * FROM alert_rules WHERE rule_id = ?", ruleId);
  }

  requireRule(ruleId: string): RuleRow {
    const row = this.ruleRow(ruleId);
    if (row === undefined) throw notFound(`no alert rule "${ruleId}"`);
    return row;
  }

  requireAlert(alertId: string): Alert {
    const row = maybeOne<AlertRow>(
      this.#sql,
      `SELECT ${ALERT_COLUMNS} FROM alerts a LEFT JOIN outbox o ON o.alert_id = a.alert_id WHERE a.alert_id = ?`,
      alertId,
    );
    if (row === undefined) throw notFound(`no alert "${alertId}"`);
    return toAlert(row);
  }

  view(row: RuleRow): AlertRuleView {
    const crossings = maybeOne<{ crossings: number }>(this.#sql, CROSSINGS_OF_RULE, row.rule_id)?.crossings ?? 0;
    const view: AlertRuleView = {
      rule: JSON.parse(row.definition) as AlertRule,
      state: row.state as AlertRuleState,
      crossings,
      createdAt: row.created_at_ms,
      updatedAt: row.updated_at_ms,
    };
    if (row.open_alert_id !== null) view.openAlertId = row.open_alert_id;
    if (row.muted_until_ms !== null && row.muted_until_ms > this.#now()) view.mutedUntil = row.muted_until_ms;
    if (row.last_evaluated_at_ms !== null) {
      view.lastEvaluatedAt = row.last_evaluated_at_ms;
      view.lastValue = row.last_value;
    }
    if (row.last_error !== null) view.lastError = row.last_error;
    return view;
  }

  /** Records a crossing as an alert: into the outbox, or suppressed while the rule is muted. Returns its id. */
  enqueue(rule: AlertRule, row: RuleRow, value: number, threshold: number, nowMs: number): string {
    run(
      this.#sql,
      `INSERT INTO crossing_counters (rule_id, crossings) VALUES (?, 1)
       ON CONFLICT (rule_id) DO UPDATE SET crossings = crossings + 1`,
      rule.ruleId,
    );
    const crossing = one<{ crossings: number }>(this.#sql, CROSSINGS_OF_RULE, rule.ruleId).crossings;
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
      this.#sql,
      "INSERT INTO alerts (alert_id, rule_id, notification, delivery, fired_at_ms) VALUES (?, ?, ?, ?, ?)",
      alertId,
      rule.ruleId,
      JSON.stringify(notification),
      muted ? "suppressed" : "pending",
      nowMs,
    );
    if (!muted) {
      const seq = one<{ seq: number }>(this.#sql, "SELECT seq FROM alerts WHERE alert_id = ?", alertId).seq;
      run(this.#sql, "INSERT INTO outbox (alert_id, seq, next_attempt_ms) VALUES (?, ?, ?)", alertId, seq, nowMs);
    }
    return alertId;
  }

  resolveOpen(row: RuleRow, nowMs: number, value: number | null): void {
    if (row.open_alert_id === null) return;
    run(
      this.#sql,
      "UPDATE alerts SET resolved_at_ms = ?, resolved_value = ? WHERE alert_id = ? AND resolved_at_ms IS NULL",
      nowMs,
      value,
      row.open_alert_id,
    );
  }
}

export function toAlert(row: AlertRow): Alert {
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
