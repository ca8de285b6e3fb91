import { SELF } from "cloudflare:test";
import { newHttpBatchRpcSession, newWebSocketRpcSession, type RpcStub } from "capnweb";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { AdminApi, TollgateRpc } from "../../rpc/admin";
import { errorCodeOf } from "../../rpc/errors";
import { TEST_ADMIN_TOKEN } from "../fixtures/constants";

const URL_RPC = "http://tollgate.test/rpc";
const rules = [{ name: "minute", algorithm: "sliding_window" as const, limit: 3, periodMs: 366 * 86_400_000 }];

/**
 * capnweb's HTTP batch client calls the global fetch; route it to the Worker under test and
 * keep each response body, to check what actually crossed the wire.
 */
let realFetch: typeof fetch;
let wire: string[] = [];
beforeEach(() => {
  realFetch = globalThis.fetch;
  wire = [];
  globalThis.fetch = (async (input: RequestInfo | URL, init?: RequestInit) => {
    const response = await SELF.fetch(input, init);
    wire.push(await response.clone().text());
    return response;
  }) as typeof fetch;
});
afterEach(() => {
  globalThis.fetch = realFetch;
});

function batch(): RpcStub<TollgateRpc> {
  return newHttpBatchRpcSession<TollgateRpc>(URL_RPC);
}

async function caught(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error("expected the call to throw");
}

describe("capnweb at /rpc", () => {
  it("authenticates and checks a limit in one pipelined HTTP batch", async () => {
    const admin = batch().authenticate(TEST_ADMIN_TOKEN) as unknown as RpcStub<AdminApi>;
    const decision = await admin.rateLimits().check({ subject: "capnweb:batch", rules });
    expect(decision).toMatchObject({ allowed: true, remaining: 2 });
  });

  it("reaches the credit ledger and its admin-only audit through AdminApi", async () => {
    const admin = () => batch().authenticate(TEST_ADMIN_TOKEN) as unknown as RpcStub<AdminApi>;
    const accountId = `capnweb-${Math.random().toString(16).slice(2, 10)}`;
    expect(await admin().credits().createAccount({ accountId, name: "capnweb" })).toMatchObject({ accountId });
    expect(await admin().credits().grant({ accountId, amount: 9, reason: "welcome", idempotencyKey: "g1" })).toMatchObject({
      kind: "grant",
      balanceAfter: 9,
    });
    expect(await admin().creditsAudit().verifyChain({ accountId })).toMatchObject({ ok: true, checked: 1 });
    const error = await caught(admin().credits().debit({ accountId, amount: -1, reason: "x", idempotencyKey: "d" }));
    expect(errorCodeOf(error)).toBe("INVALID_ARGUMENT");
  });

  it("records a hit and reads it back through AdminApi.pathStats(), the service the PathStats entrypoint serves", async () => {
    const admin = batch().authenticate(TEST_ADMIN_TOKEN) as unknown as RpcStub<AdminApi>;
    const stats = admin.pathStats();
    await stats.record({ ip: "192.0.2.44", method: "GET", path: "/capnweb/1" });
    const again = batch().authenticate(TEST_ADMIN_TOKEN) as unknown as RpcStub<AdminApi>;
    expect(await again.pathStats().clientStats({ ip: "192.0.2.44" })).toMatchObject({ ip: "192.0.2.0/24", totalRequests: 1 });
  });

  it("refuses a wrong token with UNAUTHENTICATED", async () => {
    const admin = batch().authenticate("not-the-token") as unknown as RpcStub<AdminApi>;
    const error = await caught(admin.whoami());
    expect(errorCodeOf(error)).toBe("UNAUTHENTICATED");
  });

  it("delivers INVALID_ARGUMENT with its code and details, and no stack trace", async () => {
    const admin = batch().authenticate(TEST_ADMIN_TOKEN) as unknown as RpcStub<AdminApi>;
    const error = await caught(admin.rateLimits().check({ subject: "capnweb:bad", rules, cost: 1.5 }));
    expect(errorCodeOf(error)).toBe("INVALID_ARGUMENT");
    expect(error.message).toMatch(/^\[INVALID_ARGUMENT\] invalid check input at cost/);
    expect((error as { details?: unknown }).details).toEqual([{ path: "cost", message: "must be a safe integer" }]);
    const sent = wire.join("\n");
    expect(sent).toContain("INVALID_ARGUMENT");
    expect(sent).not.toMatch(/\bat \S+ \(|\.ts:\d+|src\//);
  });

  it("serves a long-lived WebSocket session", async () => {
    const response = await SELF.fetch(URL_RPC, { headers: { Upgrade: "websocket" } });
    expect(response.status).toBe(101);
    const socket = response.webSocket!;
    socket.accept();
    using root = newWebSocketRpcSession<TollgateRpc>(socket);
    const admin = root.authenticate(TEST_ADMIN_TOKEN) as unknown as RpcStub<AdminApi>;
    const limits = admin.rateLimits();
    const first = await limits.check({ subject: "capnweb:ws", rules });
    const second = await limits.check({ subject: "capnweb:ws", rules });
    expect([first.remaining, second.remaining]).toEqual([2, 1]);
    expect(await admin.whoami()).toEqual({ role: "admin" });
  });

  it("streams a path-statistics export over a WebSocket session", async () => {
    const response = await SELF.fetch(URL_RPC, { headers: { Upgrade: "websocket" } });
    const socket = response.webSocket!;
    socket.accept();
    using root = newWebSocketRpcSession<TollgateRpc>(socket);
    const admin = root.authenticate(TEST_ADMIN_TOKEN) as unknown as RpcStub<AdminApi>;
    const now = Date.now();
    const stream = await admin.pathStats().export({ range: { from: now - 60_000, to: now }, format: "csv" });
    const text = await new Response(stream as unknown as ReadableStream).text();
    expect(text.startsWith("bucketStart,granularity,method,path,requests")).toBe(true);
  });

  it("answers 404 on every other path", async () => {
    for (const path of [
      "/",
      "/rpc/extra",
      "/admin",
      "/RPC",
      "/dashboardx",
      "/dashboard/no-such-file.js",
      "/index.html",
      "/dashboard.html",
    ]) {
      const response = await SELF.fetch(`http://tollgate.test${path}`);
      expect(response.status).toBe(404);
      expect(await response.json()).toMatchObject({ error: { code: "NOT_FOUND" } });
    }
  });

  it("serves the dashboard's static files under /dashboard/, for GET and HEAD only", async () => {
    const page = await SELF.fetch("http://tollgate.test/dashboard/");
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toMatch(/^text\/html/);
    expect(await page.text()).toContain('<form id="sign-in">');
    const css = await SELF.fetch("http://tollgate.test/dashboard/style.css", { method: "HEAD" });
    expect(css.status).toBe(200);
    await css.body?.cancel();
    const post = await SELF.fetch("http://tollgate.test/dashboard/", { method: "POST", body: "x" });
    expect(post.status).toBe(404);
    expect(await post.json()).toMatchObject({ error: { code: "NOT_FOUND" } });
  });

  it("refuses a body larger than the message limit before reading it", async () => {
    const response = await SELF.fetch(URL_RPC, { method: "POST", body: "x".repeat(1_048_577) });
    expect(response.status).toBe(413);
  });
});
