// Requests priced by the account's price book (LLM calls): `authorize` with `usage` holds the
// quote's worst case, `settle` with `usage` commits its exact price, `capAtHold` books the cost
// above the hold as an `overrun` entry that changes no total.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { AuthorizeInput } from "../../rpc/gateway";
import { thrown } from "../fixtures/errors";

let ipCounter = 0;
const freshIp = () => `198.19.${(ipCounter += 1)}.9`;

/** 2 credits per million input tokens, 8 per million output, 1 per million cached, 4 per million cache-write. */
const PRICES = [
  { operation: "llm", model: "*", inputTokens: 2_000_000, outputTokens: 8_000_000, cachedTokens: 1_000_000, cacheWriteTokens: 4_000_000 },
];

async function account(credits: number) {
  const accountId = `llm-${crypto.randomUUID().slice(0, 8)}`;
  await env.CREDITS.createAccount({ accountId, name: "priced requests" });
  await env.CREDITS.grant({ accountId, amount: credits, reason: "welcome", idempotencyKey: "welcome" });
  await env.CREDITS.setPrices({ accountId, prices: PRICES });
  const created = await env.CREDITS.createKey({ accountId, name: "llm key", scopes: ["*"] });
  return { accountId, keyId: created.keyId, key: created.key };
}

const request = (apiKey: string, extra: Partial<AuthorizeInput> = {}): AuthorizeInput => ({
  ip: freshIp(),
  method: "POST",
  path: "/v1/chat/completions",
  apiKey,
  ...extra,
});

describe("priced requests through the gateway", () => {
  it("holds the quote's worst case and settles the exact price of the reported usage", async () => {
    const { accountId, key } = await account(1_000);
    const usage = { operation: "llm", model: "gpt-test", inputTokens: 10, cachedTokens: 4, cacheWriteTokens: 2, maxOutputTokens: 50 };
    const auth = await env.GATEWAY.authorize(request(key, { usage }));
    // 10×2 + 4×1 + 2×4 + 50×8 = 432 credits.
    expect(auth).toMatchObject({ allowed: true, status: 200, held: 432 });
    expect((await env.CREDITS.balance({ accountId })).held).toBe(432);

    const used = { operation: "llm", model: "gpt-test", inputTokens: 10, cachedTokens: 4, cacheWriteTokens: 2, outputTokens: 7 };
    const settle = { accountId, holdId: auth.holdId!, usage: used, status: 200, latencyMs: 12, idempotencyKey: "s1" };
    const settled = await env.GATEWAY.settle(settle);
    // 20 + 4 + 8 + 56 = 88.
    expect(settled).toEqual({ balance: 1_000 - 88, outcome: "committed", charged: 88 });
    expect(await env.GATEWAY.settle(settle)).toEqual(settled);
    const balance = await env.CREDITS.balance({ accountId });
    expect(balance).toMatchObject({ held: 0, consumed: 88, available: 912 });

    const page = await env.CREDITS.entries({ accountId });
    const commit = page.items.find((entry) => entry.kind === "commit")!;
    expect(commit).toMatchObject({ amount: 88, usage: used, price: { operation: "llm", model: "*", exactMillionths: "88000000" } });
    const report = await env.CREDITS.usage({ accountId, range: "24h", groupBy: "model" });
    expect(report.items).toEqual([
      { group: "gpt-test", amount: 88, count: 1, inputTokens: 10, outputTokens: 7, cachedTokens: 4, cacheWriteTokens: 2 },
    ]);
  });

  it("answers 402 before anything is held when the account cannot cover the quote", async () => {
    const { accountId, key } = await account(100);
    const auth = await env.GATEWAY.authorize(
      request(key, { usage: { operation: "llm", model: "m", inputTokens: 10, maxOutputTokens: 50 } }),
    );
    expect(auth).toMatchObject({ allowed: false, status: 402, code: "INSUFFICIENT_CREDITS" });
    expect(await env.CREDITS.balance({ accountId })).toMatchObject({ held: 0, available: 100 });
  });

  it("with capAtHold, charges the hold and books the rest as an overrun entry that changes no total", async () => {
    const { accountId, key } = await account(1_000);
    const auth = await env.GATEWAY.authorize(request(key, { usage: { operation: "llm", model: "m", maxOutputTokens: 10 } }));
    expect(auth.held).toBe(80);
    const settled = await env.GATEWAY.settle({
      accountId,
      holdId: auth.holdId!,
      usage: { operation: "llm", model: "m", outputTokens: 25 },
      capAtHold: true,
      status: 200,
      latencyMs: 3,
      idempotencyKey: "cut",
    });
    expect(settled).toEqual({ balance: 920, outcome: "committed", charged: 80, overrun: 120 });
    const kinds = (await env.CREDITS.entries({ accountId })).items.map((entry) => [entry.kind, entry.amount]);
    expect(kinds.slice(-2)).toEqual([
      ["commit", 80],
      ["overrun", 120],
    ]);
    expect(await env.CREDITS.balance({ accountId })).toMatchObject({ held: 0, consumed: 80, available: 920 });
    expect((await env.CREDIT_LEDGER.getByName(accountId).audit({ accountId })).violations).toEqual([]);
  });

  it("reports no overrun when the usage fits the hold, and voids on an actual cost of 0", async () => {
    const { accountId, key } = await account(1_000);
    const first = await env.GATEWAY.authorize(request(key, { usage: { operation: "llm", model: "m", maxOutputTokens: 10 } }));
    const fits = { accountId, holdId: first.holdId!, usage: { operation: "llm", model: "m", outputTokens: 3 }, capAtHold: true };
    expect(await env.GATEWAY.settle({ ...fits, status: 200, latencyMs: 1, idempotencyKey: "a" })).toEqual({
      balance: 976,
      outcome: "committed",
      charged: 24,
      overrun: 0,
    });
    const second = await env.GATEWAY.authorize(request(key, { usage: { operation: "llm", model: "m", maxOutputTokens: 10 } }));
    const voided = await env.GATEWAY.settle({
      accountId,
      holdId: second.holdId!,
      actualCost: 0,
      status: 500,
      latencyMs: 1,
      idempotencyKey: "b",
    });
    expect(voided).toEqual({ balance: 976, outcome: "voided", charged: 0 });
  });

  it("refuses bad priced input with INVALID_ARGUMENT and changes nothing", async () => {
    const { accountId, key } = await account(1_000);
    const usage = { operation: "llm", model: "m", maxOutputTokens: 10 };
    expect(await thrown(env.GATEWAY.authorize(request(key, { usage, estimate: 5 })))).toMatchObject({ code: "INVALID_ARGUMENT" });
    expect(await thrown(env.GATEWAY.authorize(request(key, { usage: { ...usage, inputTokens: -1 } })))).toMatchObject({
      code: "INVALID_ARGUMENT",
    });
    const auth = await env.GATEWAY.authorize(request(key, { usage }));
    const base = { accountId, holdId: auth.holdId!, status: 200, latencyMs: 1, idempotencyKey: "x" };
    expect(await thrown(env.GATEWAY.settle({ ...base, actualCost: 3, usage: { operation: "llm" } }))).toMatchObject({
      code: "INVALID_ARGUMENT",
    });
    expect(await thrown(env.GATEWAY.settle(base as never))).toMatchObject({ code: "INVALID_ARGUMENT" });
    expect(await env.CREDITS.balance({ accountId })).toMatchObject({ held: 80, consumed: 0 });
  });
});
