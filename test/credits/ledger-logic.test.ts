import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { burnDownOrder, drawFromGrants, type GrantBucket, mergeDraws, splitDraws } from "../../src/credits/burn-down";
import { entryHash, GENESIS_HASH, verifyChain } from "../../src/credits/chain";
import { crc32 } from "../../src/credits/crc32";
import { checkInvariants, dayOf, monthOf } from "../../src/credits/invariants";
import { formatKey, MAX_KEY_LENGTH, parseKey, scopeAllows } from "../../src/credits/keys";
import { ceilCost, exactCost, findPrice, withCarry } from "../../src/credits/pricing";
import { sha256Hex, toHex } from "../../src/credits/sha256";

describe("sha256", () => {
  it("matches the known test vectors", () => {
    expect(sha256Hex("")).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect(sha256Hex("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  });

  it("agrees with crypto.subtle on strings of every length around the block boundaries", async () => {
    for (const length of [1, 55, 56, 63, 64, 65, 119, 120, 1_000]) {
      const text = "é".repeat(length).slice(0, length) + "x".repeat(length);
      const expected = toHex(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text))));
      expect(sha256Hex(text)).toBe(expected);
    }
  });
});

describe("crc32", () => {
  it("matches the standard check value", () => {
    expect(crc32("123456789")).toBe(0xcbf43926);
  });
});

describe("API key strings", () => {
  const key = formatKey("acme-1", "k0123456789abcdef", "ab".repeat(24));

  it("round-trip through parseKey and fit MAX_KEY_LENGTH", () => {
    expect(parseKey(key)).toEqual({ accountId: "acme-1", keyId: "k0123456789abcdef", secret: "ab".repeat(24) });
    expect(formatKey("a".repeat(64), "k0123456789abcdef", "ab".repeat(24)).length).toBe(MAX_KEY_LENGTH);
  });

  it("reject every single-character change (the checksum catches typos)", () => {
    const alphabet = "0123456789abcdef_-gkt";
    for (let i = 0; i < key.length; i++) {
      for (const c of alphabet) {
        if (c === key[i]) continue;
        expect(parseKey(key.slice(0, i) + c + key.slice(i + 1))).toBeUndefined();
      }
    }
  });

  it("reject anything else without throwing", () => {
    fc.assert(fc.property(fc.anything(), (value) => parseKey(value) === undefined || typeof value === "string"));
    for (const bad of ["", "tg", `${key}0`, key.toUpperCase(), key.replace("tg_", "sk_"), `${key}_x`])
      expect(parseKey(bad)).toBeUndefined();
  });

  it("match scopes exactly, by resource wildcard, or by *", () => {
    expect(scopeAllows(["credits.debit"], "credits.debit")).toBe(true);
    expect(scopeAllows(["credits.debit"], "credits.grant")).toBe(false);
    expect(scopeAllows(["credits.*"], "credits.grant")).toBe(true);
    expect(scopeAllows(["credits.*"], "creditsx.grant")).toBe(false);
    expect(scopeAllows(["*"], "anything.at")).toBe(true);
    expect(scopeAllows([], "credits.debit")).toBe(false);
  });
});

describe("burn-down", () => {
  const grant = (grantId: string, remaining: number, priority: number, expiresAt: number | null, seq: number): GrantBucket => ({
    grantId,
    remaining,
    priority,
    expiresAt,
    seq,
  });

  it("orders by priority, then soonest expiry (none last), then age", () => {
    const grants = [
      grant("never", 1, 0, null, 1),
      grant("late", 1, 0, 200, 2),
      grant("soon-new", 1, 0, 100, 4),
      grant("soon-old", 1, 0, 100, 3),
      grant("low", 1, 5, 50, 0),
    ];
    expect([...grants].sort(burnDownOrder).map((g) => g.grantId)).toEqual(["soon-old", "soon-new", "late", "never", "low"]);
  });

  it("draws exactly the amount, skipping expired and empty grants, and reports the shortfall", () => {
    const grants = [grant("a", 3, 0, 100, 1), grant("expired", 50, 0, 10, 2), grant("empty", 0, 0, null, 3), grant("b", 4, 1, null, 4)];
    expect(drawFromGrants(grants, 5, 10)).toEqual({
      draws: [
        { grantId: "a", amount: 3 },
        { grantId: "b", amount: 2 },
      ],
      shortfall: 0,
    });
    expect(drawFromGrants(grants, 9, 10)).toEqual({
      draws: [
        { grantId: "a", amount: 3 },
        { grantId: "b", amount: 4 },
      ],
      shortfall: 2,
    });
  });

  it("never draws more than asked or than a grant holds (property)", () => {
    const bucket = fc.record({ remaining: fc.nat(100), priority: fc.nat(3), expiresAt: fc.option(fc.nat(100)), seq: fc.nat(1_000) });
    fc.assert(
      fc.property(fc.array(bucket, { maxLength: 8 }), fc.nat(500), fc.nat(100), (raw, amount, nowMs) => {
        const grants = raw.map((g, i) => ({ ...g, grantId: `g${i}` }));
        const { draws, shortfall } = drawFromGrants(grants, amount, nowMs);
        const drawn = draws.reduce((sum, d) => sum + d.amount, 0);
        expect(drawn + shortfall).toBe(amount);
        for (const d of draws) {
          const g = grants.find((x) => x.grantId === d.grantId)!;
          expect(d.amount).toBeGreaterThan(0);
          expect(d.amount).toBeLessThanOrEqual(g.remaining);
          expect(g.expiresAt === null || g.expiresAt > nowMs).toBe(true);
        }
      }),
    );
  });

  it("splits and merges draws without losing a unit", () => {
    const draws = [
      { grantId: "a", amount: 3 },
      { grantId: null, amount: 2 },
      { grantId: "a", amount: 1 },
    ];
    expect(splitDraws(draws, 4)).toEqual({
      taken: [
        { grantId: "a", amount: 3 },
        { grantId: null, amount: 1 },
      ],
      left: [
        { grantId: null, amount: 1 },
        { grantId: "a", amount: 1 },
      ],
    });
    expect(mergeDraws(draws)).toEqual([
      { grantId: "a", amount: 4 },
      { grantId: null, amount: 2 },
    ]);
  });
});

describe("pricing", () => {
  const price = { operation: "chat", model: "big", inputTokens: 3, outputTokens: 15, request: 1 };

  it("prefers the exact price, then the operation's *, then the catch-all", () => {
    const book = [{ operation: "*", model: "*" }, { operation: "chat", model: "*" }, price];
    expect(findPrice(book, "chat", "big")).toBe(price);
    expect(findPrice(book, "chat", "small")).toBe(book[1]);
    expect(findPrice(book, "embed", "x")).toBe(book[0]);
    expect(findPrice([price], "embed", "x")).toBeUndefined();
  });

  it("charges whole credits and carries the rest, so n charges sum to floor of the exact total (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.record({ inputTokens: fc.nat(5_000_000), outputTokens: fc.nat(1_000_000) }), { maxLength: 30 }), (calls) => {
        let carry = 0;
        let charged = 0n;
        let exactTotal = 0n;
        for (const call of calls) {
          const exact = exactCost(price, { operation: "chat", ...call });
          const next = withCarry(exact, carry);
          expect(next.cost).toBeLessThanOrEqual(ceilCost(exact));
          expect(next.carry).toBeGreaterThanOrEqual(0);
          expect(next.carry).toBeLessThan(1_000_000);
          carry = next.carry;
          charged += next.cost;
          exactTotal += exact;
        }
        expect(charged).toBe(exactTotal / 1_000_000n);
        expect(BigInt(carry)).toBe(exactTotal % 1_000_000n);
      }),
    );
  });
});

describe("hash chain", () => {
  const rows = (bodies: string[]) => {
    let prev = GENESIS_HASH;
    return bodies.map((body, i) => {
      const hash = entryHash(prev, body);
      const row = { seq: i + 1, body, prevHash: prev, hash };
      prev = hash;
      return row;
    });
  };

  it("verifies an intact chain and pinpoints a changed, dropped or reordered entry", () => {
    const chain = rows(["a", "b", "c", "d"]);
    expect(verifyChain(chain)).toMatchObject({ ok: true, checked: 4, headHash: chain[3]!.hash });
    expect(verifyChain(chain.map((r, i) => (i === 2 ? { ...r, body: "C" } : r)))).toMatchObject({ ok: false, brokenAtSeq: 3, checked: 2 });
    expect(verifyChain([chain[0]!, chain[2]!, chain[3]!])).toMatchObject({ ok: false, brokenAtSeq: 3 });
    expect(verifyChain([chain[1]!, chain[0]!])).toMatchObject({ ok: false });
    expect(verifyChain(chain.slice(2), chain[1]!.hash, 3)).toMatchObject({ ok: true, checked: 2 });
  });
});

describe("invariants", () => {
  const healthy = {
    stored: { granted: 10, held: 2, consumed: 3, expired: 1, heldDebt: 0, consumedDebt: 0 },
    fromEntries: { granted: 10, held: 2, consumed: 3, expired: 1 },
    lastBalanceAfter: 4,
    brokenBalanceAfter: [],
    overdraftLimit: 0,
    grants: [{ grantId: "g", amount: 10, remaining: 4, allocated: 2, consumed: 3, expired: 1 }],
    openHolds: 2,
    allocations: 2,
    unfundedAllocations: 0,
  };

  it("holds for a consistent ledger and names each broken one", () => {
    expect(checkInvariants(healthy)).toEqual([]);
    expect(checkInvariants({ ...healthy, stored: { ...healthy.stored, granted: 11 } })).toContain(
      "granted: stored 11, re-derived from entries 10",
    );
    expect(checkInvariants({ ...healthy, openHolds: 3 }).join()).toContain("open holds sum to 3");
    expect(checkInvariants({ ...healthy, stored: { ...healthy.stored, consumedDebt: 5 }, overdraftLimit: 2 }).join()).toContain(
      "exceeds the overdraft limit",
    );
  });

  it("buckets times into UTC days and months", () => {
    expect(dayOf(Date.UTC(2030, 11, 31, 23, 59))).toBe("2030-12-31");
    expect(monthOf(Date.UTC(2030, 11, 31, 23, 59))).toBe("2030-12");
  });
});
