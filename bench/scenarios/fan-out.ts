/**
 * Baseline: the seeds' fan-out aggregator (shared/seeds/api-aggregation.zh.md, `topPaths`):
 * one collector object per client IP, and every read asks each of them for its paths —
 * `fetch("/paths")` in batches of 30, a batch at a time — then merges and sorts. Measured
 * at 100, 1,000 and 10,000 IPs next to tollgate's rollup query (bench/scenarios/rollups.ts).
 * The collectors are prefilled untimed. A query that runs past the mode's bound stops and
 * is reported as "> N s, stopped". Bench-only: never shipped.
 */
import { summarize } from "../harness/stats";
import type { AnyOp, DriverEnv, DriveResult, Params, Scenario } from "../harness/types";

export const IP_LEVELS = [100, 1_000, 10_000] as const;

/** The seeds' batch size for the paths query. */
const BATCH = 30;
/** Paths each IP has visited, out of the same 50 templates the rollups use. */
const PATHS_PER_IP = 10;

const collector = (env: DriverEnv, params: Params, ip: number) => env.SEED_PATH_COLLECTOR.getByName(`${String(params.prefix)}:${ip}`);

interface PathEntry {
  pathKey: string;
  count: number;
  country?: string;
}

const ops: Record<string, AnyOp> = {
  "fan-out.prefill": {
    call: (env: DriverEnv, params: Params, _state, i) =>
      collector(env, params, i).prefill({
        paths: Array.from({ length: PATHS_PER_IP }, (_, k) => ({
          pathKey: `GET /v1/resource-${(i + k * 7) % 50}/:id`,
          count: 1 + ((i * 31 + k) % 40),
          country: "CH",
        })),
      }),
  },
  // The seeds' topPaths, as written there: batches of 30 IPs, one after another.
  "fan-out.top-paths": {
    async call(env: DriverEnv, params: Params) {
      const ips = Number(params.ips);
      const stopAt = Date.now() + Number(params.stopAfterMs);
      const byPath = new Map<string, { totalRequests: number; uniqueIPs: Set<number>; countries: Map<string, number> }>();
      for (let start = 0; start < ips; start += BATCH) {
        if (Date.now() > stopAt) throw new Error(`stopped after ${Number(params.stopAfterMs) / 1_000} s, ${start} of ${ips} IPs queried`);
        const batch = Array.from({ length: Math.min(BATCH, ips - start) }, (_, k) => start + k);
        await Promise.allSettled(
          batch.map(async (ip) => {
            const response = await collector(env, params, ip).fetch("http://dummy/paths");
            if (!response.ok) return;
            const data = (await response.json()) as { paths?: PathEntry[] };
            for (const entry of data.paths ?? []) {
              let aggregate = byPath.get(entry.pathKey);
              if (aggregate === undefined) {
                aggregate = { totalRequests: 0, uniqueIPs: new Set(), countries: new Map() };
                byPath.set(entry.pathKey, aggregate);
              }
              aggregate.totalRequests += entry.count;
              aggregate.uniqueIPs.add(ip);
              if (entry.country) aggregate.countries.set(entry.country, (aggregate.countries.get(entry.country) ?? 0) + entry.count);
            }
          }),
        );
      }
      return [...byPath]
        .map(([pathKey, data]) => ({ pathKey, totalRequests: data.totalRequests, uniqueIPs: data.uniqueIPs.size }))
        .sort((a, b) => b.totalRequests - a.totalRequests)
        .slice(0, 20);
    },
  },
};

export const fanOut: Scenario = {
  id: "fan-out",
  title: "Baseline: the seeds' fan-out aggregator",
  ops,
  async run(ctx) {
    const quick = ctx.mode !== "full";
    const stopAfterMs = quick ? 10_000 : 30_000;
    for (const ips of IP_LEVELS) {
      const n = ips.toLocaleString("en-US");
      const id = `baseline.fan-out.${ips}`;
      const group = "baseline: seeds' fan-out aggregator";
      const label = `query every per-IP object, ${n} IPs`;
      const params = { prefix: `${ctx.runId}:fan-out-${ips}`, ips, stopAfterMs };
      const prefill = await ctx.drive("fan-out.prefill", params, { concurrency: 32, maxOps: ips, durationMs: 60_000 });
      if (prefill.ops < ips) {
        ctx.record({
          id,
          group,
          label,
          note: `not measured: only ${prefill.ops} of ${ips} collectors prefilled (${prefill.firstError ?? "60 s bound"})`,
        });
        continue;
      }
      // One untimed query first (objects loaded, code compiled), as the rollups get.
      const warm = await ctx.drive("fan-out.top-paths", params, { concurrency: 1, maxOps: 1, durationMs: stopAfterMs });
      if (warm.errors > 0) {
        ctx.record({ id, group, label, concurrency: 1, note: `> ${stopAfterMs / 1_000} s, stopped (${warm.firstError})` });
        continue;
      }
      // A few queries, one at a time, bounded in count and time.
      const results: DriveResult[] = [];
      const deadline = Date.now() + (quick ? 3_000 : 10_000);
      for (let i = 0; i < (quick ? 3 : 5) && Date.now() < deadline; i++) {
        results.push(await ctx.drive("fan-out.top-paths", params, { concurrency: 1, maxOps: 1, durationMs: stopAfterMs }));
      }
      const stopped = results.find((result) => result.errors > 0);
      ctx.record({
        id,
        group,
        label,
        route: "do-rpc",
        concurrency: 1,
        measured: summarize(results),
        extra: { ips, collectorCalls: ips, batches: Math.ceil(ips / BATCH) },
        ...(stopped ? { note: `> ${stopAfterMs / 1_000} s, stopped (${stopped.firstError})` } : {}),
      });
    }
  },
};
