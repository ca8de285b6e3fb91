import type { AdaptivePolicy, AdaptivePolicyState, AdaptiveSignal, AdaptiveStage, AdjustedRule, LevelChange } from "../../adaptive";
import type { StatsRange } from "../../path-stats";
import { parseCount, parseDuration, UsageError } from "../args";
import type { Command } from "../command";
import { table, when } from "../format";

const SIGNALS = new Set(["error_rate", "request_rate", "p99_latency"]);
const RANGES = new Set(["1h", "24h", "7d", "30d"]);
const STAGE_HELP = "--stage POLICY[/RULE,RULE]:FACTOR (repeatable, lowest priority first)";

/** A number as typed, e.g. `0.2` or `1500`. */
function parseNumber(text: string, what: string): number {
  if (!/^\d+(\.\d+)?$/.test(text)) throw new UsageError(`${what} must be a number, got "${text}"`);
  return Number(text);
}

/** `per-ip:0.1` or `per-key/hour,second:0.5`. */
function parseStage(text: string): AdaptiveStage {
  const match = /^([^/:]+)(?:\/([^:]+))?:(\d*\.?\d+)$/.exec(text);
  if (!match) throw new UsageError(`not a stage: "${text}" (use POLICY[/RULE,RULE]:FACTOR, e.g. per-ip:0.5 or per-key/hour:0.25)`);
  const [, policy, rules, factor] = match as unknown as [string, string, string | undefined, string];
  return { policy, ...(rules === undefined ? {} : { rules: rules.split(",") }), factor: Number(factor) };
}

function signalOf(options: Record<string, unknown>): AdaptiveSignal {
  const kind = options.signal as string | undefined;
  if (kind === undefined || !SIGNALS.has(kind)) throw new UsageError(`--signal is one of ${[...SIGNALS].join(", ")}`);
  const windowMs = options.window === undefined ? {} : { windowMs: parseDuration(options.window as string) };
  const minRequests =
    options["min-requests"] === undefined ? {} : { minRequests: parseCount(options["min-requests"] as string, "--min-requests") };
  if (kind === "request_rate") {
    if (options["min-requests"] !== undefined || options.path !== undefined)
      throw new UsageError("request_rate takes neither --min-requests nor --path");
    return { kind, ...windowMs };
  }
  if (kind === "error_rate") {
    if (options.path !== undefined || options.method !== undefined) throw new UsageError("error_rate is global: no --path or --method");
    return { kind, ...windowMs, ...minRequests };
  }
  return {
    kind: "p99_latency",
    ...(options.path === undefined ? {} : { path: options.path as string }),
    ...(options.method === undefined ? {} : { method: (options.method as string).toUpperCase() }),
    ...windowMs,
    ...minRequests,
  };
}

const factorOf = (rule: AdjustedRule) =>
  `${rule.policy}/${rule.rule} ${rule.limit}→${rule.adjustedLimit}${rule.burst === undefined ? "" : ` (burst ${rule.burst}→${rule.adjustedBurst})`}`;

function renderStates(states: AdaptivePolicyState[]): string {
  if (states.length === 0) return "no adaptive policies";
  return table(
    ["policy", "level", "last value", "evaluated", "changed", "error", "adjusted"],
    states.map((s) => [
      s.name,
      `${s.level}/${s.stages}`,
      s.lastValue === null ? "no data" : Number(s.lastValue.toFixed(4)),
      s.lastEvaluatedAt === null ? "-" : when(s.lastEvaluatedAt),
      s.lastChangeAt === null ? "-" : when(s.lastChangeAt),
      s.lastError ?? "",
      s.adjusted.map(factorOf).join(", "),
    ]),
  );
}

function renderPolicies(policies: AdaptivePolicy[]): string {
  if (policies.length === 0) return "no adaptive policies";
  return table(
    ["policy", "signal", "tighten above", "relax below", "dwell", "stages"],
    policies.map((p) => [
      p.name,
      p.signal.kind + ("path" in p.signal && p.signal.path !== undefined ? ` ${p.signal.method ?? "*"} ${p.signal.path}` : ""),
      p.tightenAbove,
      p.relaxBelow,
      `${p.dwellMs}ms`,
      p.stages.map((s) => `${s.policy}${s.rules === undefined ? "" : `/${s.rules.join(",")}`}×${s.factor}`).join(" → "),
    ]),
  );
}

function renderHistory(changes: LevelChange[]): string {
  if (changes.length === 0) return "no level changes";
  return table(
    ["at", "policy", "change", "reason", "value", "rules"],
    changes.map((c) => [
      new Date(c.at).toISOString(),
      c.policy,
      `${c.from} → ${c.to}`,
      c.reason,
      c.value === null ? "" : Number(c.value.toFixed(4)),
      c.rules.map(factorOf).join(", "),
    ]),
  );
}

export const adaptiveCommands: Command[] = [
  {
    name: "adaptive set",
    usage: `adaptive set NAME --signal error_rate|request_rate|p99_latency --tighten-above N --relax-below N --dwell DURATION ${STAGE_HELP} [--window 1m] [--min-requests N] [--path /TEMPLATE] [--method GET] [--every 15s]`,
    summary: "create or replace an adaptive policy (docs/adaptive-limits.md)",
    options: {
      signal: { type: "string" },
      "tighten-above": { type: "string" },
      "relax-below": { type: "string" },
      dwell: { type: "string" },
      stage: { type: "string", multiple: true },
      window: { type: "string" },
      "min-requests": { type: "string" },
      path: { type: "string" },
      method: { type: "string" },
      every: { type: "string" },
    },
    async run({ api, positionals: [name], options, print }) {
      if (!name) throw new UsageError("give the policy NAME");
      for (const required of ["tighten-above", "relax-below", "dwell"]) {
        if (options[required] === undefined) throw new UsageError(`give --${required}`);
      }
      const stages = ((options.stage as string[] | undefined) ?? []).map(parseStage);
      if (stages.length === 0) throw new UsageError(`give at least one ${STAGE_HELP}`);
      const policy: AdaptivePolicy = {
        name,
        signal: signalOf(options),
        tightenAbove: parseNumber(options["tighten-above"] as string, "--tighten-above"),
        relaxBelow: parseNumber(options["relax-below"] as string, "--relax-below"),
        dwellMs: parseDuration(options.dwell as string),
        stages,
        ...(options.every === undefined ? {} : { evaluateEveryMs: parseDuration(options.every as string) }),
      };
      const result = await api.adaptive().setPolicy(policy);
      print(result, (r) => `adaptive policy ${r.policy.name} set: ${r.policy.stages.length} stage(s), now at level ${r.state.level}`);
      return 0;
    },
  },
  {
    name: "adaptive delete",
    usage: "adaptive delete NAME",
    summary: "delete an adaptive policy; what it tightened goes back to the configured limits",
    options: {},
    async run({ api, positionals: [name], print }) {
      if (!name) throw new UsageError("give the policy NAME");
      const result = await api.adaptive().deletePolicy({ name });
      print(result, (r) => (r.deleted ? `adaptive policy ${name} deleted` : `no adaptive policy ${name}`));
      return 0;
    },
  },
  {
    name: "adaptive list",
    usage: "adaptive list",
    summary: "the adaptive policies as defined",
    options: {},
    async run({ api, print }) {
      print(await api.adaptive().policies(), (r) => renderPolicies(r.policies));
      return 0;
    },
  },
  {
    name: "adaptive state",
    usage: "adaptive state",
    summary: "each adaptive policy's level, latest reading and the limits it currently changes",
    options: {},
    async run({ api, print }) {
      print(await api.adaptive().state(), (r) => renderStates(r.policies));
      return 0;
    },
  },
  {
    name: "adaptive history",
    usage: "adaptive history [--policy NAME] [--range 1h|24h|7d|30d] [--limit N]",
    summary: "level changes, newest first: when, the reading, and the rules they changed",
    options: { policy: { type: "string" }, range: { type: "string" }, limit: { type: "string" } },
    async run({ api, options, print }) {
      const range = options.range as string | undefined;
      if (range !== undefined && !RANGES.has(range)) throw new UsageError(`--range is one of ${[...RANGES].join(", ")}`);
      const result = await api.adaptive().history({
        ...(options.policy === undefined ? {} : { policy: options.policy as string }),
        ...(range === undefined ? {} : { range: range as StatsRange }),
        ...(options.limit === undefined ? {} : { limit: parseCount(options.limit as string, "--limit") }),
      });
      print(result, (r) => renderHistory(r.changes));
      return 0;
    },
  },
];
