import { readFileSync } from "node:fs";
import type { Alert, AlertRule, AlertRuleView, AlertStatus } from "../../alerts";
import { parseCount, parseDuration, UsageError } from "../args";
import type { Command } from "../command";
import { table, when } from "../format";

const STATUSES = new Set<AlertStatus>(["firing", "acknowledged", "resolved"]);

/** A rule given inline as JSON, or as `@file.json`. tollgate validates it; this only parses. */
function parseRuleArg(text: string | undefined): AlertRule {
  if (!text)
    throw new UsageError(
      'give the rule as JSON or @file.json, e.g. \'{"kind":"balance_below","ruleId":"low","accountId":"acme","level":100}\'',
    );
  const source = text.startsWith("@") ? readFileSync(text.slice(1), "utf8") : text;
  try {
    return JSON.parse(source) as AlertRule;
  } catch (error) {
    throw new UsageError(`the rule is not valid JSON: ${(error as Error).message}`);
  }
}

/** What a rule watches, in a few words. */
function target(rule: AlertRule): string {
  switch (rule.kind) {
    case "balance_below":
      return `${rule.accountId} < ${rule.level}`;
    case "key_spend_share":
      return `${rule.accountId}/${rule.keyId} >= ${rule.share}`;
    case "denial_rate":
      return `${rule.subject} >= ${rule.threshold} over ${rule.windowMs}ms`;
    case "path_error_rate":
    case "path_p99":
      return `${rule.method ?? "*"} ${rule.path} >= ${rule.threshold} over ${rule.windowMs}ms`;
    case "cost_projection":
      return `>= ${rule.threshold ?? "budget"} USD`;
  }
}

function renderRules(views: AlertRuleView[]): string {
  if (views.length === 0) return "no alert rules";
  return table(
    ["rule", "kind", "watches", "state", "last value", "evaluated", "muted until", "crossings", "error"],
    views.map((v) => [
      v.rule.ruleId + (v.rule.enabled === false ? " (disabled)" : ""),
      v.rule.kind,
      target(v.rule),
      v.state,
      v.lastValue,
      v.lastEvaluatedAt === undefined ? "" : when(v.lastEvaluatedAt),
      v.mutedUntil === undefined ? "" : when(v.mutedUntil),
      v.crossings,
      v.lastError,
    ]),
  );
}

function renderAlerts(alerts: Alert[]): string {
  if (alerts.length === 0) return "no alerts";
  return table(
    ["alert", "status", "delivery", "fired", "value", "threshold", "message"],
    alerts.map((a) => [
      a.alertId,
      a.status,
      a.delivery + (a.attempts > 0 ? ` (${a.attempts} failed)` : ""),
      when(a.firedAt),
      a.value,
      a.threshold,
      a.message,
    ]),
  );
}

export const alertsCommands: Command[] = [
  {
    name: "alerts rules",
    usage: "alerts rules",
    summary: "list alert rules with their state (ok or firing), last value and mute",
    options: {},
    async run({ api, print }) {
      print(await api.alerts().rules(), (r) => renderRules(r.rules));
      return 0;
    },
  },
  {
    name: "alerts set",
    usage: "alerts set RULE_JSON|@FILE",
    summary: "create or replace an alert rule (see docs/alerts.md for the kinds)",
    options: {},
    async run({ api, positionals: [rule], print }) {
      print(await api.alerts().setRule(parseRuleArg(rule)), (v) => renderRules([v]));
      return 0;
    },
  },
  {
    name: "alerts delete",
    usage: "alerts delete RULE_ID",
    summary: "delete an alert rule (its alerts stay in the history)",
    options: {},
    async run({ api, positionals: [ruleId], print }) {
      if (!ruleId) throw new UsageError("give a RULE_ID");
      print(await api.alerts().deleteRule({ ruleId }), (r) => (r.deleted ? `rule ${ruleId} deleted` : `no rule ${ruleId}`));
      return 0;
    },
  },
  {
    name: "alerts list",
    usage: "alerts list [--status firing|acknowledged|resolved] [--rule RULE_ID] [--limit N]",
    summary: "list alerts, newest first",
    options: { status: { type: "string" }, rule: { type: "string" }, limit: { type: "string" } },
    async run({ api, options, print }) {
      const status = options.status as string | undefined;
      if (status !== undefined && !STATUSES.has(status as AlertStatus))
        throw new UsageError("--status is firing, acknowledged or resolved");
      const alerts = await api.alerts().list({
        ...(status === undefined ? {} : { status: status as AlertStatus }),
        ...(options.rule === undefined ? {} : { ruleId: options.rule as string }),
        ...(options.limit === undefined ? {} : { limit: parseCount(options.limit as string, "--limit") }),
      });
      print(alerts, (r) => renderAlerts(r.alerts));
      return 0;
    },
  },
  {
    name: "alerts ack",
    usage: "alerts ack ALERT_ID",
    summary: "acknowledge an alert",
    options: {},
    async run({ api, positionals: [alertId], print }) {
      if (!alertId) throw new UsageError("give an ALERT_ID, e.g. low-balance#3");
      print(await api.alerts().acknowledge({ alertId }), (a) => `${a.alertId} acknowledged at ${when(a.acknowledgedAt!)}`);
      return 0;
    },
  },
  {
    name: "alerts mute",
    usage: "alerts mute RULE_ID --for DURATION",
    summary: "record but do not deliver the rule's crossings for DURATION (e.g. 2h)",
    options: { for: { type: "string" } },
    async run({ api, positionals: [ruleId], options, print }) {
      if (!ruleId) throw new UsageError("give a RULE_ID");
      if (options.for === undefined) throw new UsageError("give --for DURATION, e.g. 2h");
      const untilMs = Date.now() + parseDuration(options.for as string);
      print(await api.alerts().mute({ ruleId, untilMs }), (v) => `rule ${ruleId} muted until ${when(v.mutedUntil ?? untilMs)}`);
      return 0;
    },
  },
  {
    name: "alerts unmute",
    usage: "alerts unmute RULE_ID",
    summary: "deliver the rule's next crossings again",
    options: {},
    async run({ api, positionals: [ruleId], print }) {
      if (!ruleId) throw new UsageError("give a RULE_ID");
      print(await api.alerts().unmute({ ruleId }), () => `rule ${ruleId} unmuted`);
      return 0;
    },
  },
];
