import { env } from "cloudflare:workers";
import { SELF } from "cloudflare:test";
import { newWebSocketRpcSession, type RpcStub } from "capnweb";
import { describe, expect, it } from "vitest";
import type { AdminApi, TollgateRpc } from "../rpc/admin";
import type { Decision, Rule } from "../rpc/rate-limits";
import { TEST_ADMIN_TOKEN } from "./fixtures/constants";

const YEAR = 366 * 24 * 3_600_000;
const rules: Rule[] = [{ name: "year", algorithm: "fixed_window", limit: 1_000, periodMs: YEAR }];

async function openSession(): Promise<{ admin: RpcStub<AdminApi>; socket: WebSocket; root: RpcStub<TollgateRpc> }> {
  const response = await SELF.fetch("http://tollgate.test/rpc", { headers: { Upgrade: "websocket" } });
  const socket = response.webSocket!;
  socket.accept();
  const root = newWebSocketRpcSession<TollgateRpc>(socket);
  return { admin: root.authenticate(TEST_ADMIN_TOKEN) as unknown as RpcStub<AdminApi>, socket, root };
}

const used = async (subject: string) => {
  const decision = await env.LIMITS.peek({ subject, rules });
  return 1_000 - decision.remaining;
};

describe("caller faults", () => {
  it("a service-binding call given up on by its caller and retried with the same key takes effect once", async () => {
    const subject = "faults:timeout";
    const abandoned = env.LIMITS.check({ subject, rules, idempotencyKey: "request-1" });
    // The caller stops waiting at once (as a timeout would) and retries.
    const timedOut = await Promise.race([abandoned.then(() => false), Promise.resolve(true)]);
    expect(timedOut).toBe(true);
    const retried = await env.LIMITS.check({ subject, rules, idempotencyKey: "request-1" });
    expect(await abandoned).toEqual(retried);
    expect(await used(subject)).toBe(1);
  });

  it("a capnweb WebSocket dropped mid-session loses nothing acknowledged and double-counts nothing on retry", async () => {
    const subject = "faults:websocket";
    const first = await openSession();
    const limits = first.admin.rateLimits();
    const keys = Array.from({ length: 40 }, (_, i) => `ws-op-${i}`);
    const acknowledged = new Map<string, Decision>();
    const inFlight = keys.map((key) =>
      limits.check({ subject, rules, idempotencyKey: key }).then(
        (decision) => void acknowledged.set(key, decision),
        () => undefined, // lost with the connection: fate unknown to the caller
      ),
    );
    await inFlight[4]; // some calls are answered, the rest are still on the wire
    first.socket.close(1001, "client went away");
    await Promise.all(inFlight);

    const second = await openSession();
    const retryLimits = second.admin.rateLimits();
    for (const key of keys) {
      const decision = await retryLimits.check({ subject, rules, idempotencyKey: key });
      const original = acknowledged.get(key);
      if (original) expect(decision).toEqual(original);
    }
    expect(await used(subject)).toBe(keys.length);
    second.socket.close(1000, "done");
  });
});
