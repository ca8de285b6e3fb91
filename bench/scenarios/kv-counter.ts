/**
 * Baseline: the seeds' Workers KV counter (read, add one, write) against tollgate's
 * `check`, with N concurrent callers. Reports the fraction of increments that survive.
 * Local KV has no edge cache, so the loss measured here is only the read-modify-write race:
 * a lower bound on what production KV loses (reads there may be up to 60 s stale).
 */
import type { Rule } from "../../rpc/rate-limits";
import { disposeResult, summarize } from "../harness/stats";
import type { AnyOp, DriverEnv, Json, Params, Scenario } from "../harness/types";

/** Never denies in a run, and one window covers any run (fixed windows align to epoch multiples). */
const COUNTING_RULE: Rule = { name: "count", algorithm: "fixed_window", limit: 100_000, periodMs: 366 * 86_400_000 };

/** Concurrent callers the issue asks about, on top of the run's concurrency levels. */
export const CALLER_COUNTS = [100, 1_000];

const ops: Record<string, AnyOp> = {
  "kv-counter.increment": {
    async call(env: DriverEnv, params: Params) {
      const key = String(params.key);
      const current = Number((await env.KV.get(key)) ?? "0");
      await env.KV.put(key, String(current + 1));
    },
    async finish(env: DriverEnv, params: Params) {
      return { counted: Number((await env.KV.get(String(params.key))) ?? "0") };
    },
  },
  "kv-counter.tollgate": {
    async call(env: DriverEnv, params: Params) {
      const decision = await env.LIMITS.check({ subject: String(params.subject), rules: [COUNTING_RULE] });
      if (!decision.allowed) throw new Error("counting rule denied a call");
      return decision;
    },
    async finish(env: DriverEnv, params: Params) {
      const decision = await env.LIMITS.peek({ subject: String(params.subject), rules: [COUNTING_RULE] });
      const counted = COUNTING_RULE.limit - decision.remaining;
      disposeResult(decision);
      return { counted };
    },
  },
};

export const kvCounter: Scenario = {
  id: "kv-counter",
  title: "Baseline: Workers KV counter vs tollgate, increments that survive",
  ops,
  async run(ctx) {
    const perCaller = ctx.mode === "full" ? 5 : 2;
    const callerCounts = [...new Set([...ctx.concurrencyLevels, ...CALLER_COUNTS])].sort((a, b) => a - b);
    for (const callers of callerCounts) {
      for (const design of ["kv", "tollgate"] as const) {
        const name = `${ctx.runId}:count:${design}:${callers}`;
        const params: Params = design === "kv" ? { key: name } : { subject: name };
        const result = await ctx.drive(`kv-counter.${design === "kv" ? "increment" : "tollgate"}`, params, {
          concurrency: callers,
          durationMs: 30_000,
          maxOps: callers * perCaller,
        });
        const counted = Number(result.extra.counted);
        const survived = result.ops === 0 ? 0 : counted / result.ops;
        const extra: Record<string, Json> = { callers, increments: result.ops, counted, survived };
        ctx.record({
          id: design === "kv" ? "baseline.kv-counter" : "exactness.tollgate",
          group: design === "kv" ? "baseline: Workers KV counter" : "tollgate: exact counts",
          label: `${design === "kv" ? "KV get+put counter" : "tollgate check (fixed_window)"}, ${callers} callers`,
          route: design === "kv" ? "kv" : "entrypoint",
          concurrency: callers,
          measured: summarize([result]),
          extra,
        });
      }
    }
  },
};
