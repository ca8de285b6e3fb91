/**
 * Scenarios of capabilities that are not on this branch yet. Each prints as "not available
 * yet", never as a number. When a capability lands, its scenario file replaces its line
 * here (keeping the row ids, which the targets in bench/targets.ts look for).
 */
import type { Scenario } from "../harness/types";

const PENDING: ReadonlyArray<{ id: string; group: string; label: string }> = [
  ...[100, 1_000, 10_000].flatMap((clients) => [
    { id: `baseline.fan-out.${clients}`, group: "baseline: seeds' fan-out aggregator", label: `query every per-IP object, ${clients.toLocaleString("en-US")} IPs` },
  ]),
];

export const notBuiltYet: Scenario = {
  id: "not-built-yet",
  title: "Capabilities not built yet",
  ops: {},
  async run(ctx) {
    for (const row of PENDING) ctx.unavailable(row.id, row.group, row.label);
  },
};
