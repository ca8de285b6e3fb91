/**
 * The speed targets of the lean hot path (issue 15): calls that share one object, measured in
 * alternation with the one-write ceiling on that same kind of object (a method that persists one
 * value per call). Group commit lets many callers of one subject share a write, so `check` can
 * outrun a write per call; `authorize(cost)` with a key is held to a quarter of it.
 */
import type { Scenario } from "../harness/types";
import { ANSWERING_WRITE_CEILING_OP, WRITE_CEILING_OPS } from "./ceiling";
import { ONE_RULE } from "./check";

/** The callers of both rows, as the issue states them. */
export const LEAN_CALLERS = 16;

/** The reference's name in a row's `extra` (`× <name>`, `<name> ops/s`). */
export const ANSWERING_REFERENCE = "answering write ceiling";

/** A value's structure: its keys, nested, and the type of each leaf, not the values. */
export function shapeOf(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(shapeOf).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : 1));
    return `{${entries.map(([key, inner]) => `${key}:${shapeOf(inner)}`).join(",")}}`;
  }
  return value === null ? "null" : typeof value;
}

export const lean: Scenario = {
  id: "lean",
  title: "Lean hot path: one subject, 16 callers, against the one-write ceiling",
  ops: {},
  async run(ctx) {
    const one = { prefix: `${ctx.runId}:lean`, subjects: 1 };
    const writeCeiling = { op: WRITE_CEILING_OPS.entrypoint, params: one };
    const checkParams = { ...one, rules: ONE_RULE as unknown as [] };
    // Beside the issue's ceiling: the same write carrying check's bytes, a check's input in and
    // a decision out. The reference is only fair while its answer has the shape check's has.
    const answers = [await ctx.call("check.entrypoint", checkParams), await ctx.call(ANSWERING_WRITE_CEILING_OP, checkParams)];
    const sameShape = shapeOf(answers[0]) === shapeOf(answers[1]);
    await ctx.measure({
      id: "lean.check.one-subject",
      group: "lean hot path",
      label: "check, one rule, one subject (RateLimits entrypoint)",
      op: "check.entrypoint",
      params: checkParams,
      route: "entrypoint",
      concurrency: LEAN_CALLERS,
      ceiling: writeCeiling,
      references: [{ name: ANSWERING_REFERENCE, op: ANSWERING_WRITE_CEILING_OP, params: checkParams }],
      extra: { answerShapeMatches: sameShape },
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
