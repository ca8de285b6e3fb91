import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { Price } from "../../rpc/credits";
import { loadDefaultPrices } from "../../src/credits/price-config";
import { ceilCost, exactCost, withCarry } from "../../src/credits/pricing";
import { codeOf } from "../fixtures/errors";

const T0 = Date.UTC(2030, 0, 15, 12, 0, 0);

/**
 * A provider's four token prices (credits per million): cache reads at a tenth of the input
 * price, cache writes at 1.25 times it, as Anthropic bills them.
 */
const SONNET: Price = {
  operation: "llm",
  model: "sonnet",
  inputTokens: 3_000,
  outputTokens: 15_000,
  cachedTokens: 300,
  cacheWriteTokens: 3_750,
};

let counter = 0;
async function freshAccount(prices: Price[]) {
  const accountId = `cw-${++counter}-${Math.random().toString(16).slice(2, 8)}`;
  const ledger = env.TEST_CREDIT_LEDGER.getByName(accountId);
  await ledger.setClock(T0);
  await ledger.createAccount({ accountId, name: "Cache writes" });
  await ledger.grant({ accountId, amount: 1_000_000, reason: "top-up", idempotencyKey: "top-up" });
  await ledger.setPrices({ accountId, prices });
  return { accountId, ledger };
}

describe("pricing: cache-write tokens", () => {
  it("prices each of the four token dimensions at its own rate, exactly", () => {
    const usage = { operation: "llm", inputTokens: 1_001, outputTokens: 333, cachedTokens: 20_000, cacheWriteTokens: 7 };
    // 1,001×3,000 + 333×15,000 + 20,000×300 + 7×3,750 = 3,003,000 + 4,995,000 + 6,000,000 + 26,250.
    expect(exactCost(SONNET, usage)).toBe(14_024_250n);
    expect(exactCost(SONNET, { operation: "llm", cacheWriteTokens: 1 })).toBe(3_750n);
    // A price without a cache-write rate charges nothing for cache writes (as for any missing dimension).
    expect(exactCost({ operation: "llm", model: "*", inputTokens: 5 }, { operation: "llm", cacheWriteTokens: 1_000_000 })).toBe(0n);
    // Beyond 2^53: 10^12 cache-write tokens at 10^12 credits per million.
    const huge = exactCost({ operation: "x", model: "*", cacheWriteTokens: 1e12 }, { operation: "x", cacheWriteTokens: 1e12 });
    expect(huge).toBe(10n ** 24n);
    expect(withCarry(14_024_250n, 990_000)).toEqual({ cost: 15n, carry: 14_250 });
    expect(ceilCost(14_024_250n)).toBe(15n);
  });

  it("quotes the worst case with cache writes and charges them with the carried remainder", async () => {
    const { accountId, ledger } = await freshAccount([SONNET]);
    const usage = { operation: "llm", model: "sonnet", inputTokens: 100, cachedTokens: 1_000, cacheWriteTokens: 200 };
    // 100×3,000 + 1,000×300 + 200×3,750 = 1,350,000 millionths; with 1,000 output tokens at most, + 15,000,000.
    expect(await ledger.quote({ accountId, usage: { ...usage, maxOutputTokens: 1_000 } })).toMatchObject({
      cost: 1,
      worstCase: 17,
      exactMillionths: "1350000",
      price: SONNET,
    });
    const charges: number[] = [];
    for (let i = 0; i < 4; i++) {
      const result = await ledger.charge({ accountId, usage, idempotencyKey: `c${i}` });
      expect(result.ok).toBe(true);
      charges.push(result.cost);
      if (result.ok) {
        expect(result.entry.price).toMatchObject({ cacheWriteTokens: 3_750, exactMillionths: "1350000" });
        expect(result.entry.usage).toMatchObject({ cacheWriteTokens: 200 });
      }
    }
    // 4 × 1.35 = 5.4: floor of the running total each time, the fraction carried.
    expect(charges).toEqual([1, 1, 2, 1]);
    const last = (await ledger.entries({ accountId })).items.at(-1)!;
    expect(last.price).toMatchObject({ carryBefore: 50_000, carryAfter: 400_000 });
  });

  it("falls back to the model * price for a model the book does not name", async () => {
    const { accountId, ledger } = await freshAccount([SONNET, { ...SONNET, model: "*", cacheWriteTokens: 6_000 }]);
    const quote = await ledger.quote({ accountId, usage: { operation: "llm", model: "other", cacheWriteTokens: 500 } });
    expect(quote).toMatchObject({ cost: 3, worstCase: 3, exactMillionths: "3000000", price: { model: "*", cacheWriteTokens: 6_000 } });
  });

  it("refuses a negative, fractional or oversized cache-write price or count, and changes nothing", async () => {
    const { accountId, ledger } = await freshAccount([SONNET]);
    for (const cacheWriteTokens of [-1, 1.5, 1e12 + 1]) {
      expect(await codeOf(ledger.setPrices({ accountId, prices: [{ ...SONNET, cacheWriteTokens }] }))).toBe("INVALID_ARGUMENT");
      const usage = { operation: "llm", model: "sonnet", cacheWriteTokens };
      expect(await codeOf(ledger.charge({ accountId, usage, idempotencyKey: `bad${cacheWriteTokens}` }))).toBe("INVALID_ARGUMENT");
    }
    expect((await ledger.prices({ accountId })).prices).toEqual([SONNET]);
    expect((await ledger.balance({ accountId })).consumed).toBe(0);
  });

  it("accepts cache-write prices in the default book (CREDIT_PRICES) and refuses bad ones", () => {
    expect(loadDefaultPrices(JSON.stringify([SONNET]))).toEqual([SONNET]);
    expect(() => loadDefaultPrices(JSON.stringify([{ ...SONNET, cacheWriteTokens: -3 }]))).toThrow(/CREDIT_PRICES is misconfigured/);
  });
});
