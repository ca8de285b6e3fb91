/**
 * Starts tollgate and the load driver on one workerd process through miniflare's API,
 * loopback only, and watches that process's resident memory.
 */
import { build } from "esbuild";
import { readdirSync, readFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { convertV4MiniflareOptions, Miniflare } from "miniflare";
import { unstable_readConfig } from "wrangler";
import type { LoopBounds, Params } from "./types";

const root = join(import.meta.dirname, "..", "..");

/**
 * The classes the bench binds instead of the shipped ones: the same code, constructed with the
 * cost meter's hooks (bench/workers/metered-objects.ts); RateLimiterDO's also has the ceiling's no-ops.
 */
const CLASS_SUBSTITUTES: Record<string, string> = {
  RateLimiterDO: "BenchRateLimiterDO",
  CreditLedgerDO: "MeteredCreditLedgerDO",
  PathCollectorDO: "MeteredPathCollectorDO",
  AggregatorDO: "MeteredAggregatorDO",
  MaintenanceDO: "MeteredMaintenanceDO",
  AdaptiveLimitsDO: "MeteredAdaptiveLimitsDO",
  ProtectionDO: "MeteredProtectionDO",
  MetricsDO: "MeteredMetricsDO",
  AlertsDO: "MeteredAlertsDO",
};

export interface BenchRuntime {
  /** POSTs one request to the load driver; rejects after `timeoutMs`. */
  post<T>(path: "/run" | "/call", body: { op: string; params: Params } & Partial<LoopBounds>, timeoutMs: number): Promise<T>;
  memory: MemoryWatch;
  workerdVersion: string;
  miniflareVersion: string;
  dispose(): Promise<void>;
}

async function bundle(entry: string, outfile: string): Promise<string> {
  await build({
    entryPoints: [join(import.meta.dirname, "..", "workers", entry)],
    outfile,
    bundle: true,
    format: "esm",
    target: "es2022",
    platform: "neutral",
    conditions: ["workerd", "worker", "browser"],
    mainFields: ["module", "main"],
    external: ["cloudflare:*", "node:*"],
    logLevel: "warning",
  });
  return outfile;
}

export async function startRuntime(): Promise<BenchRuntime> {
  const outdir = join(root, "node_modules", ".cache", "tollgate-bench");
  mkdirSync(outdir, { recursive: true });
  const [tollgateScript, driverScript, seedScript] = await Promise.all([
    bundle("tollgate-bench.ts", join(outdir, "tollgate-bench.mjs")),
    bundle("driver.ts", join(outdir, "driver.mjs")),
    bundle("seed-worker.ts", join(outdir, "seed-worker.mjs")),
  ]);

  // tollgate's own configuration, so the bench follows wrangler.toml (dates, flags, vars, objects).
  const config = unstable_readConfig({ config: join(root, "wrangler.toml") });
  const sqliteClasses = new Set(
    config.migrations.flatMap((migration: { new_sqlite_classes?: string[] }) => migration.new_sqlite_classes ?? []),
  );
  const tollgateObjects: Record<string, { className: string; useSQLite: boolean }> = {};
  for (const binding of config.durable_objects.bindings) {
    tollgateObjects[binding.name] = {
      className: CLASS_SUBSTITUTES[binding.class_name] ?? binding.class_name,
      useSQLite: sqliteClasses.has(binding.class_name),
    };
  }
  tollgateObjects.SEED_LIMITER = { className: "SeedLimiterDO", useSQLite: true };
  tollgateObjects.BENCH_AGGREGATOR = { className: "BenchAggregatorDO", useSQLite: true };
  const compatibility = {
    compatibilityDate: config.compatibility_date ?? "2026-11-17",
    compatibilityFlags: config.compatibility_flags,
  };
  const vars: Record<string, string> = {};
  for (const [name, value] of Object.entries(config.vars)) vars[name] = typeof value === "string" ? value : JSON.stringify(value);
  withBenchGatewayPolicy(vars);

  // miniflare 5 takes a new options shape; the v4 shape (the one wrangler and the vitest
  // pool speak) is converted by miniflare itself.
  const mf = new Miniflare(
    convertV4MiniflareOptions({
      host: "127.0.0.1",
      port: 0,
      ...(process.env.BENCH_INSPECTOR_PORT ? { inspectorPort: Number(process.env.BENCH_INSPECTOR_PORT) } : {}),
      workers: [
        {
          // The first Worker receives dispatchFetch: the load driver, a sibling of tollgate.
          name: "bench-driver",
          modules: true,
          scriptPath: driverScript,
          ...compatibility,
          kvNamespaces: { KV: "bench-kv" },
          serviceBindings: {
            LIMITS: { name: "tollgate", entrypoint: "RateLimits" },
            CREDITS: { name: "tollgate", entrypoint: "Credits" },
            PATH_STATS: { name: "tollgate", entrypoint: "PathStats" },
            CEILING: { name: "tollgate", entrypoint: "BenchCeiling" },
            COST: { name: "tollgate", entrypoint: "BenchCost" },
            GATEWAY: { name: "tollgate" },
          },
          durableObjects: {
            RATE_LIMITER: { className: "BenchRateLimiterDO", scriptName: "tollgate", useSQLite: true },
            SEED_LIMITER: { className: "SeedLimiterDO", scriptName: "tollgate", useSQLite: true },
            BENCH_AGGREGATOR: { className: "BenchAggregatorDO", scriptName: "tollgate", useSQLite: true },
            SEED_PATH_COLLECTOR: { className: "SeedPathCollectorDO", scriptName: "bench-seeds", useSQLite: true },
          },
        },
        {
          name: "tollgate",
          modules: true,
          scriptPath: tollgateScript,
          ...compatibility,
          bindings: vars,
          durableObjects: tollgateObjects,
        },
        {
          // The seeds' per-IP collectors (fan-out baseline): 10,000 objects with a SQLite file
          // each would exhaust this machine's file descriptors, so their storage is in memory,
          // which favours the baseline (no file I/O at all).
          name: "bench-seeds",
          modules: true,
          scriptPath: seedScript,
          ...compatibility,
          unsafeEphemeralDurableObjects: true,
          durableObjects: { SEED_PATH_COLLECTOR: { className: "SeedPathCollectorDO", useSQLite: true } },
        },
      ],
    }),
  );
  await mf.ready;
  const pid = findWorkerdPid();
  const memory = new MemoryWatch(pid);

  const require = createRequire(createRequire(import.meta.url).resolve("miniflare"));
  const workerdVersion = (JSON.parse(readFileSync(require.resolve("workerd/package.json"), "utf8")) as { version: string }).version;
  const miniflareVersion = (
    JSON.parse(readFileSync(join(root, "node_modules", "miniflare", "package.json"), "utf8")) as { version: string }
  ).version;

  return {
    memory,
    workerdVersion,
    miniflareVersion,
    async post<T>(path: string, body: object, timeoutMs: number): Promise<T> {
      const response = await mf.dispatchFetch(`http://bench.local${path}`, {
        method: "POST",
        body: JSON.stringify(body),
        headers: { "content-type": "application/json" },
        signal: AbortSignal.timeout(timeoutMs),
      });
      const json = (await response.json()) as T & { error?: string };
      if (!response.ok) throw new Error(`driver ${path} failed (${response.status}): ${json.error ?? "no detail"}`);
      return json;
    },
    async dispose() {
      memory.stop();
      await mf.dispose();
    },
  };
}

/** The per-IP policy `Gateway.authorize` applies in the bench (see withBenchGatewayPolicy). */
export const BENCH_GATEWAY_IP_POLICY = "bench-per-ip";

/**
 * The shipped `per-ip` policy admits 100 calls a minute per IP, which a measurement passes in
 * a few milliseconds; a denied call is a different (cheaper, then compensating) path. The
 * bench adds a policy with the same rules at a limit no run reaches and points
 * `GATEWAY_IP_POLICY` at it: the same code and algorithm, never a denial.
 */
function withBenchGatewayPolicy(vars: Record<string, string>): void {
  const policies = JSON.parse(vars.RATE_LIMIT_POLICIES ?? "{}") as Record<string, Array<Record<string, unknown>>>;
  const shipped = policies[vars.GATEWAY_IP_POLICY ?? ""] ?? [{ name: "minute", algorithm: "sliding_window", periodMs: 60_000 }];
  policies[BENCH_GATEWAY_IP_POLICY] = shipped.map((rule) => ({ ...rule, limit: 1_000_000_000 }));
  vars.RATE_LIMIT_POLICIES = JSON.stringify(policies);
  vars.GATEWAY_IP_POLICY = BENCH_GATEWAY_IP_POLICY;
}

/** The workerd child of this Node process (miniflare spawns exactly one). */
function findWorkerdPid(): number | undefined {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // pid (comm) state ppid ...
      const match = /^\d+ \((.*)\) \S+ (\d+)/.exec(stat);
      if (match && match[1] === "workerd" && Number(match[2]) === process.pid) return Number(entry);
    } catch {
      // The process ended while we looked; not ours.
    }
  }
  return undefined;
}

/** Samples workerd's resident set size; the kernel's high-water mark (VmHWM) is the true peak. */
export class MemoryWatch {
  readonly pid: number | undefined;
  #timer: NodeJS.Timeout | undefined;
  #windowPeak = 0;

  constructor(pid: number | undefined) {
    this.pid = pid;
    if (pid !== undefined) {
      this.#timer = setInterval(() => this.#sample(), 100);
      this.#timer.unref();
    }
  }

  /** Peak RSS sampled since the last call (bytes), then starts a new window. */
  takeWindowPeak(): number | undefined {
    this.#sample();
    const peak = this.#windowPeak;
    this.#windowPeak = 0;
    return this.pid === undefined ? undefined : peak;
  }

  /** `{ rss, peak }` in bytes from /proc, or undefined off Linux. */
  read(): { rssBytes: number; peakBytes: number } | undefined {
    if (this.pid === undefined) return undefined;
    try {
      const status = readFileSync(`/proc/${this.pid}/status`, "utf8");
      const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0) * 1024;
      return { rssBytes: kb("VmRSS"), peakBytes: kb("VmHWM") };
    } catch {
      return undefined;
    }
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
  }

  #sample(): void {
    const now = this.read();
    if (now) this.#windowPeak = Math.max(this.#windowPeak, now.rssBytes);
  }
}
