/**
 * The tollgate Worker as the bench runs it: everything src/index.ts exports, unchanged,
 * plus bench-only classes that are never shipped (the ceiling's entrypoint, the bench
 * subclass of RateLimiterDO, the metered subclasses of the other objects and the cost
 * section's entrypoint, and the seeds' sample limiter as a baseline). The cost meter is
 * imported first: it sets the isolate's clock before anything runs.
 */
import "./cost-meter";
export * from "../../src/index";
export { default } from "../../src/index";
export { BenchAggregatorDO } from "./bench-aggregator-do";
export { BenchCeiling } from "./bench-ceiling";
export { BenchCost } from "./bench-cost";
export { BenchRateLimiterDO } from "./bench-rate-limiter-do";
export { SeedLimiterDO } from "./seed-limiter-do";
export {
  MeteredAdaptiveLimitsDO,
  MeteredAggregatorDO,
  MeteredAlertsDO,
  MeteredCreditLedgerDO,
  MeteredMaintenanceDO,
  MeteredMetricsDO,
  MeteredPathCollectorDO,
  MeteredProtectionDO,
} from "./metered-objects";
