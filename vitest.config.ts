import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { build } from "esbuild";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { defineConfig } from "vitest/config";

import { TEST_ADMIN_TOKEN } from "./test/fixtures/constants.ts";

/**
 * tollgate runs inside the pool's test runner Worker, whose name the pool derives from the
 * project name ("workers"). The main Worker's own binding may say "tollgate" (the pool maps its
 * own name to itself); an auxiliary Worker has to name the runner.
 */
const RUNNER_WORKER = "vitest-plugin-runner-workers";

/** Bundles the example gateway so it can run as an auxiliary Worker beside tollgate. */
async function bundleExampleGateway(): Promise<string> {
  const outdir = join(import.meta.dirname, "node_modules", ".cache", "tollgate-test");
  mkdirSync(outdir, { recursive: true });
  const outfile = join(outdir, "example-gateway.mjs");
  await build({
    entryPoints: [join(import.meta.dirname, "examples/gateway/src/index.ts")],
    bundle: true,
    format: "esm",
    target: "es2022",
    platform: "neutral",
    outfile,
    logLevel: "warning",
    // The AlertSink entrypoint imports WorkerEntrypoint; workerd provides the module.
    external: ["cloudflare:*"],
  });
  return outfile;
}

export default defineConfig({
  test: {
    projects: [
      {
        // Everything that runs inside workerd: objects, entrypoints, capnweb, the example gateway.
        plugins: [
          cloudflareTest(async () => ({
            main: "./test/fixtures/worker.ts",
            wrangler: { configPath: "./wrangler.toml" },
            // Re-exported through test/fixtures/worker.ts, so the pool cannot see them by itself.
            additionalExports: {
              RateLimits: "WorkerEntrypoint",
              Credits: "WorkerEntrypoint",
              PathStats: "WorkerEntrypoint",
              Admin: "WorkerEntrypoint",
              Gateway: "WorkerEntrypoint",
              TestAlertSink: "WorkerEntrypoint",
            },
            miniflare: {
              // CHAOS_SEED and FUZZ_SEED replay a failed chaos or fuzz run (the tests print their seeds).
              // 16 collector shards instead of 64 keep the path tests quick; the routing is the same.
              // PROTECTION_CACHE_MS 0: a list or policy change applies to the very next call (test/operations/protection/protection.test.ts).
              bindings: {
                TOLLGATE_ADMIN_TOKEN: TEST_ADMIN_TOKEN,
                CHAOS_SEED: process.env.CHAOS_SEED ?? "",
                FUZZ_SEED: process.env.FUZZ_SEED ?? "",
                PATH_SHARDS: "16",
                PROTECTION_CACHE_MS: "0",
                // Call counts wait 25 ms, not 2 s: an eviction waits for them, and the chaos test evicts often.
                METRICS_BUFFER_MS: "25",
              },
              // The legacy KV limiter's namespace, for Admin.importFromKv (not in wrangler.toml: it has no id to deploy with).
              kvNamespaces: ["LEGACY_KV"],
              durableObjects: {
                MIGRATION_PROBE: { className: "MigrationProbeDO", useSQLite: true },
                SCHEDULER_PROBE: { className: "SchedulerProbeDO", useSQLite: true },
                TEST_RATE_LIMITER: { className: "TestRateLimiterDO", useSQLite: true },
                TEST_CREDIT_LEDGER: { className: "TestCreditLedgerDO", useSQLite: true },
                // The shipped binding on the test subclass too (same code, plus a clock a test may pin),
                // so the entrypoint fuzz can stop real time from expiring its holds mid-case.
                CREDIT_LEDGER: { className: "TestCreditLedgerDO", useSQLite: true },
                // Path statistics run on their test subclasses (a pinnable clock, runAlarmAt), so the
                // PathStats entrypoint and the tests reach the very objects the tests drive.
                PATH_COLLECTOR: { className: "TestPathCollectorDO", useSQLite: true },
                AGGREGATOR: { className: "TestAggregatorDO", useSQLite: true },
                MAINTENANCE: { className: "TestMaintenanceDO", useSQLite: true },
                ADAPTIVE_LIMITS: { className: "TestAdaptiveLimitsDO", useSQLite: true },
                PROTECTION: { className: "TestProtectionDO", useSQLite: true },
                // Metrics rollups on their test subclass (pinnable clock, runAlarmAt), and a probe object.
                METRICS: { className: "TestMetricsDO", useSQLite: true },
                METRICS_PROBE: { className: "TestMetricsProbeDO", useSQLite: true },
                // Alerts on their test subclass (driven clock, platform alarm off); the sink's log.
                ALERTS: { className: "TestAlertsDO", useSQLite: true },
                SINK_LOG: { className: "AlertSinkLogDO", useSQLite: true },
              },
              serviceBindings: {
                // The way a sibling Worker binds tollgate: a named entrypoint of the service.
                LIMITS: { name: "tollgate", entrypoint: "RateLimits" },
                CREDITS: { name: "tollgate", entrypoint: "Credits" },
                ADMIN: { name: "tollgate", entrypoint: "Admin" },
                PATHS: { name: "tollgate", entrypoint: "PathStats" },
                GATEWAY: { name: RUNNER_WORKER },
                EXAMPLE_GATEWAY: "example-gateway",
                // A test entrypoint that records every alert (test/fixtures/test-alert-sink.ts).
                ALERT_SINK: { name: RUNNER_WORKER, entrypoint: "TestAlertSink" },
                // The example gateway's own receiver, as tollgate's wrangler.toml binds it for `npm start`.
                EXAMPLE_ALERT_SINK: { name: "example-gateway", entrypoint: "AlertSink" },
              },
              workers: [
                {
                  name: "example-gateway",
                  modules: true,
                  scriptPath: await bundleExampleGateway(),
                  compatibilityDate: "2026-11-17",
                  bindings: { PAID_PREFIX: "/v1/", ESTIMATE: "10" },
                  serviceBindings: {
                    // tollgate's default entrypoint, Gateway (authorize/settle).
                    TOLLGATE: { name: RUNNER_WORKER },
                  },
                },
              ],
            },
          })),
        ],
        test: {
          name: "workers",
          include: ["test/**/*.test.ts"],
          exclude: ["test/node/**", "test/browser/**"],
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
      {
        // The bench harness's own test: Node, starting its own workerd (see bench/harness.test.ts).
        test: { name: "bench", environment: "node", include: ["bench/**/*.test.ts"], testTimeout: 120_000 },
      },
      {
        // Node programs against a real `wrangler dev`: the rpc/ client over HTTP and WebSocket.
        test: {
          name: "node",
          environment: "node",
          include: ["test/node/**/*.test.ts"],
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
      {
        // The dashboard in headless Chromium (/usr/bin/chromium) against a real `wrangler dev`.
        test: {
          name: "browser",
          environment: "node",
          include: ["test/browser/**/*.test.ts"],
          testTimeout: 120_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
