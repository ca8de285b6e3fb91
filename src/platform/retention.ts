import type { RetentionClass, RetentionSettings } from "../../rpc/retention";
import { ServiceError } from "./errors";
import { DAY_MS, HOUR_MS } from "../path-stats/buckets";
import { parseInput } from "./schemas";
import { type DataClass, retentionInputSchema } from "./retention-schemas";
import { type DurationMessages, parseNamedDurations } from "./durations";
import { BASELINE_IDLE_RESET_MS } from "../operations/protection/detector";
import { loadMetricsConfig, type MetricsVars } from "../operations/metrics/config";
import { loadPathConfig, type PathStatsVars } from "../path-stats/config";

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
/** The limiter's per-minute check counts, read by `denial_rate` alert rules (windows up to a day). */
export const CHECK_COUNT_RETENTION_MS = 25 * HOUR_MS;
/** Resolved alerts with nothing left to deliver: kept this long, and at most this many. */
export const ALERT_RETENTION_MS = 30 * DAY_MS;
export const KEEP_ALERTS = 10_000;
/** The protection flag log: kept this long, and at most this many. */
export const FLAG_RETENTION_MS = 30 * DAY_MS;
export const MAX_FLAGS = 10_000;
/** Adaptive limits' level-change history: kept this long, and at most this many. */
export const CHANGES_TTL_MS = 90 * DAY_MS;
export const KEEP_CHANGES = 10_000;

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
export function retentionSettings(vars: RetentionVars & PathStatsVars & MetricsVars, input: unknown): RetentionSettings {
  const { dataClass } = parseInput(retentionInputSchema, input === undefined ? {} : input, "retention input");
  const data = loadDataRetention(vars);
  const paths = loadPathConfig(vars).retention;
  const metrics = loadMetricsConfig(vars).retention;
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
    { dataClass: "metrics.minutes", keptMs: metrics.minutes, setting: "METRICS_RETENTION.minutes", appliedBy: "MetricsDO compaction alarm", note: "minute rollups of every method's calls, codes, latency and rows" },
    { dataClass: "metrics.hours", keptMs: metrics.hours, setting: "METRICS_RETENTION.hours", appliedBy: "MetricsDO compaction alarm", note: "hour rollups" },
    { dataClass: "metrics.days", keptMs: metrics.days, setting: "METRICS_RETENTION.days", appliedBy: "MetricsDO compaction alarm", note: "day rollups" },
    { dataClass: "limiter.checkCounts", keptMs: CHECK_COUNT_RETENTION_MS, setting: null, appliedBy: "limiter expire-state and prune-replays alarms", note: "allowed and denied checks per minute, read by denial_rate alert rules" },
    { dataClass: "alerts.history", keptMs: ALERT_RETENTION_MS, setting: null, appliedBy: "AlertsDO daily prune alarm", note: `resolved, delivered alerts; at most ${KEEP_ALERTS.toLocaleString("en-US")}; open or undelivered ones stay until resolved and delivered` },
    { dataClass: "protection.flags", keptMs: FLAG_RETENTION_MS, setting: null, appliedBy: "ProtectionDO daily prune-flags alarm", note: `the anomaly flag log, at most ${MAX_FLAGS.toLocaleString("en-US")} flags` },
    { dataClass: "protection.baselines", keptMs: BASELINE_IDLE_RESET_MS, setting: null, appliedBy: "collector prune-clients alarm, daily", note: "a client's rate and error-mix baseline, after its last hit (it would start from the priors again anyway)" },
    { dataClass: "adaptive.history", keptMs: CHANGES_TTL_MS, setting: null, appliedBy: "AdaptiveLimitsDO, whenever it records a level change", note: `adaptive level changes, at most the newest ${KEEP_CHANGES.toLocaleString("en-US")}` },
  ];
  return { classes: dataClass === undefined ? classes : classes.filter((c) => c.dataClass === dataClass) };
}
