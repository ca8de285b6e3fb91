/**
 * Calling tollgate from Node (or any program outside Workers) over capnweb.
 *
 *   TOLLGATE_URL=http://127.0.0.1:8787/rpc TOLLGATE_TOKEN=<admin token> npx tsx examples/node/client.ts
 */
import { connect, errorCodeOf } from "../../rpc";

const url = process.env.TOLLGATE_URL ?? "http://127.0.0.1:8787/rpc";
const token = process.env.TOLLGATE_TOKEN ?? "";
const subject = "key:node-demo";
const rules = [{ name: "minute", algorithm: "sliding_window" as const, limit: 5, periodMs: 60_000 }];

// HTTP batch: authenticate and check travel in one request (promise pipelining).
const decision = await connect(url, { token }).rateLimits().check({ subject, rules });
console.log("one round trip:", { allowed: decision.allowed, remaining: decision.remaining });

// Errors arrive with their code, never a stack.
try {
  await connect(url, { token }).rateLimits().check({ subject, rules, cost: -1 });
} catch (error) {
  console.log("bad input is refused with code", errorCodeOf(error));
}

// WebSocket: one session for many calls (Node 22+ has a global WebSocket).
if (typeof WebSocket !== "undefined") {
  using api = connect(url, { token, transport: "websocket" });
  const limits = api.rateLimits();
  for (let i = 0; i < 3; i++) {
    const { allowed, remaining } = await limits.peek({ subject, rules });
    console.log("websocket peek:", { allowed, remaining });
  }
}

// Credits: an account, a grant, and a hold captured at the real cost.
// (An HTTP batch session ends at its first await, so each step opens a new one.)
const credits = () => connect(url, { token }).credits();
const accountId = `node-demo-${Date.now()}`;
await credits().createAccount({ accountId, name: "Node demo" });
await credits().grant({ accountId, amount: 100, reason: "welcome credit", idempotencyKey: "welcome" });
const hold = await credits().reserve({ accountId, amount: 10, ttlMs: 60_000, idempotencyKey: "call-1" });
if (hold.ok) {
  const settled = await credits().commit({ accountId, holdId: hold.holdId, amount: 7, idempotencyKey: "call-1-commit" });
  console.log("held 10, captured 7:", settled.ok ? settled.balance : settled.code);
}
const { key } = await credits().createKey({ accountId, name: "demo", scopes: ["credits.*"] });
console.log("a key verifies:", (await credits().verifyKey({ key, scope: "credits.debit" })).valid);

// Path statistics (the example gateway records every request it serves).
const top = await connect(url, { token }).pathStats().topPaths({ range: "1h", limit: 5 });
console.log(
  "top paths in the last hour:",
  top.paths.map(({ method, path, requests }) => ({ method, path, requests })),
);
