/**
 * tollgate: `acquire` + `release` of a concurrency lease through the `RateLimits`
 * entrypoint. One op is two calls, so its ratio to the (one-call) ceiling is at best 0.5.
 */
import { disposeResult, subjectAt } from "../harness/stats";
import type { AnyOp, DriverEnv, Params, Scenario } from "../harness/types";
import { CEILING_OPS, HOT_PATH_SUBJECTS } from "./ceiling";

/** Far above the concurrency levels, so every acquire is granted. */
const LEASE_LIMIT = 10_000;

const ops: Record<string, AnyOp> = {
  "leases.acquire-release": {
    async call(env: DriverEnv, params: Params, _state, i) {
      const subject = subjectAt(params, i);
      const lease = await env.LIMITS.acquire({ subject, limit: LEASE_LIMIT, ttlMs: 60_000 });
      disposeResult(lease);
      if (!lease.granted || lease.leaseId === undefined) throw new Error("acquire was not granted");
      const released = await env.LIMITS.release({ subject, leaseId: lease.leaseId });
      if (!released.released) throw new Error("release found no lease");
      return released;
    },
  },
};

export const leases: Scenario = {
  id: "leases",
  title: "tollgate: acquire + release",
  ops,
  async run(ctx) {
    const params = { prefix: `${ctx.runId}:leases`, subjects: HOT_PATH_SUBJECTS };
    for (const concurrency of ctx.concurrencyLevels) {
      await ctx.measure({
        id: "tollgate.acquire-release",
        group: "tollgate",
        label: "acquire + release, two calls (RateLimits entrypoint)",
        op: "leases.acquire-release",
        params,
        route: "entrypoint",
        concurrency,
        ceiling: { op: CEILING_OPS.entrypoint, params },
      });
    }
  },
};
