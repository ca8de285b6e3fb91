import type { AlertSinkApi } from "../rpc/alerts";
import type { CreditsApi } from "../rpc/credits";
import type { GatewayApi } from "../rpc/gateway";
import type { PathStatsApi } from "../rpc/path-stats";
import type { RateLimitsApi } from "../rpc/rate-limits";
import type { MigrationProbeDO } from "./fixtures/migration-probe-do";
import type { SchedulerProbeDO } from "./fixtures/scheduler-probe-do";
import type { TestRateLimiterDO } from "./fixtures/test-rate-limiter-do";
import type { TestCreditLedgerDO } from "./fixtures/test-credit-ledger-do";
import type { Admin } from "../src/admin/entrypoint";
import type { TestAggregatorDO, TestPathCollectorDO } from "./fixtures/test-path-objects";
import type { TestMaintenanceDO } from "./fixtures/test-maintenance-do";
import type { TestAdaptiveLimitsDO } from "./fixtures/test-adaptive-limits-do";
import type { TestProtectionDO } from "./fixtures/test-protection-do";
import type { TestMetricsDO, TestMetricsProbeDO } from "./fixtures/test-metrics-objects";
import type { TestAlertsDO } from "./fixtures/test-alerts-do";
import type { AlertSinkLogDO } from "./fixtures/test-alert-sink";

declare global {
  namespace Cloudflare {
    /** What the test pool binds beyond wrangler.toml (vitest.config.ts); merged into the generated Env. */
    interface Env {
      /** The legacy KV limiter's namespace, for Admin.importFromKv. */
      LEGACY_KV: KVNamespace;
      MIGRATION_PROBE: DurableObjectNamespace<MigrationProbeDO>;
      SCHEDULER_PROBE: DurableObjectNamespace<SchedulerProbeDO>;
      TEST_RATE_LIMITER: DurableObjectNamespace<TestRateLimiterDO>;
      TEST_CREDIT_LEDGER: DurableObjectNamespace<TestCreditLedgerDO>;
      /** Self binding to the `RateLimits` entrypoint, as a sibling Worker would declare it. */
      LIMITS: Service & RateLimitsApi;
      CREDITS: Service & CreditsApi;
      /** Self binding to the `Admin` entrypoint. */
      ADMIN: Service<Admin>;
      PATHS: Service & PathStatsApi;
      /** Self binding to the default entrypoint `Gateway`. */
      GATEWAY: Service & GatewayApi;
      /** In tests these bindings serve the test subclasses (see vitest.config.ts). */
      CREDIT_LEDGER: DurableObjectNamespace<TestCreditLedgerDO>;
      PATH_COLLECTOR: DurableObjectNamespace<TestPathCollectorDO>;
      AGGREGATOR: DurableObjectNamespace<TestAggregatorDO>;
      MAINTENANCE: DurableObjectNamespace<TestMaintenanceDO>;
      ADAPTIVE_LIMITS: DurableObjectNamespace<TestAdaptiveLimitsDO>;
      PROTECTION: DurableObjectNamespace<TestProtectionDO>;
      METRICS: DurableObjectNamespace<TestMetricsDO>;
      /** A metered test object with a known SQL workload (test/operations/metrics/metrics.test.ts). */
      METRICS_PROBE: DurableObjectNamespace<TestMetricsProbeDO>;
      ALERTS: DurableObjectNamespace<TestAlertsDO>;
      /** What the test alert sink received (test/fixtures/test-alert-sink.ts). */
      SINK_LOG: DurableObjectNamespace<AlertSinkLogDO>;
      /** The example gateway's `AlertSink` entrypoint. */
      EXAMPLE_ALERT_SINK: Service & AlertSinkApi;
      /** The example gateway, running as an auxiliary Worker with its own LIMITS binding. */
      EXAMPLE_GATEWAY: Fetcher;
      /** Set from the shell's CHAOS_SEED to replay a chaos run; empty for a random seed. */
      CHAOS_SEED: string;
      /** Set from the shell's FUZZ_SEED to replay a run of test/fuzz-entrypoints.test.ts; empty for a random seed. */
      FUZZ_SEED: string;
    }
  }
}
