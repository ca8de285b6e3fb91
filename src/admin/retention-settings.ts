import type { RetentionClass, RetentionSettings } from "../../rpc/retention";
import { BASELINE_IDLE_RESET_MS } from "../operations/protection/detector";
import { loadMetricsConfig, type MetricsVars } from "../platform/metering/config";
import { loadPathConfig, type PathStatsVars } from "../path-stats/config";
import {
  ALERT_RETENTION_MS,
  CHANGES_TTL_MS,
  CHECK_COUNT_RETENTION_MS,
  FLAG_RETENTION_MS,
  KEEP_ALERTS,
  KEEP_CHANGES,
  loadDataRetention,
  MAX_FLAGS,
  type RetentionVars,
  SHADOW_COUNT_TTL_MS,
} from "../platform/retention";
import { parseInput } from "../platform/schemas";
import { type DataClass, retentionInputSchema } from "./retention-schemas";

/**
 * The effective retention of every data class, for `Admin.retention()`: it reads the settings of
 * every capability, so it lives here and not in platform/. Reads every retention variable, so a
 * misconfigured one fails here too (`INTERNAL`, logged), as the calls that need it would.
 */
export function retentionSettings(vars: RetentionVars & PathStatsVars & MetricsVars, input: unknown): RetentionSettings {
  const { dataClass } = parseInput(retentionInputSchema, input === undefined ? {} : input, "retention input");
  const data = loadDataRetention(vars);
  const paths = loadPathConfig(vars).retention;
  const metrics = loadMetricsConfig(vars).retention;
  const classes: (RetentionClass & { dataClass: DataClass })[] = [
    {
      dataClass: "limiter.state",
      keptMs: null,
      setting: null,
      appliedBy: "rule state and blocks: the subject's next write (read as absent once expired); leases: the expire-leases alarm",
      note: "rule state, lease slots and blocks: until the window, bucket, lease or block no longer matters (plus 60 s)",
    },
    {
      dataClass: "limiter.shadowCounts",
      keptMs: SHADOW_COUNT_TTL_MS,
      setting: null,
      appliedBy: "the subject's next write (read as 0 once expired)",
      note: "a shadow rule's would-have-denied count, after its last denial",
    },
    {
      dataClass: "limiter.idempotency",
      keptMs: data.limiterIdempotency,
      setting: "RETENTION.limiterIdempotency",
      appliedBy: "limiter prune-replays alarm, 1,000 rows per run",
      note: "check and refund replays; a retry within the window replays, after it is a new call",
    },
    {
      dataClass: "ledger.entries",
      keptMs: null,
      setting: null,
      appliedBy: "never deleted",
      note: "kept forever: the hash chain, audits, balances at a past time and restores need every entry",
    },
    {
      dataClass: "ledger.idempotency",
      keptMs: data.ledgerIdempotency,
      setting: "RETENTION.ledgerIdempotency",
      appliedBy: "ledger prune alarm, 1,000 rows per run",
      note:
        "keyed writes (grant, debit, reserve, commit, void, refund, charge); " +
        "a retry within the window answers its first result, after it (once pruned) is a new call",
    },
    {
      dataClass: "ledger.keyRuleState",
      keptMs: null,
      setting: null,
      appliedBy: "ledger prune alarm, 1,000 rows per run",
      note: "an API key's rate-rule state: until its window or bucket no longer matters",
    },
    {
      dataClass: "ledger.keySpendDays",
      keptMs: null,
      setting: null,
      appliedBy: "the key family's first spend of a later day replaces it",
      note: "a key family's spend in the latest day it spent (caps read only the current day): one row per family",
    },
    {
      dataClass: "ledger.keySpendMonths",
      keptMs: null,
      setting: null,
      appliedBy: "the key family's first spend of a later month replaces it",
      note: "a key family's spend in the latest month it spent, in the same row",
    },
    {
      dataClass: "ledger.auditReports",
      keptMs: null,
      setting: null,
      appliedBy: "each audit",
      note: "the latest 100 self-audit reports per account",
    },
    {
      dataClass: "paths.minutes",
      keptMs: paths.minutes,
      setting: "PATH_RETENTION.minutes",
      appliedBy: "aggregator compaction alarm",
      note: "minute rollups and shard partials",
    },
    {
      dataClass: "paths.hours",
      keptMs: paths.hours,
      setting: "PATH_RETENTION.hours",
      appliedBy: "aggregator compaction alarm",
      note: "hour rollups",
    },
    {
      dataClass: "paths.days",
      keptMs: paths.days,
      setting: "PATH_RETENTION.days",
      appliedBy: "aggregator compaction alarm",
      note: "day rollups and route templates unseen that long",
    },
    {
      dataClass: "paths.clients",
      keptMs: paths.clients,
      setting: "PATH_RETENTION.clients",
      appliedBy: "collector prune-clients alarm, daily",
      note: "per-client path counters",
    },
    {
      dataClass: "metrics.minutes",
      keptMs: metrics.minutes,
      setting: "METRICS_RETENTION.minutes",
      appliedBy: "MetricsDO compaction alarm",
      note: "minute rollups of every method's calls, codes, latency and rows",
    },
    {
      dataClass: "metrics.hours",
      keptMs: metrics.hours,
      setting: "METRICS_RETENTION.hours",
      appliedBy: "MetricsDO compaction alarm",
      note: "hour rollups",
    },
    {
      dataClass: "metrics.days",
      keptMs: metrics.days,
      setting: "METRICS_RETENTION.days",
      appliedBy: "MetricsDO compaction alarm",
      note: "day rollups",
    },
    {
      dataClass: "limiter.checkCounts",
      keptMs: CHECK_COUNT_RETENTION_MS,
      setting: null,
      appliedBy: "the limiter's writes (at most once a minute) and its prune-replays alarm (read as absent once expired)",
      note: "allowed and denied checks per minute, read by denial_rate alert rules",
    },
    {
      dataClass: "alerts.history",
      keptMs: ALERT_RETENTION_MS,
      setting: null,
      appliedBy: "AlertsDO daily prune alarm",
      note:
        `resolved, delivered alerts; at most ${KEEP_ALERTS.toLocaleString("en-US")}; ` +
        "open or undelivered ones stay until resolved and delivered",
    },
    {
      dataClass: "protection.flags",
      keptMs: FLAG_RETENTION_MS,
      setting: null,
      appliedBy: "ProtectionDO daily prune-flags alarm",
      note: `the anomaly flag log, at most ${MAX_FLAGS.toLocaleString("en-US")} flags`,
    },
    {
      dataClass: "protection.baselines",
      keptMs: BASELINE_IDLE_RESET_MS,
      setting: null,
      appliedBy: "collector prune-clients alarm, daily",
      note: "a client's rate and error-mix baseline, after its last hit (it would start from the priors again anyway)",
    },
    {
      dataClass: "adaptive.history",
      keptMs: CHANGES_TTL_MS,
      setting: null,
      appliedBy: "AdaptiveLimitsDO, whenever it records a level change",
      note: `adaptive level changes, at most the newest ${KEEP_CHANGES.toLocaleString("en-US")}`,
    },
  ];
  return { classes: dataClass === undefined ? classes : classes.filter((c) => c.dataClass === dataClass) };
}
