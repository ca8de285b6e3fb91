import type { CostProjectionRule } from "../../../../rpc/alerts";
import type { SignalReader } from "./types";

/** What a cost source answers: the projected monthly cost and the configured budget, in USD. */
export type CostProjection = (nowMs: number) => Promise<{ monthlyUsd: number; budgetUsd: number | null }>;

/**
 * `cost_projection`: the projected monthly cost, against the rule's threshold or, without one,
 * the configured budget (no budget: no trigger, so the rule never fires).
 */
export function costProjectionReader(project: CostProjection): SignalReader<CostProjectionRule> {
  return {
    async read(rule, nowMs) {
      const projection = await project(nowMs);
      const threshold = rule.threshold ?? projection.budgetUsd ?? undefined;
      return threshold === undefined ? { value: projection.monthlyUsd } : { value: projection.monthlyUsd, threshold };
    },
  };
}
