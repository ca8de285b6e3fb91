/**
 * Alerts contract: threshold rules evaluated by the `AlertsDO` alarm, each crossing delivered
 * once to a sibling Worker's `notify(alert)` (service binding `ALERT_SINK`), listed,
 * acknowledged and muted through `Admin.alerts()` (capnweb `AdminApi.alerts()`). Types only.
 * See docs/alerts.md.
 */

/** What a rule watches. */
export type AlertKind = "balance_below" | "key_spend_share" | "denial_rate" | "path_error_rate" | "path_p99" | "cost_projection";

/** Fields every rule has. */
export interface AlertRuleCommon {
  /** 1..64 of [A-Za-z0-9._:-], starting with a letter or digit. `setRule` with an existing id replaces that rule. */
  ruleId: string;
  /** Shown with every alert of the rule; up to 200 characters. */
  description?: string;
  /** Default true. A disabled rule is not evaluated (it stays OK). */
  enabled?: boolean;
  /** How often the rule is evaluated: 10 s .. 24 h, default 60 s. */
  intervalMs?: number;
}

/** Fires when the account's available balance is below `level`; recovers at `recoverAt` (default `level`) or above. */
export interface BalanceBelowRule extends AlertRuleCommon {
  kind: "balance_below";
  accountId: string;
  level: number;
  recoverAt?: number;
}

/**
 * Fires when the key has spent at least `share` (0 < share ≤ 1) of a spend cap in the cap's
 * current period (the larger of its day and month shares); recovers below `recoverAt`
 * (default `share`). A key without a cap has no signal.
 */
export interface KeySpendShareRule extends AlertRuleCommon {
  kind: "key_spend_share";
  accountId: string;
  keyId: string;
  share: number;
  recoverAt?: number;
}

/**
 * Fires when at least `threshold` (0 < threshold ≤ 1) of the subject's charged checks in the
 * last `windowMs` were denied, once the window holds at least `minRequests` checks.
 */
export interface DenialRateRule extends AlertRuleCommon {
  kind: "denial_rate";
  subject: string;
  /** 1 min .. 24 h, counted in whole minutes. */
  windowMs: number;
  threshold: number;
  minRequests: number;
  recoverAt?: number;
}

/** Fires when the path's share of 5xx responses in the last `windowMs` is at least `threshold` (0 < threshold ≤ 1). */
export interface PathErrorRateRule extends AlertRuleCommon {
  kind: "path_error_rate";
  /** A path or template (`/users/:id`), normalized as path statistics normalize it. */
  path: string;
  /** One method; default: every method of the path together. */
  method?: string;
  windowMs: number;
  threshold: number;
  /** Fewer requests in the window than this is no signal; default 1. */
  minRequests?: number;
  recoverAt?: number;
}

/** Fires when the path's p99 latency in the last `windowMs` is at least `threshold` ms (without `method`: the highest p99 of its methods). */
export interface PathP99Rule extends AlertRuleCommon {
  kind: "path_p99";
  path: string;
  method?: string;
  windowMs: number;
  /** Milliseconds. */
  threshold: number;
  minRequests?: number;
  recoverAt?: number;
}

/** Fires when the projected monthly cost in USD is at least `threshold` (default: the configured budget). */
export interface CostProjectionRule extends AlertRuleCommon {
  kind: "cost_projection";
  threshold?: number;
  recoverAt?: number;
}

export type AlertRule = BalanceBelowRule | KeySpendShareRule | DenialRateRule | PathErrorRateRule | PathP99Rule | CostProjectionRule;

/** A rule is OK or FIRING; only OK → FIRING sends an alert. */
export type AlertRuleState = "ok" | "firing";

export interface AlertRuleView {
  rule: AlertRule;
  state: AlertRuleState;
  /** The alert of the current FIRING period. */
  openAlertId?: string;
  /** While in the future, crossings are recorded but not delivered. */
  mutedUntil?: number;
  /** The signal at the last evaluation; `null` when there was too little data. */
  lastValue?: number | null;
  lastEvaluatedAt?: number;
  /** Why the last evaluation could not read its signal (the state was left as it was). */
  lastError?: string;
  /** How many times the rule has crossed (OK → FIRING) since its id was first used. */
  crossings: number;
  createdAt: number;
  updatedAt: number;
}

/** `firing`: open and not acknowledged; `acknowledged`: open and acknowledged; `resolved`: the value recovered. */
export type AlertStatus = "firing" | "acknowledged" | "resolved";

/**
 * `pending`: in the outbox (not yet confirmed by the sink); `delivered`: the sink's `notify`
 * returned; `suppressed`: the rule was muted when it crossed, so it is never delivered.
 */
export type DeliveryState = "pending" | "delivered" | "suppressed";

/** What the sink's `notify` receives. */
export interface AlertNotification {
  /** `<ruleId>#<crossing>`: stable across retries, so a receiver can drop duplicates. */
  alertId: string;
  ruleId: string;
  kind: AlertKind;
  /** 1 for the rule's first crossing, then 2, 3, … */
  crossing: number;
  firedAt: number;
  /** The signal that crossed: a balance, a share (0..1), a rate (0..1), milliseconds or USD. */
  value: number;
  threshold: number;
  message: string;
  description?: string;
}

export interface Alert extends AlertNotification {
  status: AlertStatus;
  delivery: DeliveryState;
  deliveredAt?: number;
  /** Failed deliveries so far. */
  attempts: number;
  nextAttemptAt?: number;
  lastError?: string;
  acknowledgedAt?: number;
  resolvedAt?: number;
  /** The signal when the rule recovered (`null`: too little data). */
  resolvedValue?: number | null;
}

export interface ListAlertsInput {
  status?: AlertStatus;
  ruleId?: string;
  /** 1..1,000, default 50. Newest first. */
  limit?: number;
}

/** `Admin.alerts()` / capnweb `AdminApi.alerts()`. */
export interface AlertsApi {
  /** Creates or replaces a rule. An identical rule is left as it is; a changed one starts over as OK. */
  setRule(input: AlertRule): Promise<AlertRuleView>;
  deleteRule(input: { ruleId: string }): Promise<{ deleted: boolean }>;
  rules(): Promise<{ rules: AlertRuleView[] }>;
  list(input?: ListAlertsInput): Promise<{ alerts: Alert[] }>;
  /** Marks an alert seen; idempotent. */
  acknowledge(input: { alertId: string }): Promise<Alert>;
  /** Until `untilMs`, the rule's crossings are recorded but not delivered. */
  mute(input: { ruleId: string; untilMs: number }): Promise<AlertRuleView>;
  unmute(input: { ruleId: string }): Promise<AlertRuleView>;
}

/** The entrypoint a sibling Worker exports to receive alerts (bound to tollgate as `ALERT_SINK`). */
export interface AlertSinkApi {
  /** Must be idempotent per `alertId`: a delivery whose answer was lost is sent again. */
  notify(alert: AlertNotification): Promise<void> | void;
}
