import type { Decision, Rule } from "../../rate-limits";
import { parseCount, parseDuration, parseRule, UsageError } from "../args";
import type { Command } from "../command";
import { table, when } from "../format";

const RULES_HELP = "--policy NAME | --rule name:algorithm:limit/period (repeatable)";

function ruleSource(options: { policy?: string; rule?: string[] }): { rules?: Rule[]; policy?: string } {
  if (options.policy !== undefined && options.rule?.length) throw new UsageError("give --policy or --rule, not both");
  if (options.policy !== undefined) return { policy: options.policy };
  if (options.rule?.length) return { rules: options.rule.map(parseRule) };
  throw new UsageError(`give ${RULES_HELP}`);
}

function render(decision: Decision): string {
  const verdict = decision.allowed
    ? `ALLOWED  remaining ${decision.remaining} of ${decision.limit}`
    : `DENIED by ${decision.deniedBy.join(", ")}  retry in ${Math.ceil(decision.retryAfterMs / 1000)}s`;
  const rules = table(
    ["rule", "algorithm", "limit", "period", "remaining", "resets", "allowed", "shadow"],
    decision.rules.map((r) => [
      r.name,
      r.algorithm,
      r.limit,
      `${r.periodMs}ms`,
      r.remaining,
      when(r.resetAt),
      r.allowed ? "yes" : "no",
      r.shadow ? "yes" : "",
    ]),
  );
  return `${verdict}\n\n${rules}`;
}

const ruleOptions = { policy: { type: "string" }, rule: { type: "string", multiple: true } } as const;

export const limitsCommands: Command[] = [
  {
    name: "limits check",
    usage: `limits check SUBJECT ${RULES_HELP} [--cost N] [--key IDEMPOTENCY_KEY]`,
    summary: "decide one call and charge it when admitted (exit code 3 when denied)",
    options: { ...ruleOptions, cost: { type: "string" }, key: { type: "string" } },
    async run({ api, positionals: [subject], options, print }) {
      if (!subject) throw new UsageError("give a SUBJECT, e.g. ip:203.0.113.9");
      const decision = await api.rateLimits().check({
        subject,
        ...ruleSource(options),
        ...(options.cost === undefined ? {} : { cost: parseCount(options.cost as string, "--cost") }),
        ...(options.key === undefined ? {} : { idempotencyKey: options.key as string }),
      });
      print(decision, render);
      return decision.allowed ? 0 : 3;
    },
  },
  {
    name: "limits peek",
    usage: `limits peek SUBJECT ${RULES_HELP}`,
    summary: "show what remains without consuming",
    options: ruleOptions,
    async run({ api, positionals: [subject], options, print }) {
      if (!subject) throw new UsageError("give a SUBJECT");
      print(await api.rateLimits().peek({ subject, ...ruleSource(options) }), render);
      return 0;
    },
  },
  {
    name: "limits reset",
    usage: "limits reset SUBJECT [--rule NAME]",
    summary: "clear one rule's state, or every rule's",
    options: { rule: { type: "string" } },
    async run({ api, positionals: [subject], options, print }) {
      if (!subject) throw new UsageError("give a SUBJECT");
      const result = await api.rateLimits().reset({ subject, ...(options.rule ? { rule: options.rule as string } : {}) });
      print(result, (r) => `cleared ${r.cleared} rule state(s)`);
      return 0;
    },
  },
  {
    name: "limits override",
    usage: "limits override SUBJECT --rule name:algorithm:limit/period (repeatable)",
    summary: "replace the rules of every call on SUBJECT until cleared (effective on the next call)",
    options: { rule: { type: "string", multiple: true } },
    async run({ api, positionals: [subject], options, print }) {
      if (!subject) throw new UsageError("give a SUBJECT");
      const rules = ((options.rule as string[] | undefined) ?? []).map(parseRule);
      if (rules.length === 0) throw new UsageError("give at least one --rule");
      const result = await api.rateLimits().setOverride({ subject, rules });
      print(
        result,
        (r) =>
          `override on ${r.subject}: ${r.rules.map((rule) => `${rule.name} ${rule.algorithm} ${rule.limit}/${rule.periodMs}ms`).join(", ")}`,
      );
      return 0;
    },
  },
  {
    name: "limits clear-override",
    usage: "limits clear-override SUBJECT",
    summary: "go back to the rules each call names",
    options: {},
    async run({ api, positionals: [subject], print }) {
      if (!subject) throw new UsageError("give a SUBJECT");
      print(await api.rateLimits().clearOverride({ subject }), (r) => (r.cleared ? "override cleared" : "no override was set"));
      return 0;
    },
  },
  {
    name: "limits block",
    usage: "limits block SUBJECT --for DURATION --reason TEXT",
    summary: "deny every call on SUBJECT for DURATION (e.g. 15m)",
    options: { for: { type: "string" }, reason: { type: "string" } },
    async run({ api, positionals: [subject], options, print }) {
      if (!subject) throw new UsageError("give a SUBJECT");
      if (options.for === undefined) throw new UsageError("give --for DURATION, e.g. 15m");
      if (options.reason === undefined) throw new UsageError("give --reason TEXT");
      const untilMs = Date.now() + parseDuration(options.for as string);
      const result = await api.rateLimits().block({ subject, untilMs, reason: options.reason as string });
      print(result, (r) => `blocked until ${when(r.blocked.untilMs)}: ${r.blocked.reason}`);
      return 0;
    },
  },
  {
    name: "limits unblock",
    usage: "limits unblock SUBJECT",
    summary: "lift a block",
    options: {},
    async run({ api, positionals: [subject], print }) {
      if (!subject) throw new UsageError("give a SUBJECT");
      print(await api.rateLimits().unblock({ subject }), (r) => (r.unblocked ? "unblocked" : "was not blocked"));
      return 0;
    },
  },
];
