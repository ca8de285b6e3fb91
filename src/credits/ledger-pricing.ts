import type * as v from "valibot";
import type { ChargeResult, CommitResult, Price, PriceBook, Quote, Usage } from "../../rpc/credits";
import { notFound } from "../platform/errors";
import { all, maybeOne, run } from "../platform/sql";
import type { PendingRecord, Transaction } from "../platform/idempotency";
import { toAmount } from "./ledger-rows";
import { loadDefaultPrices } from "./price-config";
import { ceilCost, DEFAULT_MODEL, exactCost, findPrice, withCarry } from "./pricing";
import type { chargeSchema, quoteSchema } from "./schemas";
import type { Capture, Holds } from "./holds";
import type { Spending } from "./spending";

type QuoteInput = v.InferOutput<typeof quoteSchema>;
type ChargeInput = v.InferOutput<typeof chargeSchema>;

/**
 * The account's price book (`prices`, or the deployment's default from `CREDIT_PRICES`) and
 * the fractions of a credit each key and model carries to its next charge (`price_carries`).
 */
export class LedgerPricing {
  /** @param defaultPrices the `CREDIT_PRICES` variable, read at every call. */
  constructor(
    private readonly sql: SqlStorage,
    private readonly transaction: Transaction,
    private readonly spending: Spending,
    private readonly holds: Holds,
    private readonly defaultPrices: () => string | undefined,
  ) {}

  book(): PriceBook {
    const own = all<{ body: string }>(this.sql, "SELECT body FROM prices ORDER BY operation, model").map(
      (r) => JSON.parse(r.body) as Price,
    );
    if (own.length > 0) return { prices: own, source: "account" };
    return { prices: [...loadDefaultPrices(this.defaultPrices())], source: "default" };
  }

  /** Replaces the account's price book; an empty list returns the account to the default. */
  replace(prices: readonly Price[]): void {
    this.transaction(() => {
      run(this.sql, "DELETE FROM prices");
      for (const price of prices) {
        run(this.sql, "INSERT INTO prices (operation, model, body) VALUES (?, ?, ?)", price.operation, price.model, JSON.stringify(price));
      }
    });
  }

  /** What `charge` would take now, and the worst case to size a hold with. Changes nothing. */
  quote(query: Pick<QuoteInput, "usage" | "keyId">): Quote {
    const model = query.usage.model ?? DEFAULT_MODEL;
    const price = this.require(query.usage.operation, model);
    const exact = exactCost(price, query.usage);
    const { cost } = withCarry(exact, this.carryOf(query.keyId ?? "", query.usage.operation, model));
    const outputTokens = Math.max(query.usage.outputTokens ?? 0, query.usage.maxOutputTokens ?? 0);
    const worstCase = ceilCost(exactCost(price, query.usage, outputTokens));
    return { cost: toAmount(cost), worstCase: toAmount(worstCase), exactMillionths: exact.toString(), price };
  }

  /** Prices `usage` and debits the whole credits, carrying the fraction to the next call of the same key and model. */
  charge(charge: ChargeInput, idempotencyKey: string, nowMs: number): ChargeResult {
    const { usage } = charge;
    const model = usage.model ?? DEFAULT_MODEL;
    const price = this.require(usage.operation, model);
    const exact = exactCost(price, usage);
    const keyId = charge.keyId ?? "";
    const carryBefore = this.carryOf(keyId, usage.operation, model);
    const { cost, carry } = withCarry(exact, carryBefore);
    const amount = toAmount(cost);
    const outcome = this.spending.consume(nowMs, {
      amount,
      reason: charge.reason ?? `charge ${usage.operation}`,
      idempotencyKey,
      keyId: charge.keyId,
      meta: charge.meta,
      usage,
      price: { ...price, exactMillionths: exact.toString(), carryBefore, carryAfter: carry },
    });
    if (outcome.ok) this.#saveCarry(keyId, usage.operation, model, carry);
    return { ...outcome, cost: amount };
  }

  /**
   * Commits a hold at the price of what its request used, as `charge` prices it: the whole
   * credits are captured (at most the hold with `capAtHold`), the fraction carried to the key's
   * next call of the same operation and model.
   */
  commit(
    capture: Omit<Capture, "amount" | "priced"> & { usage: Usage },
    idempotencyKey: string,
    nowMs: number,
    record?: PendingRecord,
  ): CommitResult {
    const { usage } = capture;
    const model = usage.model ?? DEFAULT_MODEL;
    const price = this.require(usage.operation, model);
    const exact = exactCost(price, usage);
    const keyId = this.holds.require(capture.holdId).key_id ?? "";
    const carryBefore = this.carryOf(keyId, usage.operation, model);
    const { cost, carry } = withCarry(exact, carryBefore);
    const priced = {
      usage,
      price: { ...price, exactMillionths: exact.toString(), carryBefore, carryAfter: carry },
    };
    const result = this.holds.commit({ ...capture, amount: toAmount(cost), priced }, idempotencyKey, nowMs, record);
    if (result.ok) this.#saveCarry(keyId, usage.operation, model, carry);
    return result;
  }

  #saveCarry(keyId: string, operation: string, model: string, carry: number): void {
    run(
      this.sql,
      `INSERT INTO price_carries (key_id, operation, model, carry) VALUES (?, ?, ?, ?)
       ON CONFLICT (key_id, operation, model) DO UPDATE SET carry = excluded.carry`,
      keyId,
      operation,
      model,
      carry,
    );
  }

  private require(operation: string, model: string): Price {
    const price = findPrice(this.book().prices, operation, model);
    if (price === undefined) throw notFound(`no price for operation "${operation}" and model "${model}"`);
    return price;
  }

  private carryOf(keyId: string, operation: string, model: string): number {
    const query = "SELECT carry FROM price_carries WHERE key_id = ? AND operation = ? AND model = ?";
    return maybeOne<{ carry: number }>(this.sql, query, keyId, operation, model)?.carry ?? 0;
  }
}
