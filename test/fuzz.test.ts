import { env } from "cloudflare:workers";
import { SELF } from "cloudflare:test";
import { newHttpBatchRpcSession, type RpcStub } from "capnweb";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { AdminApi, TollgateRpc } from "../rpc/admin";
import { errorCodeOf } from "../rpc/errors";
import type { Rule } from "../rpc/rate-limits";
import { TEST_ADMIN_TOKEN } from "./fixtures/constants";
import { digestObject } from "./fixtures/digest";

/** Codes a caller's bad input may earn. INTERNAL (or no code at all) is always a bug. */
const CALLER_CODES = new Set(["INVALID_ARGUMENT", "NOT_FOUND", "CONFLICT", "UNIMPLEMENTED", "UNAUTHENTICATED"]);
const SUBJECTS = ["fuzz:a", "fuzz:b"];
const YEAR = 366 * 24 * 3_600_000;
const validRule: Rule = { name: "fuzz", algorithm: "fixed_window", limit: 5, periodMs: YEAR };

/** Hostile scalars: the values that break naive validation. */
const nasty = fc.oneof(
  fc.constantFrom(
    Number.NaN,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
    -0,
    2 ** 53,
    -(2 ** 53),
    1e308,
    0.5,
    -1,
    "",
    " ",
    "\u0000",
    "\u202e",
    "\ud800",
    "😀".repeat(100),
    "x".repeat(100_000),
    "__proto__",
    "constructor",
    null,
    true,
    false,
    [],
    {},
  ),
  fc.string({ unit: "binary", maxLength: 300 }),
  fc.double(),
  fc.integer(),
);

/**
 * A nested object, arrays and keys such as __proto__ included. (Objects without a prototype
 * are left out: Workers RPC refuses to serialize them on the caller's side, so they never
 * reach tollgate.)
 */
const deep = fc.letrec((tie) => ({
  node: fc.oneof(
    { depthSize: "small" },
    nasty,
    fc.array(tie("node"), { maxLength: 4 }),
    fc.dictionary(fc.constantFrom("__proto__", "constructor", "prototype", "a", "subject", "rules"), tie("node"), {
      maxKeys: 4,
      noNullPrototype: true,
    }),
  ),
})).node;

/** A valid check input with one field replaced, removed or added. */
const mutatedCheck = fc
  .record({
    subject: fc.constantFrom(...SUBJECTS),
    field: fc.constantFrom(
      "subject",
      "rules",
      "policy",
      "cost",
      "idempotencyKey",
      "rules.0.limit",
      "rules.0.periodMs",
      "rules.0.name",
      "rules.0.algorithm",
      "rules.0.extra",
      "extra",
      "__proto__",
    ),
    value: fc.oneof(nasty, deep),
  })
  .map(({ subject, field, value }) => {
    const input: Record<string, unknown> = { subject, rules: [{ ...validRule }] };
    const path = field.split(".");
    let target: Record<string, unknown> = input;
    for (const part of path.slice(0, -1)) target = target[part] as Record<string, unknown>;
    Object.defineProperty(target, path.at(-1)!, { value, enumerable: true, configurable: true, writable: true });
    return { subject, input };
  });

async function outcome(call: () => Promise<unknown>): Promise<{ threw: boolean; code?: string }> {
  try {
    await call();
    return { threw: false };
  } catch (error) {
    return { threw: true, code: errorCodeOf(error) };
  }
}

let cases = 0;

describe("fuzzing the rate-limit API", () => {
  it("answers every malformed call through a service binding with a caller code, and changes nothing", async () => {
    const limits = env.LIMITS;
    await fc.assert(
      fc.asyncProperty(mutatedCheck, fc.constantFrom("check", "peek", "reset"), async ({ subject: base, input }, method) => {
        // A fresh object per case: no expiry task left by an earlier accepted case (60 s after
        // a short period) can fire between this case's two digests.
        const subject = `${base}:${++cases}`;
        if (input.subject === base) input.subject = subject;
        const stub = env.RATE_LIMITER.getByName(subject);
        await stub.peek({ subject, rules: [validRule] }); // make sure the object exists
        const before = await digestObject(stub);
        const result = await outcome(() => (limits[method] as (input: unknown) => Promise<unknown>)(input));
        if (result.threw) {
          expect(CALLER_CODES).toContain(result.code);
          expect(await digestObject(stub)).toBe(before);
        }
      }),
      { numRuns: 250 },
    );
  });

  it("answers arbitrary values with INVALID_ARGUMENT and never INTERNAL", async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(deep, fc.anything({ maxDepth: 3, withNullPrototype: false })), async (input) => {
        const result = await outcome(() => env.LIMITS.check(input as never));
        expect(result.threw).toBe(true);
        expect(result.code).toBe("INVALID_ARGUMENT");
      }),
      { numRuns: 100 },
    );
  });

  it("answers malformed capnweb calls with a caller code, never INTERNAL", async () => {
    const realFetch = globalThis.fetch;
    globalThis.fetch = ((input: RequestInfo | URL, init?: RequestInit) => SELF.fetch(input, init)) as typeof fetch;
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            mutatedCheck.map((m) => m.input),
            deep,
          ),
          fc.oneof(fc.constant(TEST_ADMIN_TOKEN), nasty),
          async (input, token) => {
            const root = newHttpBatchRpcSession<TollgateRpc>("http://tollgate.test/rpc");
            const admin = root.authenticate(token as string) as unknown as RpcStub<AdminApi>;
            const result = await outcome(() => admin.rateLimits().check(input as never));
            if (result.threw) expect(CALLER_CODES).toContain(result.code);
            if (token !== TEST_ADMIN_TOKEN) expect(result).toEqual({ threw: true, code: "UNAUTHENTICATED" });
          },
        ),
        { numRuns: 150 },
      );
    } finally {
      globalThis.fetch = realFetch;
    }
  });
});
