/**
 * Ceiling: a no-op on tollgate's own RateLimiterDO, reached exactly as `check` is. Every
 * tollgate row is divided by the ceiling on the same route at the same concurrency.
 */
import { subjectAt } from "../harness/stats";
import type { Rule } from "../../rpc/rate-limits";
import type { AnyOp, Params, Route, Scenario } from "../harness/types";

/** The ceiling op for each route, and the subjects it uses (shared with the scenarios it is paired with). */
export const CEILING_OPS: Record<"entrypoint" | "do-rpc", string> = {
  entrypoint: "ceiling.entrypoint",
  "do-rpc": "ceiling.do-rpc",
};

/** The same, to a method that persists one value: the floor any state-changing call pays. */
export const WRITE_CEILING_OPS: Record<"entrypoint" | "do-rpc", string> = {
  entrypoint: "ceiling.write.entrypoint",
  "do-rpc": "ceiling.write.do-rpc",
};

/** The one-write ceiling that takes a check's input and answers a decision (a reference, not the ceiling). */
export const ANSWERING_WRITE_CEILING_OP = "ceiling.write-answering.entrypoint";

export const ROUTES = ["entrypoint", "do-rpc"] as const satisfies readonly Route[];

/** How many subjects (objects) a hot-path scenario spreads its calls over. */
export const HOT_PATH_SUBJECTS = 16;

const ops: Record<string, AnyOp> = {
  // service binding → BenchCeiling entrypoint → getByName → DO RPC noop()
  "ceiling.entrypoint": {
    call: (env, params: Params, _state, i) => env.CEILING.noop({ subject: subjectAt(params, i) }),
  },
  // DO RPC from the sibling (RateLimiterDO bound by script_name) → noop()
  "ceiling.do-rpc": {
    call: (env, params: Params, _state, i) => env.RATE_LIMITER.getByName(subjectAt(params, i)).noop(),
  },
  "ceiling.write.entrypoint": {
    call: (env, params: Params, _state, i) => env.CEILING.noopWrite({ subject: subjectAt(params, i) }),
  },
  "ceiling.write.do-rpc": {
    call: (env, params: Params, _state, i) => env.RATE_LIMITER.getByName(subjectAt(params, i)).noopWrite(),
  },
  // The write ceiling carrying check's bytes: a check's input in, a decision of check's shape out.
  "ceiling.write-answering.entrypoint": {
    call: (env, params: Params, _state, i) =>
      env.CEILING.noopWriteAnswering({ subject: subjectAt(params, i), rules: params.rules as unknown as Rule[] }),
  },
  "ceiling.stored-bytes": {
    call: (env, params: Params) => env.RATE_LIMITER.getByName(subjectAt(params, 0)).storedBytes(),
  },
};

export const ceiling: Scenario = {
  id: "ceiling",
  title: "Ceiling: a no-op through the same path",
  ops,
  async run(ctx) {
    const params = { prefix: `${ctx.runId}:ceiling`, subjects: HOT_PATH_SUBJECTS };
    for (const route of ROUTES) {
      for (const concurrency of ctx.concurrencyLevels) {
        await ctx.measure({
          id: `ceiling.noop.${route}`,
          group: "ceiling",
          label: route === "entrypoint" ? "no-op via RateLimits-style entrypoint" : "no-op via DO RPC",
          op: CEILING_OPS[route],
          params,
          route,
          concurrency,
        });
        // Not the ceiling: a diagnostic that separates storage commits from tollgate's own work.
        await ctx.measure({
          id: `ceiling.write.${route}`,
          group: "ceiling",
          label: route === "entrypoint" ? "one storage write via entrypoint" : "one storage write via DO RPC",
          op: WRITE_CEILING_OPS[route],
          params,
          route,
          concurrency,
          ceiling: { op: CEILING_OPS[route], params },
        });
      }
    }
    const bytes = await ctx.call("ceiling.stored-bytes", params);
    ctx.record({
      id: "memory.stored-bytes.empty-subject",
      group: "memory",
      label: "stored bytes, a RateLimiterDO with schema only (no rule state)",
      extra: { storedBytes: bytes },
    });
  },
};
