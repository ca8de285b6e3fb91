import type { DenialRateRule } from "../../../../rpc/alerts";
import type { CheckCounts } from "../../../../rpc/rate-limits";
import { callOnce, type SignalReader } from "./types";

/**
 * `denial_rate`: denied / (allowed + denied) of the subject's charged checks in the window,
 * from its RateLimiterDO's per-minute counts; `null` below `minRequests` checks.
 */
export function denialRateReader(
  limiter: (subject: string) => { checkCounts(input: { subject: string; sinceMs: number }): Promise<CheckCounts> },
): SignalReader<DenialRateRule> {
  return {
    async read(rule, nowMs) {
      const counts = await callOnce(limiter(rule.subject), (stub) =>
        stub.checkCounts({ subject: rule.subject, sinceMs: Math.max(0, nowMs - rule.windowMs) }),
      );
      const total = counts.allowed + counts.denied;
      return { value: total < rule.minRequests ? null : counts.denied / total };
    },
  };
}
