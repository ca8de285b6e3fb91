/**
 * The tollgate Worker as the bench runs it: everything src/index.ts exports, unchanged,
 * plus bench-only classes that are never shipped (the ceiling's entrypoint, the bench
 * subclass of RateLimiterDO, and the seeds' sample limiter as a baseline).
 */
export * from "../../src/index";
export { default } from "../../src/index";
export { BenchAggregatorDO } from "./bench-aggregator-do";
export { BenchCeiling } from "./bench-ceiling";
export { BenchRateLimiterDO } from "./bench-rate-limiter-do";
export { SeedLimiterDO } from "./seed-limiter-do";
