/**
 * The scenario registry. Adding a scenario: write one file in this folder exporting a
 * `Scenario` (its driver ops and its `run`), and list it below. Op names must be unique.
 */
import type { AnyOp, Scenario } from "../harness/types";
import { ceiling } from "./ceiling";
import { rateLimitCheck } from "./check";
import { cost } from "./cost";
import { credits } from "./credits";
import { fanOut } from "./fan-out";
import { gateway } from "./gateway";
import { kvCounter } from "./kv-counter";
import { lean } from "./lean";
import { leases } from "./leases";
import { pathStats } from "./path-stats";
import { rollups } from "./rollups";
import { seedLimiter } from "./seed-limiter";

/** Every scenario, in the order a run executes them. The ceiling comes first. */
export const SCENARIOS: readonly Scenario[] = [
  ceiling,
  rateLimitCheck,
  lean,
  leases,
  credits,
  pathStats,
  gateway,
  rollups,
  fanOut,
  kvCounter,
  seedLimiter,
  // Last: it moves the tollgate isolate's clock forward (bench/workers/cost-meter.ts).
  cost,
];

/** Every op of every scenario, for the load driver. */
export function allOps(): Record<string, AnyOp> {
  const ops: Record<string, AnyOp> = {};
  for (const scenario of SCENARIOS) {
    for (const [name, op] of Object.entries(scenario.ops)) {
      if (name in ops) throw new Error(`bench op "${name}" is defined twice`);
      ops[name] = op;
    }
  }
  return ops;
}
