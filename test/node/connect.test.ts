import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket as NodeWebSocket } from "ws";
import { connect, errorCodeOf, type Rule } from "../../rpc";
import { type DevServer, startTollgate } from "./wrangler-dev";

const TOKEN = "node-test-admin-token-5f0c2a";
const rules: Rule[] = [{ name: "minute", algorithm: "sliding_window", limit: 3, periodMs: 60_000 }];

let server: DevServer;
let rpcUrl: string;

beforeAll(async () => {
  server = await startTollgate({ vars: { TOLLGATE_ADMIN_TOKEN: TOKEN } });
  rpcUrl = `${server.url}/rpc`;
}, 120_000);

afterAll(async () => {
  await server?.stop();
});

async function caught(promise: PromiseLike<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected the call to throw");
}

describe("the rpc/ client from Node, against wrangler dev", () => {
  it("authenticates and checks in one HTTP batch", async () => {
    const decision = await connect(rpcUrl, { token: TOKEN }).rateLimits().check({ subject: "node:batch", rules });
    expect(decision).toMatchObject({ allowed: true, remaining: 2, deniedBy: [] });
    expect(decision.headers["RateLimit-Policy"]).toBe('"minute";q=3;w=60');
  });

  it("gets UNAUTHENTICATED for a wrong token", async () => {
    const error = await caught(connect(rpcUrl, { token: "wrong" }).whoami());
    expect(errorCodeOf(error)).toBe("UNAUTHENTICATED");
  });

  it("gets INVALID_ARGUMENT with details, and the response carries no stack trace", async () => {
    const realFetch = globalThis.fetch;
    const bodies: string[] = [];
    globalThis.fetch = async (input, init) => {
      const response = await realFetch(input, init);
      bodies.push(await response.clone().text());
      return response;
    };
    try {
      const error = await caught(connect(rpcUrl, { token: TOKEN }).rateLimits().check({ subject: "node:bad", rules, cost: -1 }));
      expect(errorCodeOf(error)).toBe("INVALID_ARGUMENT");
      expect((error as { details?: unknown }).details).toEqual([{ path: "cost", message: "must be at least 0" }]);
    } finally {
      globalThis.fetch = realFetch;
    }
    expect(bodies.join("\n")).toContain("INVALID_ARGUMENT");
    expect(bodies.join("\n")).not.toMatch(/\bat \S+ \(|\.ts:\d+|src\//);
  });

  it("keeps one WebSocket session for many calls (Node 20 needs a WebSocket implementation)", async () => {
    const socket = new NodeWebSocket(rpcUrl.replace(/^http/, "ws")) as unknown as WebSocket;
    const globals = globalThis as { WebSocket?: unknown };
    const hadGlobal = "WebSocket" in globals;
    // capnweb reads WebSocket.CONNECTING from the global scope.
    globals.WebSocket ??= NodeWebSocket;
    try {
      using api = connect(rpcUrl, { token: TOKEN, transport: "websocket", webSocket: socket });
      const limits = api.rateLimits();
      const remaining: number[] = [];
      for (let i = 0; i < 4; i++) remaining.push((await limits.check({ subject: "node:ws", rules })).remaining);
      expect(remaining).toEqual([2, 1, 0, 0]);
      expect(await api.whoami()).toEqual({ role: "admin" });
    } finally {
      if (!hadGlobal) delete globals.WebSocket;
    }
  });

  it("answers 404 outside /rpc", async () => {
    const response = await fetch(`${server.url}/`);
    expect(response.status).toBe(404);
  });
});
