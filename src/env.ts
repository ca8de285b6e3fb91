import type { AdaptiveLimitsDO } from "./objects/adaptive-limits-do";
import type { AlertNotification } from "../rpc/alerts";
import type { AggregatorDO } from "./objects/aggregator-do";
import type { AlertsDO } from "./objects/alerts-do";
import type { MaintenanceDO } from "./objects/maintenance-do";
import type { CreditLedgerDO } from "./objects/credit-ledger-do";
import type { PathCollectorDO } from "./objects/path-collector-do";
import type { RateLimiterDO } from "./objects/rate-limiter-do";
import type { PathStatsVars } from "./config/path-stats";
import type { ProtectionDO } from "./objects/protection-do";
import type { ProtectionVars } from "./config/protection";
import type { RetentionVars } from "./config/retention";
import type { MetricsVars } from "./config/metrics";
import type { MetricsDO } from "./objects/metrics-do";

/** The bindings and configuration of the tollgate Worker (see wrangler.toml). */
export interface Env extends PathStatsVars, ProtectionVars, RetentionVars, MetricsVars {
  RATE_LIMITER: DurableObjectNamespace<RateLimiterDO>;
  CREDIT_LEDGER: DurableObjectNamespace<CreditLedgerDO>;
  PATH_COLLECTOR: DurableObjectNamespace<PathCollectorDO>;
  AGGREGATOR: DurableObjectNamespace<AggregatorDO>;
  /** One instance: scheduled backups. */
  MAINTENANCE: DurableObjectNamespace<MaintenanceDO>;
  /** One instance: adaptive limits (docs/adaptive-limits.md). */
  ADAPTIVE_LIMITS: DurableObjectNamespace<AdaptiveLimitsDO>;
  /** One instance: allow and deny lists, the run-time anomaly policy, the flag log (docs/protection.md). */
  PROTECTION: DurableObjectNamespace<ProtectionDO>;
  /** Metrics rollup shards `metrics:0..METRICS_SHARDS-1` (docs/metrics.md). */
  METRICS: DurableObjectNamespace<MetricsDO>;
  /** One instance: alert rules, their state, the alert history and the outbox (docs/alerts.md). */
  ALERTS: DurableObjectNamespace<AlertsDO>;
  /** Service binding to a sibling Worker's entrypoint that receives alerts. Without it alerts stay pending. */
  ALERT_SINK?: { notify(alert: AlertNotification): Promise<unknown> };
  /** JSON: policy name -> Rule[]. */
  RATE_LIMIT_POLICIES?: string;
  /** JSON: the default credit price book, Price[] (credits per 1,000,000 units). */
  CREDIT_PRICES?: string;
  /** The RATE_LIMIT_POLICIES entry `Gateway.authorize` applies to every client IP; unset or empty: none. */
  GATEWAY_IP_POLICY?: string;
  /** R2 bucket for `Admin.backup()` dumps (see docs/operations.md). Without it backup and restore fail. */
  BACKUPS?: R2Bucket;
  /** Optional: the legacy KV limiter's namespace, read by `Admin.importFromKv()`. */
  LEGACY_KV?: KVNamespace;
  /** Secret: authenticates capnweb callers as admin. Unset means no admin access at all. */
  TOLLGATE_ADMIN_TOKEN?: string;
  /** The static assets in public/ (wrangler.toml [assets]): the dashboard. */
  ASSETS?: Fetcher;
}
