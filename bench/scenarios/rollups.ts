/**
 * tollgate: `topPaths` and `globalStats` over 30 days of data, with 100, 1,000 and 10,000
 * distinct clients. Each level gets its own aggregator (the bench subclass of AggregatorDO:
 * same code, pinned clock), filled untimed with the same volume of hits — one pushed minute
 * per hour for 30 days, compacted a day at a time as its alarm would — so only the number of
 * distinct clients differs. The queries are then timed by DO RPC on that aggregator.
 */
import type { AnyOp, DriverEnv, Params, Scenario } from "../harness/types";

export const CLIENT_LEVELS = [100, 1_000, 10_000] as const;

/** The same data at every level: 30 days × 24 pushed minutes × 20 hits over 50 templates. */
const FILL = { days: 30, paths: 50, hitsPerMinute: 20 };

const aggregator = (env: DriverEnv, params: Params) => env.BENCH_AGGREGATOR.getByName(String(params.name));

const ops: Record<string, AnyOp> = {
  "rollups.fill": {
    call: (env: DriverEnv, params: Params) => aggregator(env, params).fill({ clients: Number(params.clients), ...FILL }),
  },
  "rollups.top-paths": {
    call: (env: DriverEnv, params: Params) => aggregator(env, params).topPaths({ range: "30d", limit: 20 }),
  },
  "rollups.top-paths-clients": {
    call: (env: DriverEnv, params: Params) => aggregator(env, params).topPaths({ range: "30d", limit: 20, sortBy: "clients" }),
  },
  "rollups.global-stats": {
    call: (env: DriverEnv, params: Params) => aggregator(env, params).globalStats({ range: "30d" }),
  },
  // Read-back, untimed: what the filled aggregator holds (the driver only returns plain values from it).
  "rollups.check": {
    async call(env: DriverEnv, params: Params) {
      const stats = await aggregator(env, params).globalStats({ range: "30d" });
      return { requests: stats.totalRequests, uniqueClients: stats.uniqueClients, uniquePaths: stats.uniquePaths };
    },
  },
  "rollups.stored-bytes": {
    call: (env: DriverEnv, params: Params) => aggregator(env, params).storedBytes(),
  },
};

export const rollups: Scenario = {
  id: "rollups",
  title: "tollgate: topPaths and globalStats over 30 days",
  ops,
  async run(ctx) {
    const levels = [];
    for (const clients of CLIENT_LEVELS) {
      const params = { name: `${ctx.runId}:rollups-${clients}`, clients };
      const fill = (await ctx.call("rollups.fill", params)) as { hits: number; minutes: number };
      const seen = (await ctx.call("rollups.check", params)) as { requests: number; uniqueClients: number; uniquePaths: number };
      const storedBytes = await ctx.call("rollups.stored-bytes", params);
      levels.push({
        clients,
        params,
        extra: {
          hits: fill.hits,
          pushedMinutes: fill.minutes,
          requestsIn30d: seen.requests,
          uniqueClientsEstimate: seen.uniqueClients,
          uniquePaths: seen.uniquePaths,
          storedBytes,
        },
      });
    }
    // Every aggregator answers each query once before any is timed, so the first level
    // measured does not also pay for compiling the query code.
    for (const { params } of levels) {
      for (const op of ["rollups.top-paths", "rollups.top-paths-clients", "rollups.global-stats"]) await ctx.call(op, params);
    }
    for (const { clients, params, extra } of levels) {
      const n = clients.toLocaleString("en-US");
      for (const [id, label, op] of [
        [`tollgate.top-paths-30d.${clients}`, `topPaths over 30 days, ${n} clients`, "rollups.top-paths"],
        [`tollgate.top-paths-30d-by-clients.${clients}`, `topPaths by clients over 30 days, ${n} clients`, "rollups.top-paths-clients"],
        [`tollgate.global-stats-30d.${clients}`, `globalStats over 30 days, ${n} clients`, "rollups.global-stats"],
      ] as const) {
        // One dashboard query at a time: what a reader of the statistics waits for.
        await ctx.measure({ id, group: "tollgate: rollups", label, op, params, route: "do-rpc", concurrency: 1, extra });
      }
    }
  },
};
