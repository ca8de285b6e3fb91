import { SELF } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { newHttpBatchRpcSession, newWebSocketRpcSession, type RpcStub } from "capnweb";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { AccountApi, TollgateRpc } from "../../rpc/admin";
import { errorCodeOf } from "../../rpc/errors";
import { formatKey, parseKey } from "../../src/credits/keys";

const URL_RPC = "http://tollgate.test/rpc";

let realFetch: typeof fetch;
beforeEach(() => {
  realFetch = globalThis.fetch;
  globalThis.fetch = ((input: RequestInfo | URL, init?: RequestInit) => SELF.fetch(input, init)) as typeof fetch;
});
afterEach(() => {
  globalThis.fetch = realFetch;
});

interface Customer {
  accountId: string;
  keyId: string;
  key: string;
}

async function customer(name: string, credits: number): Promise<Customer> {
  const accountId = `iso-${name}-${crypto.randomUUID().slice(0, 6)}`;
  await env.CREDITS.createAccount({ accountId, name });
  await env.CREDITS.grant({ accountId, amount: credits, reason: `grant for ${name}`, idempotencyKey: "g" });
  await env.CREDITS.debit({ accountId, amount: 1, reason: `spend of ${name}`, idempotencyKey: "d" });
  const { key, keyId } = await env.CREDITS.createKey({ accountId, name: `key of ${name}`, scopes: ["api.read"] });
  return { accountId, keyId, key };
}

/** A capnweb root over either transport; for HTTP batch, one batch per `root()` call. */
async function transport(kind: "http-batch" | "websocket"): Promise<() => RpcStub<TollgateRpc>> {
  if (kind === "http-batch") return () => newHttpBatchRpcSession<TollgateRpc>(URL_RPC);
  const response = await SELF.fetch(URL_RPC, { headers: { Upgrade: "websocket" } });
  const socket = response.webSocket!;
  socket.accept();
  const root = newWebSocketRpcSession<TollgateRpc>(socket);
  return () => root;
}

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (error) {
    return errorCodeOf(error) ?? `not a tollgate error: ${(error as Error).message}`;
  }
  throw new Error("expected the call to throw");
}

let alice: Customer;
let bob: Customer;
beforeAll(async () => {
  alice = await customer("alice", 50);
  bob = await customer("bob", 70);
});

for (const kind of ["http-batch", "websocket"] as const) {
  describe(`AccountApi over ${kind}`, () => {
    it("authenticates an API key as its own account and shows that account's data only", async () => {
      const root = await transport(kind);
      const api = () => root().authenticate(alice.key) as unknown as RpcStub<AccountApi>;
      expect(await api().whoami()).toEqual({ role: "account", accountId: alice.accountId, keyId: alice.keyId });
      expect(await api().account()).toMatchObject({ accountId: alice.accountId, name: "alice" });
      expect(await api().balance()).toMatchObject({ available: 49, granted: 50, consumed: 1 });
      const entries = await api().entries({ limit: 10 });
      expect(entries.items.map((e) => e.reason)).toEqual(["grant for alice", "spend of alice"]);
      const usage = await api().usage({ range: "24h", groupBy: "day" });
      expect(usage.items.reduce((sum, item) => sum + item.amount, 0)).toBe(1);
      const { keys } = await api().keys();
      expect(keys.map((k) => k.keyId)).toEqual([alice.keyId]);
      expect(JSON.stringify(keys)).not.toContain(alice.key.split("_")[3]);
    });

    it("cannot reach another account through any method or argument", async () => {
      const root = await transport(kind);
      const api = () => root().authenticate(alice.key) as unknown as RpcStub<AccountApi>;
      const loose = () => api() as unknown as Record<string, (input?: unknown) => Promise<unknown>>;
      const other = { accountId: bob.accountId };
      // Methods with input refuse an account id outright.
      expect(await codeOf(loose().balance!(other))).toBe("INVALID_ARGUMENT");
      expect(await codeOf(loose().entries!(other))).toBe("INVALID_ARGUMENT");
      expect(await codeOf(loose().usage!({ ...other, range: "24h", groupBy: "day" }))).toBe("INVALID_ARGUMENT");
      // Methods without input ignore whatever is passed: still alice's account.
      expect(await loose().account!(other)).toMatchObject({ accountId: alice.accountId });
      expect(((await loose().keys!(other)) as { keys: { keyId: string }[] }).keys.map((k) => k.keyId)).toEqual([alice.keyId]);
      // The admin surface is not there at all.
      for (const method of ["credits", "rateLimits", "pathStats", "creditsAudit", "gateway"]) {
        const code = await codeOf(loose()[method]!());
        expect(code).not.toBeUndefined();
      }
      // Nothing of bob's came back through any of it.
      const everything = JSON.stringify([await api().account(), await api().balance(), await api().entries(), await api().keys()]);
      expect(everything).not.toContain(bob.accountId);
      expect(everything).not.toContain("bob");
    });

    it("refuses a wrong token, a forged key and a revoked key with UNAUTHENTICATED", async () => {
      const root = await transport(kind);
      const parts = parseKey(bob.key)!;
      const forged = formatKey(parts.accountId, parts.keyId, "f".repeat(48));
      for (const token of ["wrong-token", forged, bob.key.slice(0, -2), ""]) {
        expect(await codeOf((root().authenticate(token) as unknown as RpcStub<AccountApi>).whoami())).toBe("UNAUTHENTICATED");
      }
      const temp = await env.CREDITS.createKey({ accountId: bob.accountId, name: "temp", scopes: [] });
      const api = root().authenticate(temp.key) as unknown as RpcStub<AccountApi>;
      expect(await api.balance()).toMatchObject({ granted: 70 });
      await env.CREDITS.revokeKey({ accountId: bob.accountId, keyId: temp.keyId });
      // For WebSocket this is the same capability as before the revocation: its next call fails.
      const after = kind === "websocket" ? api : (root().authenticate(temp.key) as unknown as RpcStub<AccountApi>);
      expect(await codeOf(after.balance())).toBe("UNAUTHENTICATED");
    });
  });
}
