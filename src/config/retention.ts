import type { RetentionClass, RetentionSettings } from "../../rpc/retention";
import { ServiceError } from "../errors";
import { DAY_MS, HOUR_MS } from "../paths/buckets";
import { parseInput } from "../schemas/common";
import { type DataClass, retentionInputSchema } from "../schemas/retention";
import { type DurationMessages, parseNamedDurations } from "./durations";
import { loadPathConfig, type PathStatsVars } from "./path-stats";

/** The variable that sets the configurable idempotency windows (wrangler.toml `[vars]`). */
export interface RetentionVars {
  RETENTION?: string;
}

/** How long each configurable data class outside path statistics is kept (ms). */
export interface DataRetention {
  /** Idempotency records of the limiter's `check` and `refund`: a retry within it replays. */
  limiterIdempotency: number;
  /** Idempotency keys of the ledger's keyed writes: a retry within it answers its first result. */
  ledgerIdempotency: number;
}

export const DEFAULT_DATA_RETENTION: DataRetention = { limiterIdempotency: 24 * HOUR_MS, ledgerIdempotency: 35 * DAY_MS };

/**
 * Bounds of an idempotency window. At least an hour: callers retry after timeouts, queues and
 * deploys, often minutes later, and a window shorter than the slowest retry turns that retry
 * into a second charge. At most 400 days: a record is a row per call, so storage grows with
 * traffic times window, and past a year a repeated key is a new request by any sensible
 * reading (the ledger's monthly spend counters are kept 400 days for the same reason).
 */
export const IDEMPOTENCY_WINDOW_BOUNDS = { min: HOUR_MS, max: 400 * DAY_MS } as const;

/** Past days' per-key spend counters (caps read only the current day and month). */
export const KEY_SPEND_DAYS_KEPT_MS = 35 * DAY_MS;
/** Past months' per-key spend counters. */
export const KEY_SPEND_MONTHS_KEPT_MS = 400 * DAY_MS;
/** A shadow rule's would-have-denied count lives this long after its last denial. */
export const SHADOW_COUNT_TTL_MS = 24 * HOUR_MS;

const cache = new Map<string, DataRetention>();

/**
 * Reads and checks `RETENTION` once per isolate, e.g. `{ "limiterIdempotency": "48h",
 * "ledgerIdempotency": "90d" }` (durations as in `PATH_RETENTION`; a missing class keeps its
 * default). A malformed value is an operator error: `INTERNAL` to callers, the reason in the log.
 */
export function loadDataRetention(vars: RetentionVars): DataRetention {
  const raw = vars.RETENTION;
  if (raw === undefined || raw.trim() === "") return DEFAULT_DATA_RETENTION;
  const cached = cache.get(raw);
  if (cached) return cached;
  try {
    const retention = parseRetention(raw);
    cache.set(raw, retention);
    return retention;
  } catch (error) {
    console.error(`RETENTION is invalid: ${(error as Error).message}`);
    throw new ServiceError("INTERNAL", "retention is misconfigured");
  }
}

/** RETENTION's own wording: its log line already names the variable, so entries go by name. */
const DATA_CLASS_MESSAGES: DurationMessages = {
  unknownName: (name, known) => `unknown data class "${name}" (known: ${known.join(", ")})`,
  notAString: (name) => `${name} must be a duration string like "48h" or "90d"`,
  outOfBounds: (name, { min, max = min }) => `${name} must be between ${min / HOUR_MS}h and ${max / DAY_MS}d`,
};

function parseRetention(raw: string): DataRetention {
  return parseNamedDurations(raw, {
    variable: "RETENTION",
    defaults: DEFAULT_DATA_RETENTION,
    bounds: () => IDEMPOTENCY_WINDOW_BOUNDS,
    messages: DATA_CLASS_MESSAGES,
  });
}

/**
 * The effective retention of every data class, for `Admin.retention()`. Reads both variables,
 * so a misconfigured one fails here too (`INTERNAL`, logged), as the calls that need it would.
 */
export function retentionSettings(vars: RetentionVars & PathStatsVars, input: unknown): RetentionSettings {
  const { dataClass } = parseInput(retentionInputSchema, input === undefined ? {} : input, "retention input");
  const data = loadDataRetention(vars);
  const paths = loadPathConfig(vars).retention;
  const classes: (RetentionClass & { dataClass: DataClass })[] = [
    { dataClass: "limiter.state", keptMs: null, setting: null, appliedBy: "limiter expire-state and expire-leases alarms", note: "rule state, lease slots and blocks: until the window, bucket, lease or block no longer matters (plus 60 s)" },
    { dataClass: "limiter.shadowCounts", keptMs: SHADOW_COUNT_TTL_MS, setting: null, appliedBy: "limiter expire-state alarm", note: "a shadow rule's would-have-denied count, after its last denial" },
    { dataClass: "limiter.idempotency", keptMs: data.limiterIdempotency, setting: "RETENTION.limiterIdempotency", appliedBy: "limiter prune-replays alarm, 1,000 rows per run", note: "check and refund replays; a retry within the window replays, after it is a new call" },
    { dataClass: "ledger.entries", keptMs: null, setting: null, appliedBy: "never deleted", note: "kept forever: the hash chain, audits, balances at a past time and restores need every entry" },
    { dataClass: "ledger.idempotency", keptMs: data.ledgerIdempotency, setting: "RETENTION.ledgerIdempotency", appliedBy: "ledger prune alarm, 1,000 rows per run", note: "keyed writes (grant, debit, reserve, commit, void, refund, charge); a retry within the window answers its first result, after it (once pruned) is a new call" },
    { dataClass: "ledger.keyRuleState", keptMs: null, setting: null, appliedBy: "ledger prune alarm, 1,000 rows per run", note: "an API key's rate-rule state: until its window or bucket no longer matters" },
    { dataClass: "ledger.keySpendDays", keptMs: KEY_SPEND_DAYS_KEPT_MS, setting: null, appliedBy: "ledger prune alarm", note: "past days' per-key spend counters (caps read only the current day)" },
    { dataClass: "ledger.keySpendMonths", keptMs: KEY_SPEND_MONTHS_KEPT_MS, setting: null, appliedBy: "ledger prune alarm", note: "past months' per-key spend counters" },
    { dataClass: "ledger.auditReports", keptMs: null, setting: null, appliedBy: "each audit", note: "the latest 100 self-audit reports per account" },
    { dataClass: "paths.minutes", keptMs: paths.minutes, setting: "PATH_RETENTION.minutes", appliedBy: "aggregator compaction alarm", note: "minute rollups and shard partials" },
    { dataClass: "paths.hours", keptMs: paths.hours, setting: "PATH_RETENTION.hours", appliedBy: "aggregator compaction alarm", note: "hour rollups" },
    { dataClass: "paths.days", keptMs: paths.days, setting: "PATH_RETENTION.days", appliedBy: "aggregator compaction alarm", note: "day rollups and route templates unseen that long" },
    { dataClass: "paths.clients", keptMs: paths.clients, setting: "PATH_RETENTION.clients", appliedBy: "collector prune-clients alarm, daily", note: "per-client path counters" },
  ];
  return { classes: dataClass === undefined ? classes : classes.filter((c) => c.dataClass === dataClass) };
}
