/**
 * The speed targets of the lean hot path (issue 15): calls that share one object, measured in
 * alternation with the one-write ceiling on that same kind of object (a method that persists one
 * value per call). Group commit lets many callers of one subject share a write, so `check` can
 * outrun a write per call; `authorize(cost)` with a key is held to a quarter of it.
 */
import type { Scenario } from "../harness/types";
import { WRITE_CEILING_OPS } from "./ceiling";
import { ONE_RULE } from "./check";

/** The callers of both rows, as the issue states them. */
export const LEAN_CALLERS = 16;

export const lean: Scenario = {
  id: "lean",
  title: "Lean hot path: one subject, 16 callers, against the one-write ceiling",
  ops: {},
  async run(ctx) {
    const one = { prefix: `${ctx.runId}:lean`, subjects: 1 };
    const writeCeiling = { op: WRITE_CEILING_OPS.entrypoint, params: one };
    await ctx.measure({
      id: "lean.check.one-subject",
      group: "lean hot path",
      label: "check, one rule, one subject (RateLimits entrypoint)",
      op: "check.entrypoint",
      params: { ...one, rules: ONE_RULE as unknown as [] },
      route: "entrypoint",
      concurrency: LEAN_CALLERS,
      ceiling: writeCeiling,
    });
    const gateway = { prefix: `${ctx.runId}-lean-gw`, subjects: 1, net: 78 };
    const keys = (await ctx.call("gateway.setup", gateway)) as string[];
    await ctx.measure({
      id: "lean.authorize.cost",
      group: "lean hot path",
      label: "authorize(cost), one account's key, per-IP policy (Gateway)",
      op: "gateway.authorize.cost",
      params: { ...gateway, keys },
      route: "entrypoint",
      concurrency: LEAN_CALLERS,
      ceiling: writeCeiling,
    });
  },
};
