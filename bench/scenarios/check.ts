/**
 * tollgate: one-rule and five-rule `check`, through the `RateLimits` entrypoint and by DO
 * RPC, each measured in alternation with the ceiling on the same route and objects.
 */
import type { CheckInput, Rule } from "../../rpc/rate-limits";
import { subjectAt } from "../harness/stats";
import type { AnyOp, DriverEnv, Params, Scenario } from "../harness/types";
import { CEILING_OPS, HOT_PATH_SUBJECTS, ROUTES, WRITE_CEILING_OPS } from "./ceiling";

/** Limits high enough that no call is ever denied: a denial would be a cheaper path. */
export const ONE_RULE: Rule[] = [{ name: "hour", algorithm: "sliding_window", limit: 1_000_000_000, periodMs: 3_600_000 }];

export const FIVE_RULES: Rule[] = [
  { name: "second", algorithm: "fixed_window", limit: 1_000_000_000, periodMs: 1_000 },
  { name: "minute", algorithm: "sliding_window", limit: 1_000_000_000, periodMs: 60_000 },
  { name: "hour", algorithm: "sliding_window", limit: 1_000_000_000, periodMs: 3_600_000 },
  { name: "day", algorithm: "fixed_window", limit: 100_000_000, periodMs: 86_400_000 },
  { name: "month", algorithm: "sliding_window", limit: 1_000_000, periodMs: 30 * 86_400_000 },
];

function input(params: Params, index: number): CheckInput {
  return { subject: subjectAt(params, index), rules: params.rules as unknown as Rule[] };
}

/** The decision, after making sure it admitted the call (the driver disposes it). */
async function admitted<T extends { allowed: boolean; deniedBy: string[] }>(decision: Promise<T>): Promise<T> {
  const result = await decision;
  if (!result.allowed) throw new Error(`check denied by ${result.deniedBy.join(", ")}; the measurement would be of the wrong path`);
  return result;
}

const ops: Record<string, AnyOp> = {
  "check.entrypoint": {
    call: (env: DriverEnv, params: Params, _state, i) => admitted(env.LIMITS.check(input(params, i))),
  },
  "check.do-rpc": {
    call: (env: DriverEnv, params: Params, _state, i) => admitted(env.RATE_LIMITER.getByName(subjectAt(params, i)).check(input(params, i))),
  },
  // Diagnostic: the same validation, rule resolution and state read as check, no write.
  "peek.entrypoint": {
    call: (env: DriverEnv, params: Params, _state, i) => env.LIMITS.peek(input(params, i)),
  },
  "peek.do-rpc": {
    call: (env: DriverEnv, params: Params, _state, i) => env.RATE_LIMITER.getByName(subjectAt(params, i)).peek(input(params, i)),
  },
  "check.stored-bytes": {
    call: (env: DriverEnv, params: Params) => env.RATE_LIMITER.getByName(subjectAt(params, 0)).storedBytes(),
  },
};

export const rateLimitCheck: Scenario = {
  id: "check",
  title: "tollgate: one-rule and five-rule check",
  ops,
  async run(ctx) {
    for (const [name, rules] of [
      ["1-rule", ONE_RULE],
      ["5-rule", FIVE_RULES],
    ] as const) {
      // The ceiling's objects: the no-op and check land on the very same objects.
      const params = { prefix: `${ctx.runId}:check-${name}`, subjects: HOT_PATH_SUBJECTS, rules: rules as unknown as Params[] };
      for (const route of ROUTES) {
        for (const concurrency of ctx.concurrencyLevels) {
          await ctx.measure({
            id: `tollgate.check.${name}.${route}`,
            group: "tollgate",
            label: `check, ${name === "1-rule" ? "one rule" : "five rules"} (${route === "entrypoint" ? "RateLimits entrypoint" : "DO RPC"})`,
            op: `check.${route}`,
            params,
            route,
            concurrency,
            ceiling: { op: CEILING_OPS[route], params },
            references: [{ name: "write ceiling", op: WRITE_CEILING_OPS[route], params }],
          });
        }
      }
      if (name === "1-rule") {
        for (const route of ROUTES) {
          for (const concurrency of ctx.concurrencyLevels) {
            await ctx.measure({
              id: `tollgate.peek.${name}.${route}`,
              group: "tollgate",
              label: `peek, one rule, no write: diagnostic (${route === "entrypoint" ? "RateLimits entrypoint" : "DO RPC"})`,
              op: `peek.${route}`,
              params,
              route,
              concurrency,
              ceiling: { op: CEILING_OPS[route], params },
            });
          }
        }
      }
      ctx.record({
        id: `memory.stored-bytes.check-${name}`,
        group: "memory",
        label: `stored bytes, a subject after ${name} checks`,
        extra: { storedBytes: await ctx.call("check.stored-bytes", params) },
      });
    }
  },
};
