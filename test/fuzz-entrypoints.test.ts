import { env } from "cloudflare:workers";
import { SELF } from "cloudflare:test";
import { newHttpBatchRpcSession, type RpcStub } from "capnweb";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AdminApi, TollgateRpc } from "../rpc/admin";
import { errorCodeOf } from "../rpc/errors";
import { DAY_MS } from "../src/platform/buckets";
import { TEST_ADMIN_TOKEN } from "./fixtures/constants";
import { digestObject } from "./fixtures/digest";
import { ADAPTIVE_LIMITS_NAME, AGGREGATOR_NAME, ALERTS_NAME, shardName } from "../src/platform/names";

/**
 * Every public method of every entrypoint (Credits, PathStats, Admin and its sub-capabilities,
 * Gateway) and of the capnweb AdminApi, called with a valid input that has one field replaced,
 * removed or added, or with an arbitrary value. Every call ends in a value or a ServiceError
 * with a caller's code (never INTERNAL, never a hang: each case has a deadline), and a refused
 * call leaves every object it could reach byte-for-byte unchanged (digestObject).
 *
 * Time is pinned in every object a digest covers, so that only the call under test can change
 * it: an accepted `reserve` with a 3 ms ttl must not be released by the ledger's real alarm
 * between the digests around a later refusal. Replay a run with FUZZ_SEED=<seed printed below>.
 * The long suites get 180 s: on a loaded two-core machine they have taken over 90 s.
 */
const SEED = env.FUZZ_SEED ? Number(env.FUZZ_SEED) : Math.floor(Math.random() * 2 ** 31);
const CALLER_CODES = new Set(["INVALID_ARGUMENT", "NOT_FOUND", "CONFLICT", "UNIMPLEMENTED", "UNAUTHENTICATED", "RESOURCE_EXHAUSTED"]);
const ACCOUNT = "fuzz-acct";
const SHARDS = 16; // PATH_SHARDS in vitest.config.ts
/** Tried cases, by suite, for the closing report. */
const tried: Record<string, number> = {};

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
    0,
    1,
    "",
    " ",
    "\u0000",
    "\u202e",
    "\ud800",
    "😀".repeat(100),
    "x".repeat(100_000),
    "__proto__",
    "constructor",
    "*",
    "/",
    "1h",
    null,
    undefined,
    true,
    false,
    [],
    {},
    Array.from({ length: 5_000 }, () => 1),
  ),
  fc.string({ unit: "binary", maxLength: 200 }),
  fc.double(),
  fc.integer(),
);

const deep = fc.letrec((tie) => ({
  node: fc.oneof(
    { depthSize: "small" },
    nasty,
    fc.array(tie("node"), { maxLength: 4 }),
    fc.dictionary(fc.constantFrom("__proto__", "constructor", "prototype", "a", "accountId", "range", "amount"), tie("node"), {
      maxKeys: 4,
      noNullPrototype: true,
    }),
  ),
})).node;

/** Deeply nested: 200 levels of arrays and objects. */
const tower = fc.constantFrom("array", "object").map((kind) => {
  let value: unknown = 1;
  for (let i = 0; i < 200; i++) value = kind === "array" ? [value] : { accountId: value };
  return value;
});

type Sample = Record<string, unknown>;

/** Ids of live things in the fuzzed account, filled in beforeAll. */
const ids = { holdId: "", entryId: "", keyId: "", key: "" };
const now = Date.now();

const creditSamples: Record<string, () => Sample> = {
  createAccount: () => ({ accountId: "fuzz-new", name: "Fuzz", overdraftLimit: 0 }),
  account: () => ({ accountId: ACCOUNT }),
  balance: () => ({ accountId: ACCOUNT, at: now }),
  grant: () => ({ accountId: ACCOUNT, amount: 5, reason: "fuzz", idempotencyKey: "fuzz-grant", expiresAt: now + DAY_MS, priority: 1 }),
  debit: () => ({ accountId: ACCOUNT, amount: 1, reason: "fuzz", idempotencyKey: "fuzz-debit", keyId: ids.keyId, meta: { a: "b" } }),
  reserve: () => ({ accountId: ACCOUNT, amount: 1, ttlMs: 60_000, idempotencyKey: "fuzz-reserve" }),
  commit: () => ({ accountId: ACCOUNT, holdId: ids.holdId, amount: 1, idempotencyKey: "fuzz-commit" }),
  void: () => ({ accountId: ACCOUNT, holdId: ids.holdId, idempotencyKey: "fuzz-void" }),
  refund: () => ({ accountId: ACCOUNT, entryId: ids.entryId, amount: 1, reason: "fuzz", idempotencyKey: "fuzz-refund" }),
  hold: () => ({ accountId: ACCOUNT, holdId: ids.holdId }),
  entries: () => ({ accountId: ACCOUNT, limit: 10, since: 0, until: now + DAY_MS }),
  createKey: () => ({ accountId: ACCOUNT, name: "fuzz", scopes: ["credits.debit"], spendCap: { perDay: 10 } }),
  verifyKey: () => ({ key: ids.key, scope: "credits.debit" }),
  revokeKey: () => ({ accountId: ACCOUNT, keyId: ids.keyId }),
  rollKey: () => ({ accountId: ACCOUNT, keyId: ids.keyId, graceMs: 1_000 }),
  listKeys: () => ({ accountId: ACCOUNT }),
  setPrices: () => ({ accountId: ACCOUNT, prices: [{ operation: "chat", model: "*", request: 1_000_000 }] }),
  prices: () => ({ accountId: ACCOUNT }),
  quote: () => ({ accountId: ACCOUNT, usage: { operation: "chat", model: "m", inputTokens: 10 } }),
  charge: () => ({ accountId: ACCOUNT, usage: { operation: "chat", requests: 1 }, idempotencyKey: "fuzz-charge" }),
  usage: () => ({ accountId: ACCOUNT, range: "24h", groupBy: "day" }),
};
const auditSamples: Record<string, () => Sample> = {
  verifyChain: () => ({ accountId: ACCOUNT }),
  audit: () => ({ accountId: ACCOUNT }),
  auditReports: () => ({ accountId: ACCOUNT, limit: 5, divergent: false }),
};
const hit = () => ({
  ip: "198.51.100.7",
  method: "GET",
  path: "/fuzz/a",
  status: 200,
  latencyMs: 3,
  country: "DE",
  userAgent: "fuzz/1",
  at: Date.now() - 1_000,
});
const pathSamples: Record<string, () => Sample> = {
  record: hit,
  recordMany: () => ({ hits: [hit(), hit()] }),
  clientStats: () => ({ ip: "198.51.100.7", range: "24h" }),
  globalStats: () => ({ range: "1h" }),
  topPaths: () => ({ range: { from: now - DAY_MS, to: now }, limit: 5, sortBy: "errors" }),
  topClients: () => ({ range: "7d", limit: 5 }),
  pathDetail: () => ({ range: "24h", path: "/fuzz/a", method: "GET" }),
  export: () => ({ range: "1h", format: "csv" }),
};
const dataSamples: Record<string, () => Sample> = {
  backup: () => ({ to: "r2", accounts: [ACCOUNT], subjects: ["fuzz"], paths: false, control: true, protection: false }),
  restore: () => ({ backupId: "b-1700000000000-0123abcd", control: false }),
  importFromKv: () => ({ limit: 10, ruleName: "minute", subjectPrefix: "fuzz:", batch: 10 }),
  retention: () => ({ dataClass: "ledger.idempotency" }),
};
const adaptiveSamples: Record<string, () => Sample> = {
  setPolicy: () => ({
    name: "fuzz",
    signal: { kind: "p99_latency", path: "/fuzz/a", method: "GET", windowMs: 60_000, minRequests: 20 },
    tightenAbove: 500,
    relaxBelow: 100,
    dwellMs: 60_000,
    stages: [{ policy: "per-key", rules: ["hour"], factor: 0.5 }],
    evaluateEveryMs: 15_000,
  }),
  deletePolicy: () => ({ name: "fuzz-gone" }),
  history: () => ({ range: { from: now - DAY_MS, to: now }, policy: "fuzz", limit: 5 }),
};
const adaptiveObjects = () => [env.ADAPTIVE_LIMITS.getByName(ADAPTIVE_LIMITS_NAME)];
const protectionSamples: Record<string, () => Sample> = {
  allowList: () => ({}),
  allow: () => ({ cidr: "198.18.200.0/24", note: "fuzz" }),
  unallow: () => ({ cidr: "198.18.200.0/24" }),
  denyList: () => ({}),
  deny: () => ({ cidr: "198.18.201.0/24", untilMs: now + DAY_MS, reason: "fuzz" }),
  undeny: () => ({ cidr: "198.18.201.0/24" }),
  policy: () => ({}),
  setPolicy: () => ({ policy: { rateK: 5, scanMinShare: 0.6 } }),
  flagged: () => ({ range: "24h", limit: 10, client: "198.18.200.0/24" }),
};
const alertSamples: Record<string, () => Sample> = {
  setRule: () => ({
    kind: "denial_rate",
    ruleId: "fuzz-rule",
    subject: "fuzz",
    windowMs: 300_000,
    threshold: 0.5,
    minRequests: 10,
    intervalMs: 60_000,
    description: "fuzz",
  }),
  deleteRule: () => ({ ruleId: "fuzz-gone" }),
  list: () => ({ status: "firing", ruleId: "fuzz-rule", limit: 5 }),
  acknowledge: () => ({ alertId: "fuzz-rule#1" }),
  mute: () => ({ ruleId: "fuzz-seeded", untilMs: now + DAY_MS }),
  unmute: () => ({ ruleId: "fuzz-seeded" }),
};
const gatewaySamples: Record<string, () => Sample> = {
  authorize: () => ({ apiKey: ids.key, ip: "198.51.100.7", method: "GET", path: "/x", scope: "credits.debit", cost: 1 }),
  settle: () => ({ accountId: ACCOUNT, holdId: ids.holdId, actualCost: 1, status: 200, latencyMs: 5, idempotencyKey: "fuzz-settle" }),
};

/** A sample with one field (possibly nested) replaced, deleted or added; or an arbitrary value. */
function inputFor(sample: () => Sample): fc.Arbitrary<unknown> {
  const mutated = fc
    .record({ at: fc.nat(), value: fc.oneof(nasty, deep, tower), action: fc.constantFrom("replace", "delete", "add", "proto") })
    .map(({ at, value, action }) => {
      const input = sample();
      const fields = Object.keys(input);
      const field = fields[at % fields.length]!;
      const nested = input[field];
      let target: Record<string, unknown> = input;
      let key = field;
      if (nested !== null && typeof nested === "object" && at % 3 === 0) {
        target = nested as Record<string, unknown>;
        const inner = Object.keys(target);
        key = inner.length > 0 ? inner[at % inner.length]! : "0";
      }
      if (action === "delete") delete target[key];
      else if (action === "add") target[`extra${at % 3}`] = value;
      else if (action === "proto")
        Object.defineProperty(target, "__proto__", { value, enumerable: true, configurable: true, writable: true });
      else Object.defineProperty(target, key, { value, enumerable: true, configurable: true, writable: true });
      return input;
    });
  return fc.oneof(
    { weight: 4, arbitrary: mutated },
    { weight: 1, arbitrary: fc.oneof(deep, tower, fc.anything({ maxDepth: 3, withNullPrototype: false })) },
  );
}

async function outcome(call: () => Promise<unknown>): Promise<{ threw: boolean; code?: string }> {
  let timer: ReturnType<typeof setTimeout> | null = null;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error("hung"), { code: "HUNG" })), 20_000);
  });
  try {
    const value = await Promise.race([call(), deadline]);
    // An export streams: its errors surface while reading, so read it to the end.
    if (value instanceof ReadableStream) await Promise.race([new Response(value).arrayBuffer(), deadline]);
    return { threw: false };
  } catch (error) {
    if ((error as { code?: string }).code === "HUNG") return { threw: true, code: "HUNG" };
    // A capnweb HTTP batch refused as a whole (past RPC_LIMITS) fails in the client as a bare
    // "RPC request failed: 413"; the response body carries RESOURCE_EXHAUSTED (tested below).
    if (error instanceof Error && error.message.startsWith("RPC request failed: 413")) return { threw: true, code: "RESOURCE_EXHAUSTED" };
    return { threw: true, code: errorCodeOf(error) };
  } finally {
    if (timer !== null) clearTimeout(timer);
  }
}

/** Admin.metrics / costReport: read-only; input is validated before anything is flushed or queried. */
const metricsSamples: Record<string, () => Sample> = {
  metrics: () => ({ range: "1h" }),
  costReport: () => ({ range: { from: Date.now() - 3_600_000, to: Date.now() } }),
};

const ledger = () => env.CREDIT_LEDGER.getByName(ACCOUNT);
const pathObjects = () => [
  env.AGGREGATOR.getByName(AGGREGATOR_NAME),
  ...Array.from({ length: SHARDS }, (_, s) => env.PATH_COLLECTOR.getByName(shardName(s))),
];

async function digestAll(stubs: DurableObjectStub[]): Promise<string[]> {
  return Promise.all(stubs.map((stub) => digestObject(stub)));
}

/**
 * Runs every due and soon-due task of the path objects by hand, so no real alarm can change
 * their tables between the digests before and after a call.
 */
async function settlePaths(): Promise<void> {
  const later = Date.now() + 2 * DAY_MS;
  for (let s = 0; s < SHARDS; s++) await env.PATH_COLLECTOR.getByName(shardName(s)).runAlarmAt(later);
  await env.AGGREGATOR.getByName(AGGREGATOR_NAME).runAlarmAt(later);
}

/**
 * Rolls the ledgers' usage up now (a report does it first), so the roll-up an earlier accepted
 * case left on a timer cannot land between the digests before and after a call.
 */
async function settleLedgers(): Promise<void> {
  for (const accountId of [ACCOUNT, "fuzz-new"]) {
    await env.CREDIT_LEDGER.getByName(accountId)
      .usage({ accountId, range: "24h", groupBy: "day" })
      .catch(() => undefined);
  }
}

async function fuzz(
  suite: string,
  samples: Record<string, () => Sample>,
  target: () => Record<string, (input: unknown) => Promise<unknown>>,
  objects: () => DurableObjectStub[],
  runs: number,
): Promise<void> {
  const names = Object.keys(samples);
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom(...names).chain((name) => fc.tuple(fc.constant(name), inputFor(samples[name]!))),
      async ([name, input]) => {
        tried[suite] = (tried[suite] ?? 0) + 1;
        const stubs = objects();
        // Path objects first do every due and soon-due task, so no flush or compaction that an
        // earlier case left pending can land between the two digests.
        if (/pathStats/i.test(suite)) await settlePaths();
        await settleLedgers();
        const before = await digestAll(stubs);
        const result = await outcome(() => target()[name]!(input));
        if (result.threw) {
          expect(CALLER_CODES, `${suite}.${name}`).toContain(result.code);
          expect(await digestAll(stubs), `${suite}.${name} changed state while refusing`).toEqual(before);
        }
      },
    ),
    { numRuns: runs, seed: SEED },
  );
}

describe("fuzzing every entrypoint", () => {
  beforeAll(async () => {
    console.log(`fuzz seed: ${SEED} (replay with FUZZ_SEED=${SEED})`);
    // The ledgers' clocks stand still (kept in storage, so they outlive evictions): holds and
    // keys expire only when a test moves time, never between two digests.
    const pinnedNow = Date.now();
    for (const account of [ACCOUNT, "fuzz-new"]) await env.CREDIT_LEDGER.getByName(account).setClock(pinnedNow);
    await env.PROTECTION.getByName("protection").pinClock(pinnedNow);
    await env.CREDITS.createAccount({ accountId: ACCOUNT, name: "Fuzz", overdraftLimit: 3 });
    await env.CREDITS.grant({ accountId: ACCOUNT, amount: 1_000_000, reason: "seed", idempotencyKey: "seed" });
    const created = await env.CREDITS.createKey({ accountId: ACCOUNT, name: "seed", scopes: ["*"] });
    Object.assign(ids, { keyId: created.keyId, key: created.key });
    const hold = await env.CREDITS.reserve({ accountId: ACCOUNT, amount: 5, ttlMs: 30 * DAY_MS, idempotencyKey: "seed-hold" });
    const debit = await env.CREDITS.debit({ accountId: ACCOUNT, amount: 50, reason: "seed", idempotencyKey: "seed-debit" });
    if (!hold.ok || !debit.ok) throw new Error("seeding the fuzzed account failed");
    Object.assign(ids, { holdId: hold.holdId, entryId: debit.entry.entryId });
    await env.PATHS.record(hit());
    await settlePaths();
    // Far-future evaluations, so no real alarm of the adaptive controller changes it mid-case.
    await env.ADAPTIVE_LIMITS.getByName(ADAPTIVE_LIMITS_NAME).pinClock(now + 60 * DAY_MS);
    await env.ADMIN.alerts().setRule({ kind: "balance_below", ruleId: "fuzz-seeded", accountId: ACCOUNT, level: 10 });
  });

  afterAll(() => {
    console.log(`fuzz cases tried: ${JSON.stringify(tried)}`);
  });

  it("Credits: every method answers a value or a caller code, and a refusal changes nothing", async () => {
    await fuzz(
      "Credits",
      creditSamples,
      () => env.CREDITS as never,
      () => [ledger(), env.CREDIT_LEDGER.getByName("fuzz-new")],
      250,
    );
  });

  it("PathStats: every method answers a value or a caller code, and a refusal changes nothing", async () => {
    await fuzz("PathStats", pathSamples, () => env.PATHS as never, pathObjects, 150);
  }, 180_000);

  it("Admin: its sub-capabilities (creditsAudit included) answer the same way", async () => {
    expect(await env.ADMIN.whoami()).toEqual({ role: "admin" });
    await fuzz(
      "Admin.creditsAudit",
      auditSamples,
      () => env.ADMIN.creditsAudit() as never,
      () => [ledger()],
      60,
    );
    await fuzz(
      "Admin.credits",
      creditSamples,
      () => env.ADMIN.credits() as never,
      () => [ledger()],
      60,
    );
    // Backup, restore and KV import sit on Admin itself; a refused call leaves the ledger as it was.
    await fuzz(
      "Admin",
      dataSamples,
      () => env.ADMIN as never,
      () => [ledger()],
      60,
    );
    await fuzz("Admin.adaptive", adaptiveSamples, () => env.ADMIN.adaptive() as never, adaptiveObjects, 60);
    await env.ADMIN.adaptive().deletePolicy({ name: "fuzz" });
    await fuzz(
      "Admin.protection",
      protectionSamples,
      () => env.ADMIN.protection() as never,
      () => [env.PROTECTION.getByName("protection")],
      80,
    );
    // What the accepted calls set is undone, so later suites see the configured policy and empty lists.
    await env.ADMIN.protection().setPolicy({ policy: {} });
    for (const { cidr } of (await env.ADMIN.protection().allowList()).entries) await env.ADMIN.protection().unallow({ cidr });
    for (const { cidr } of (await env.ADMIN.protection().denyList()).entries) await env.ADMIN.protection().undeny({ cidr });
    await fuzz(
      "Admin.metrics",
      metricsSamples,
      () => env.ADMIN as never,
      () => [],
      40,
    );
    await fuzz(
      "Admin.alerts",
      alertSamples,
      () => env.ADMIN.alerts() as never,
      () => [env.ALERTS.getByName(ALERTS_NAME)],
      80,
    );
    await fuzz(
      "Admin.rateLimits",
      { peek: () => ({ subject: "fuzz", rules: [{ name: "r", algorithm: "token_bucket", limit: 5, periodMs: 60_000 }] }) },
      () => env.ADMIN.rateLimits() as never,
      () => [env.RATE_LIMITER.getByName("fuzz")],
      40,
    );
  }, 180_000);

  it("Gateway (the default entrypoint) answers a value or a caller code", async () => {
    await fuzz(
      "Gateway",
      gatewaySamples,
      () => env.GATEWAY as never,
      () => [ledger()],
      60,
    );
  });

  it("capnweb AdminApi: every domain's methods answer a value or a caller code, and a refusal changes nothing", async () => {
    const realFetch = globalThis.fetch;
    globalThis.fetch = ((input: RequestInfo | URL, init?: RequestInit) => SELF.fetch(input, init)) as typeof fetch;
    const session = (domain: "credits" | "creditsAudit" | "gateway" | "pathStats" | "adaptive" | "protection" | "alerts") => () => {
      const root = newHttpBatchRpcSession<TollgateRpc>("http://tollgate.test/rpc");
      const admin = root.authenticate(TEST_ADMIN_TOKEN) as unknown as RpcStub<AdminApi>;
      return admin[domain]() as never;
    };
    try {
      await fuzz("capnweb.credits", creditSamples, session("credits"), () => [ledger()], 120);
      await fuzz("capnweb.creditsAudit", auditSamples, session("creditsAudit"), () => [ledger()], 30);
      // Not export: a stream needs a WebSocket session (covered in test/path-stats/e2e.test.ts);
      // over an HTTP batch, capnweb itself cannot carry it.
      const { export: _stream, ...batchablePathSamples } = pathSamples;
      await fuzz("capnweb.pathStats", batchablePathSamples, session("pathStats"), pathObjects, 40);
      await fuzz("capnweb.gateway", gatewaySamples, session("gateway"), () => [ledger()], 20);
      await fuzz("capnweb.adaptive", adaptiveSamples, session("adaptive"), adaptiveObjects, 20);
      await env.ADMIN.adaptive().deletePolicy({ name: "fuzz" });
      await fuzz("capnweb.protection", protectionSamples, session("protection"), () => [env.PROTECTION.getByName("protection")], 30);
      await env.ADMIN.protection().setPolicy({ policy: {} });
      for (const { cidr } of (await env.ADMIN.protection().allowList()).entries) await env.ADMIN.protection().unallow({ cidr });
      for (const { cidr } of (await env.ADMIN.protection().denyList()).entries) await env.ADMIN.protection().undeny({ cidr });
      const adminSession = () => newHttpBatchRpcSession<TollgateRpc>("http://tollgate.test/rpc").authenticate(TEST_ADMIN_TOKEN) as never;
      await fuzz("capnweb.metrics", metricsSamples, adminSession, () => [], 20);
      await fuzz("capnweb.alerts", alertSamples, session("alerts"), () => [env.ALERTS.getByName(ALERTS_NAME)], 30);
    } finally {
      globalThis.fetch = realFetch;
    }
  }, 180_000);

  it("refuses a capnweb batch nested past the depth limit with 413 RESOURCE_EXHAUSTED, not an uncaught exception", async () => {
    let value: unknown = 1;
    for (let i = 0; i < 100; i++) value = [[value]];
    const body = [
      ["push", ["pipeline", 0, ["authenticate"], [TEST_ADMIN_TOKEN]]],
      ["push", ["pipeline", 1, ["credits"], []]],
      ["push", ["pipeline", 2, ["account"], [value]]],
      ["pull", 3],
    ]
      .map((message) => JSON.stringify(message))
      .join("\n");
    const response = await SELF.fetch("http://tollgate.test/rpc", { method: "POST", body });
    expect(response.status).toBe(413);
    expect(await response.json()).toEqual({ error: { code: "RESOURCE_EXHAUSTED", message: expect.stringContaining("depth") } });
  });
});
