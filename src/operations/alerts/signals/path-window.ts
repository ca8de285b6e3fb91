import type { PathErrorRateRule, PathP99Rule } from "../../../../rpc/alerts";
import type { PathDetail } from "../../../../rpc/path-stats";
import { callOnce, type SignalReader } from "./types";

/** The aggregator's `pathDetail`, which reads rollups only (never a collector). */
export type PathDetailSource = () => {
  pathDetail(input: { range: { from: number; to: number }; path: string; method?: string }): Promise<PathDetail>;
};

async function detail(source: PathDetailSource, rule: PathErrorRateRule | PathP99Rule, nowMs: number): Promise<PathDetail> {
  return callOnce(source(), (stub) =>
    stub.pathDetail({
      range: { from: Math.max(0, nowMs - rule.windowMs), to: nowMs },
      path: rule.path,
      ...(rule.method === undefined ? {} : { method: rule.method }),
    }),
  );
}

/**
 * `path_error_rate`: errors (status ≥ 500) / requests of the path (one method, or all
 * together) over the window; `null` below `minRequests` (default 1). Path statistics reach
 * the aggregator a minute or two after the requests (docs/path-stats.md), so the newest
 * minutes of a window are still filling.
 */
export function pathErrorRateReader(source: PathDetailSource): SignalReader<PathErrorRateRule> {
  return {
    async read(rule, nowMs) {
      const { methods } = await detail(source, rule, nowMs);
      const requests = methods.reduce((sum, m) => sum + m.requests, 0);
      const errors = methods.reduce((sum, m) => sum + m.errors, 0);
      return { value: requests === 0 || requests < (rule.minRequests ?? 1) ? null : errors / requests };
    },
  };
}

/**
 * `path_p99`: the path's p99 latency over the window (without `method`, the highest p99 of
 * its methods: per-method sketches are not merged across methods here); `null` below
 * `minRequests` or without latencies.
 */
export function pathP99Reader(source: PathDetailSource): SignalReader<PathP99Rule> {
  return {
    async read(rule, nowMs) {
      const { methods } = await detail(source, rule, nowMs);
      const requests = methods.reduce((sum, m) => sum + m.requests, 0);
      const p99s = methods.map((m) => m.latency?.p99).filter((p): p is number => typeof p === "number");
      return { value: requests === 0 || requests < (rule.minRequests ?? 1) || p99s.length === 0 ? null : Math.max(...p99s) };
    },
  };
}
