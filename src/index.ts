/**
 * tollgate: exact, cheap per-request state for API gateways.
 *
 * Entrypoints (each a capability a sibling Worker binds to): `Gateway` (default; also
 * serves capnweb at /rpc), `RateLimits`, `Credits`, `PathStats`, `Admin`.
 * Durable Objects: `RateLimiterDO`, `CreditLedgerDO`, `PathCollectorDO`, `AggregatorDO` (the data),
 * `MaintenanceDO` (scheduled backups), `AdaptiveLimitsDO` (adaptive limits), `ProtectionDO` (allow
 * and deny lists, anomaly flags), `MetricsDO` (metrics rollup shards), `AlertsDO` (alert rules and their delivery).
 */
import "./operations/metrics/entrypoints";
export { Gateway as default } from "./gateway/entrypoint";
export { RateLimits } from "./rate-limits/entrypoint";
export { Credits } from "./credits/entrypoint";
export { PathStats } from "./path-stats/entrypoint";
export { Admin } from "./admin/entrypoint";
export { RateLimiterDO } from "./rate-limits/limiter-do";
export { CreditLedgerDO } from "./credits/ledger-do";
export { PathCollectorDO } from "./path-stats/collector-do";
export { AggregatorDO } from "./path-stats/aggregator-do";
export { MaintenanceDO } from "./operations/backup/maintenance-do";
export { AdaptiveLimitsDO } from "./operations/adaptive/adaptive-limits-do";
export { ProtectionDO } from "./operations/protection/protection-do";
export { MetricsDO } from "./operations/metrics/metrics-do";
export { AlertsDO } from "./operations/alerts/alerts-do";
