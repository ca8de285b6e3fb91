/**
 * tollgate: `record` and `recordMany(100)` through the `PathStats` entrypoint, with hits
 * spread over 4,096 client IPs and 50 path templates. The ceiling is the no-op on
 * RateLimiterDO through the same kind of hop (service binding → entrypoint → DO RPC).
 */
import type { RecordInput } from "../../rpc/path-stats";
import type { AnyOp, DriverEnv, Params, Scenario } from "../harness/types";
import { CEILING_OPS, HOT_PATH_SUBJECTS } from "./ceiling";

const hit = (index: number): RecordInput => ({
  ip: `10.${(index >> 16) & 255}.${(index >> 8) & 15}.${index & 255}`,
  method: index % 5 === 0 ? "POST" : "GET",
  path: `/items/${index % 50}/detail`,
  status: index % 50 === 0 ? 503 : 200,
  latencyMs: 1 + (index % 40),
});

const BATCH = 100;

const ops: Record<string, AnyOp> = {
  "path-stats.record": {
    call: (env: DriverEnv, _params: Params, _state, i) => env.PATH_STATS.record(hit(i)),
  },
  "path-stats.record-many": {
    call: (env: DriverEnv, _params: Params, _state, i) =>
      env.PATH_STATS.recordMany({ hits: Array.from({ length: BATCH }, (_, j) => hit(i * BATCH + j)) }),
  },
};

export const pathStats: Scenario = {
  id: "path-stats",
  title: "tollgate: record, recordMany(100)",
  ops,
  async run(ctx) {
    const ceiling = { op: CEILING_OPS.entrypoint, params: { prefix: `${ctx.runId}:paths-ceiling`, subjects: HOT_PATH_SUBJECTS } };
    for (const [id, label, op] of [
      ["tollgate.record", "record (PathStats entrypoint)", "path-stats.record"],
      ["tollgate.record-many-100", "recordMany, 100 hits per call (PathStats entrypoint)", "path-stats.record-many"],
    ] as const) {
      for (const concurrency of ctx.concurrencyLevels) {
        await ctx.measure({ id, group: "tollgate", label, op, params: {}, route: "entrypoint", concurrency, ceiling });
      }
    }
  },
};
