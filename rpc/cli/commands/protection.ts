import type { StatsRange } from "../../path-stats";
import type { AllowEntry, AnomalyPolicy, DenyEntry, Flag, PolicyInfo } from "../../protection";
import { parseCount, parseDuration, UsageError } from "../args";
import type { Command } from "../command";
import { table, when } from "../format";

const RANGES = new Set(["1h", "24h", "7d", "30d"]);

function cidrOf(positionals: string[]): string {
  const [cidr] = positionals;
  if (!cidr) throw new UsageError("give a CIDR range, e.g. 203.0.113.0/24 or 2001:db8::/32");
  return cidr;
}

function renderPolicy(info: PolicyInfo): string {
  const rows = Object.entries(info.effective).map(([field, value]) => [field, String(value), field in info.override ? "override" : ""]);
  return `${table(["field", "value", "set by"], rows)}\n\n${info.updatedAt === null ? "no run-time override" : `override set ${when(info.updatedAt)}`}`;
}

function renderAllow(entries: AllowEntry[]): string {
  return entries.length === 0
    ? "allow list: empty"
    : `allow list\n${table(
        ["cidr", "note", "added"],
        entries.map((e) => [e.cidr, e.note ?? "", when(e.addedAt)]),
      )}`;
}

function renderDeny(entries: DenyEntry[]): string {
  return entries.length === 0
    ? "deny list: empty"
    : `deny list\n${table(
        ["cidr", "until", "reason"],
        entries.map((e) => [e.cidr, e.until === undefined ? "until removed" : when(e.until), e.reason]),
      )}`;
}

function renderFlags(flags: Flag[]): string {
  if (flags.length === 0) return "no flags in this range";
  return table(
    ["at", "client", "rule", "requests", "4xx", "404", "baseline", "threshold", "action"],
    flags.map((f) => [
      new Date(f.at).toISOString(),
      f.client,
      f.rule,
      f.evidence.requests,
      f.evidence.clientErrors,
      f.evidence.notFound,
      f.rule === "burst"
        ? `${f.evidence.rateMean.toFixed(1)}±${f.evidence.rateSd.toFixed(1)}/min`
        : `${(f.evidence.scanShareMean * 100).toFixed(1)}% 4xx`,
      f.rule === "burst" ? f.evidence.threshold.toFixed(0) : `${(f.evidence.threshold * 100).toFixed(1)}%`,
      f.blocked ? `blocked until ${new Date(f.blockedUntil!).toISOString()}` : f.allowListed ? "allow-listed" : "flagged",
    ]),
  );
}

export const protectionCommands: Command[] = [
  {
    name: "protection policy",
    usage: "protection policy [--set JSON | --reset]",
    summary: "show the anomaly policy; --set replaces the run-time override (e.g. '{\"block\":true}'), --reset clears it",
    options: { set: { type: "string" }, reset: { type: "boolean" } },
    async run({ api, options, print }) {
      if (options.set !== undefined && options.reset) throw new UsageError("give --set or --reset, not both");
      let info: PolicyInfo;
      if (options.reset) info = await api.protection().setPolicy({ policy: {} });
      else if (options.set !== undefined) {
        let policy: Partial<AnomalyPolicy>;
        try {
          policy = JSON.parse(options.set as string) as Partial<AnomalyPolicy>;
        } catch {
          throw new UsageError(`--set must be a JSON object, got ${options.set as string}`);
        }
        info = await api.protection().setPolicy({ policy });
      } else info = await api.protection().policy();
      print(info, renderPolicy);
      return 0;
    },
  },
  {
    name: "protection lists",
    usage: "protection lists",
    summary: "show the allow list and the deny list",
    options: {},
    async run({ api, print }) {
      const [allow, deny] = await Promise.all([api.protection().allowList(), api.protection().denyList()]);
      print({ allow: allow.entries, deny: deny.entries }, (lists) => `${renderAllow(lists.allow)}\n\n${renderDeny(lists.deny)}`);
      return 0;
    },
  },
  {
    name: "protection allow",
    usage: "protection allow CIDR [--note TEXT]",
    summary: "never block clients in CIDR (they are still flagged)",
    options: { note: { type: "string" } },
    async run({ api, positionals, options, print }) {
      const entry = await api
        .protection()
        .allow({ cidr: cidrOf(positionals), ...(options.note === undefined ? {} : { note: options.note as string }) });
      print(entry, (e) => `allowed ${e.cidr}${e.note === undefined ? "" : `  (${e.note})`}`);
      return 0;
    },
  },
  {
    name: "protection unallow",
    usage: "protection unallow CIDR",
    summary: "remove a range from the allow list",
    options: {},
    async run({ api, positionals, print }) {
      const result = await api.protection().unallow({ cidr: cidrOf(positionals) });
      print(result, (r) => (r.removed ? "removed" : "not on the allow list"));
      return 0;
    },
  },
  {
    name: "protection deny",
    usage: "protection deny CIDR --reason TEXT [--for DURATION]",
    summary: "refuse clients in CIDR at Gateway.authorize (403 IP_DENIED), for a while or until removed",
    options: { reason: { type: "string" }, for: { type: "string" } },
    async run({ api, positionals, options, print }) {
      if (options.reason === undefined) throw new UsageError("give --reason");
      const untilMs = options.for === undefined ? undefined : Date.now() + parseDuration(options.for as string);
      const entry = await api
        .protection()
        .deny({ cidr: cidrOf(positionals), reason: options.reason as string, ...(untilMs === undefined ? {} : { untilMs }) });
      print(entry, (e) => `denied ${e.cidr} ${e.until === undefined ? "until removed" : `until ${when(e.until)}`}: ${e.reason}`);
      return 0;
    },
  },
  {
    name: "protection undeny",
    usage: "protection undeny CIDR",
    summary: "remove a range from the deny list",
    options: {},
    async run({ api, positionals, print }) {
      const result = await api.protection().undeny({ cidr: cidrOf(positionals) });
      print(result, (r) => (r.removed ? "removed" : "not on the deny list"));
      return 0;
    },
  },
  {
    name: "protection flagged",
    usage: "protection flagged [--range 1h|24h|7d|30d] [--limit N] [--client ID]",
    summary: "flagged clients, newest first, with the evidence and what was done",
    options: { range: { type: "string" }, limit: { type: "string" }, client: { type: "string" } },
    async run({ api, options, print }) {
      const range = (options.range as string | undefined) ?? "24h";
      if (!RANGES.has(range)) throw new UsageError(`--range is one of ${[...RANGES].join(", ")}`);
      const { flags } = await api.protection().flagged({
        range: range as StatsRange,
        ...(options.limit === undefined ? {} : { limit: parseCount(options.limit as string, "--limit") }),
        ...(options.client === undefined ? {} : { client: options.client as string }),
      });
      print({ flags }, (r) => renderFlags(r.flags));
      return 0;
    },
  },
];
