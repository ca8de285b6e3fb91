/**
 * Pricing in exact integers. A price gives, per dimension, the credits charged per
 * 1,000,000 units (the convention of LLM price lists). A call's exact cost is therefore a
 * whole number of millionths of a credit; the whole credits are charged and the remainder
 * is carried to the next call of the same key, operation and model, so that the sum of the
 * charges never drifts from the sum of the exact costs by a full credit.
 *
 * Products are computed with BigInt: 1e9 tokens at 1e9 credits per million overflow 2^53.
 */
import type { Price, Usage } from "../../rpc/credits";

export type { Price, Usage };

export const UNITS_PER_PRICE = 1_000_000;
const SCALE = BigInt(UNITS_PER_PRICE);

/** The model a usage is priced and rolled up under when it names none. */
export const DEFAULT_MODEL = "default";

/** The most specific price for `operation` and `model`: exact, then `model: "*"`, then `"*"/"*"`. */
export function findPrice(book: readonly Price[], operation: string, model: string): Price | undefined {
  return (
    book.find((p) => p.operation === operation && p.model === model) ??
    book.find((p) => p.operation === operation && p.model === "*") ??
    book.find((p) => p.operation === "*" && p.model === "*")
  );
}

/** The exact cost in millionths of a credit. `requests` defaults to 1. */
export function exactCost(price: Price, usage: Usage, outputTokens = usage.outputTokens ?? 0): bigint {
  return (
    BigInt(usage.requests ?? 1) * BigInt(price.request ?? 0) +
    BigInt(usage.inputTokens ?? 0) * BigInt(price.inputTokens ?? 0) +
    BigInt(outputTokens) * BigInt(price.outputTokens ?? 0) +
    BigInt(usage.cachedTokens ?? 0) * BigInt(price.cachedTokens ?? 0) +
    BigInt(usage.cacheWriteTokens ?? 0) * BigInt(price.cacheWriteTokens ?? 0)
  );
}

/**
 * Whole credits to charge for `exact` millionths given the `carry` left by earlier calls
 * (0 ≤ carry < 1e6), and the carry to keep afterwards.
 */
export function withCarry(exact: bigint, carry: number): { cost: bigint; carry: number } {
  const total = exact + BigInt(carry);
  return { cost: total / SCALE, carry: Number(total % SCALE) };
}

/** The most a call can cost whatever the carry: the ceiling of its exact cost. */
export function ceilCost(exact: bigint): bigint {
  return (exact + SCALE - 1n) / SCALE;
}
