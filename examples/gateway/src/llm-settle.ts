import type { GatewayApi, MeteredUsage, SettleInput, SettleResult, Usage } from "../../../rpc";
import { errorCodeOf } from "../../../rpc/errors";

/** What the gateway knows of a held LLM request when it settles it. */
export interface HeldRequest {
  accountId: string;
  holdId: string;
  operation: string;
  model: string;
}

/** The longest latency a settle may carry (tollgate's bound). */
const MAX_LATENCY_MS = 3_600_000;

/**
 * How a metered response is billed (docs/llm-gateway.md, "What each failure costs"):
 * - nothing reached the client and the response did not complete: nothing (the hold is voided);
 * - completed with the upstream's usage: exactly that usage, even above the hold (within the overdraft);
 * - anything else (cut by the client or the upstream, an error event, no usage reported): the
 *   reported usage if any, else the estimate, never more than the hold (`capAtHold`): the rest
 *   is recorded as an overrun entry, not charged.
 */
export function settlementFor(
  request: HeldRequest,
  usage: MeteredUsage,
  status: number,
  latencyMs: number,
): Omit<SettleInput, "idempotencyKey"> {
  const base = { accountId: request.accountId, holdId: request.holdId, status, latencyMs: Math.min(MAX_LATENCY_MS, Math.round(latencyMs)) };
  if (usage.delivered.bytes === 0 && usage.end !== "completed") return { ...base, actualCost: 0 };
  const billed: Usage = {
    operation: request.operation,
    model: request.model,
    inputTokens: usage.inputTokens,
    outputTokens: usage.outputTokens,
    cachedTokens: usage.cachedTokens,
    cacheWriteTokens: usage.cacheWriteTokens,
  };
  const exact = usage.end === "completed" && usage.source === "reported";
  return exact ? { ...base, usage: billed } : { ...base, usage: billed, capAtHold: true };
}

/**
 * Settles with the hold's own idempotency key, retrying a failed call a few times: a retry of
 * a settle that did land returns its first result and charges nothing more. A hold that is
 * never settled is released by tollgate at its expiry.
 */
export async function settleWithRetries(
  tollgate: GatewayApi,
  input: Omit<SettleInput, "idempotencyKey">,
): Promise<SettleResult | undefined> {
  const settle: SettleInput = { ...input, idempotencyKey: `settle:${input.holdId}` };
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await tollgate.settle(settle);
    } catch (error) {
      const code = errorCodeOf(error) ?? "UNKNOWN";
      // Bad input will not get better on a retry.
      if (code === "INVALID_ARGUMENT" || attempt >= 3) {
        console.error(`tollgate settle failed (${code}) for hold ${input.holdId}`, error);
        return undefined;
      }
      await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** attempt));
    }
  }
}
