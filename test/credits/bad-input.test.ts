import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { thrown } from "../fixtures/errors";

const T0 = Date.UTC(2030, 0, 15, 12, 0, 0);

describe("CreditLedgerDO and Credits: bad input gets a clear code and changes nothing", () => {
  it("refuses negative, zero, fractional, unsafe and non-numeric amounts", async () => {
    const accountId = `bad-${Math.random().toString(16).slice(2, 10)}`;
    const ledger = env.TEST_CREDIT_LEDGER.getByName(accountId);
    await ledger.setClock(T0);
    await ledger.createAccount({ accountId, name: "Bad input" });
    await ledger.grant({ accountId, amount: 10, reason: "top-up", idempotencyKey: "g1" });
    const before = await ledger.entries({ accountId });
    for (const amount of [-1, 0, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53, 2 ** 50 + 1, "5", null]) {
      for (const call of [
        () => ledger.debit({ accountId, amount, reason: "x", idempotencyKey: "bad" } as never),
        () => ledger.grant({ accountId, amount, reason: "x", idempotencyKey: "bad" } as never),
        () => ledger.reserve({ accountId, amount, ttlMs: 1_000, idempotencyKey: "bad" } as never),
        () => env.CREDITS.debit({ accountId, amount, reason: "x", idempotencyKey: "bad" } as never),
      ]) {
        const error = await thrown(call());
        expect(error.code, `amount ${String(amount)}`).toBe("INVALID_ARGUMENT");
        expect(error.message).toMatch(/^\[INVALID_ARGUMENT\] invalid \w+ input at amount/);
      }
    }
    expect(await ledger.entries({ accountId })).toEqual(before);
    expect(await ledger.idempotencyKeys()).toEqual(["g1"]);
  });

  it("refuses over-long strings, unknown fields, control characters and malformed ids", async () => {
    const accountId = `bad-${Math.random().toString(16).slice(2, 10)}`;
    const ledger = env.TEST_CREDIT_LEDGER.getByName(accountId);
    await ledger.setClock(T0);
    await ledger.createAccount({ accountId, name: "Bad input" });
    const cases: [string, () => Promise<unknown>][] = [
      ["long reason", () => ledger.grant({ accountId, amount: 1, reason: "r".repeat(257), idempotencyKey: "a" })],
      ["long idempotency key", () => ledger.grant({ accountId, amount: 1, reason: "r", idempotencyKey: "k".repeat(129) })],
      ["control character", () => ledger.grant({ accountId, amount: 1, reason: "a\u0000b", idempotencyKey: "b" })],
      ["unknown field", () => ledger.grant({ accountId, amount: 1, reason: "r", idempotencyKey: "c", bonus: 5 } as never)],
      ["malformed hold id", () => ledger.commit({ accountId, holdId: "h_1", amount: 1, idempotencyKey: "d" })],
      ["malformed entry id", () => ledger.refund({ accountId, entryId: "../etc", reason: "r", idempotencyKey: "e" })],
      ["malformed key id", () => ledger.debit({ accountId, amount: 1, reason: "r", idempotencyKey: "f", keyId: "key-1" })],
      [
        "too many meta entries",
        () =>
          ledger.grant({
            accountId,
            amount: 1,
            reason: "r",
            idempotencyKey: "g",
            meta: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, "v"])),
          }),
      ],
      ["bad account id", () => env.CREDITS.createAccount({ accountId: "has_underscore", name: "x" })],
      ["long account id", () => env.CREDITS.createAccount({ accountId: "a".repeat(65), name: "x" })],
      ["ttl of zero", () => ledger.reserve({ accountId, amount: 1, ttlMs: 0, idempotencyKey: "h" })],
      ["negative priority", () => ledger.grant({ accountId, amount: 1, reason: "r", idempotencyKey: "i", priority: -1 })],
      ["past expiry", () => ledger.grant({ accountId, amount: 1, reason: "r", idempotencyKey: "j", expiresAt: T0 - 1 })],
      ["bad cursor", () => ledger.entries({ accountId, cursor: "abc" })],
      ["page too large", () => ledger.entries({ accountId, limit: 501 })],
      ["reversed usage range", () => ledger.usage({ accountId, range: { from: 10, to: 5 }, groupBy: "day" })],
      ["unknown groupBy", () => ledger.usage({ accountId, range: "24h", groupBy: "week" } as never)],
      ["fractional tokens", () => ledger.quote({ accountId, usage: { operation: "chat", inputTokens: 0.5 } })],
      ["setPrices without account", () => env.CREDITS.setPrices({ prices: [] })],
      [
        "duplicate prices",
        () =>
          ledger.setPrices({
            accountId,
            prices: [
              { operation: "a", model: "*" },
              { operation: "a", model: "*" },
            ],
          }),
      ],
    ];
    for (const [what, call] of cases) expect((await thrown(call())).code, what).toBe("INVALID_ARGUMENT");
    expect((await ledger.entries({ accountId })).items).toEqual([]);
    expect(await ledger.idempotencyKeys()).toEqual([]);
    expect((await ledger.prices({ accountId })).source).toBe("default");
  });

  it("refuses grants beyond 2^52 in total with RESOURCE_EXHAUSTED, so every total stays a safe integer", async () => {
    const accountId = `bad-${Math.random().toString(16).slice(2, 10)}`;
    const ledger = env.TEST_CREDIT_LEDGER.getByName(accountId);
    await ledger.createAccount({ accountId, name: "Big" });
    for (let i = 0; i < 4; i++) await ledger.grant({ accountId, amount: 2 ** 50, reason: "big", idempotencyKey: `g${i}` });
    expect((await thrown(ledger.grant({ accountId, amount: 1, reason: "one more", idempotencyKey: "g4" }))).code).toBe(
      "RESOURCE_EXHAUSTED",
    );
    expect(await ledger.balance({ accountId })).toMatchObject({ granted: 2 ** 52, available: 2 ** 52 });
    expect(await ledger.debit({ accountId, amount: 2 ** 50, reason: "big", idempotencyKey: "d" })).toMatchObject({
      ok: true,
      balance: { available: 3 * 2 ** 50 },
    });
  });

  it("answers NOT_FOUND for unknown accounts, holds, entries and keys", async () => {
    const accountId = `bad-${Math.random().toString(16).slice(2, 10)}`;
    expect((await thrown(env.CREDITS.debit({ accountId, amount: 1, reason: "x", idempotencyKey: "k" }))).code).toBe("NOT_FOUND");
    expect((await thrown(env.CREDITS.grant({ accountId, amount: 1, reason: "x", idempotencyKey: "k" }))).code).toBe("NOT_FOUND");
    expect((await thrown(env.CREDITS.createKey({ accountId, name: "x", scopes: ["*"] }))).code).toBe("NOT_FOUND");
    await env.CREDITS.createAccount({ accountId, name: "x" });
    const missing = "h_0123456789abcdef0123";
    expect((await thrown(env.CREDITS.commit({ accountId, holdId: missing, amount: 1, idempotencyKey: "c" }))).code).toBe("NOT_FOUND");
    expect(
      (await thrown(env.CREDITS.refund({ accountId, entryId: "e_0123456789abcdef0123", reason: "x", idempotencyKey: "r" }))).code,
    ).toBe("NOT_FOUND");
    expect((await thrown(env.CREDITS.revokeKey({ accountId, keyId: "k0123456789abcdef" }))).code).toBe("NOT_FOUND");
    expect(
      (await thrown(env.CREDITS.debit({ accountId, amount: 1, reason: "x", idempotencyKey: "d", keyId: "k0123456789abcdef" }))).code,
    ).toBe("NOT_FOUND");
    expect((await env.CREDITS.balance({ accountId })).granted).toBe(0);
  });
});
