/**
 * tollgate: exact, cheap per-request state for API gateways.
 *
 * Entrypoints (each a capability a sibling Worker binds to): `Gateway` (default; also
 * serves capnweb at /rpc), `RateLimits`, `Credits`, `PathStats`, `Admin`.
 * Durable Objects: `RateLimiterDO`, `CreditLedgerDO`, `PathCollectorDO`, `AggregatorDO`,
 * `MaintenanceDO` (scheduled backups), `AdaptiveLimitsDO` (adaptive limits).
 * `MaintenanceDO` (scheduled backups), `MetricsDO` (metrics rollup shards).
 * `MaintenanceDO` (scheduled backups), `AlertsDO` (alert rules and their delivery).
 */
import "./metrics/entrypoints";
export { Gateway as default } from "./entrypoints/gateway";
export { RateLimits } from "./entrypoints/rate-limits";
export { Credits } from "./entrypoints/credits";
export { PathStats } from "./entrypoints/path-stats";
export { Admin } from "./entrypoints/admin";
export { RateLimiterDO } from "./objects/rate-limiter-do";
export { CreditLedgerDO } from "./objects/credit-ledger-do";
export { PathCollectorDO } from "./objects/path-collector-do";
export { AggregatorDO } from "./objects/aggregator-do";
export { MaintenanceDO } from "./objects/maintenance-do";
export { AdaptiveLimitsDO } from "./objects/adaptive-limits-do";
export { ProtectionDO } from "./objects/protection-do";
export { MetricsDO } from "./objects/metrics-do";
export { AlertsDO } from "./objects/alerts-do";
