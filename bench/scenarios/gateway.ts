/**
 * tollgate: the gateway hot path through the `Gateway` entrypoint. `authorize` anonymous
 * (one limiter call), with a key and `estimate` (limiter and ledger in parallel), with a
 * fixed `cost`; `authorize` + `settle`; and the keyed work done as separate sequential calls
 * (verifyKey, reserve, check) to show what the parallel, single-transaction path saves.
 * Accounts and keys are created and funded once, untimed; the per-IP policy never denies
 * (bench/harness/workerd.ts: BENCH_GATEWAY_IP_POLICY).
 */
import type { AuthorizeInput, AuthorizeResult } from "../../rpc/gateway";
import { disposeResult } from "../harness/stats";
import type { AnyOp, DriverEnv, Json, Params, Scenario } from "../harness/types";
import { CEILING_OPS, HOT_PATH_SUBJECTS } from "./ceiling";

/** Enough that no run ever exhausts an account. */
const FUNDING = 1_000_000_000_000;
/** Holds are left open by the authorize-only rows: long enough that no expiry alarm fires during a run. */
const HOLD_TTL_MS = 24 * 3_600_000;
/** Mirrors BENCH_GATEWAY_IP_POLICY (a scenario file stays neutral: no import of the Node-side harness). */
const IP_POLICY = "bench-per-ip";

const accountAt = (params: Params, index: number) => `${String(params.prefix)}-${index % Number(params.subjects)}`;
/** One client IP per subject, the same objects every row uses. */
const ipAt = (params: Params, index: number) => `10.${Number(params.net)}.0.${index % Number(params.subjects)}`;
const keyAt = (params: Params, index: number) => (params.keys as string[])[index % (params.keys as string[]).length]!;

const nonce = async () => crypto.randomUUID();

function request(params: Params, i: number, extra: Partial<AuthorizeInput>): AuthorizeInput {
  return { ip: ipAt(params, i), method: "GET", path: `/v1/items/${i % 50}`, ...extra };
}

async function admitted(result: Promise<AuthorizeResult>): Promise<AuthorizeResult> {
  const answer = await result;
  if (!answer.allowed) throw new Error(`authorize refused: ${answer.status} ${answer.code}; the measurement would be of the wrong path`);
  return answer;
}

const ops: Record<string, AnyOp> = {
  "gateway.setup": {
    async call(env: DriverEnv, params: Params): Promise<Json> {
      const keys: string[] = [];
      for (let i = 0; i < Number(params.subjects); i++) {
        const accountId = accountAt(params, i);
        disposeResult(await env.CREDITS.createAccount({ accountId, name: accountId }));
        disposeResult(
          await env.CREDITS.grant({ accountId, amount: FUNDING, reason: "bench funding", idempotencyKey: `fund-${accountId}` }),
        );
        const created = await env.CREDITS.createKey({ accountId, name: "bench", scopes: ["*"] });
        keys.push(created.key);
        disposeResult(created);
      }
      return keys;
    },
  },
  "gateway.authorize.anonymous": {
    call: (env: DriverEnv, params: Params, _state, i) => admitted(env.GATEWAY.authorize(request(params, i, {}))),
  },
  "gateway.authorize.estimate": {
    call: (env: DriverEnv, params: Params, _state, i) =>
      admitted(
        env.GATEWAY.authorize(request(params, i, { apiKey: keyAt(params, i), scope: "api.read", estimate: 10, holdTtlMs: HOLD_TTL_MS })),
      ),
  },
  "gateway.authorize.cost": {
    call: (env: DriverEnv, params: Params, _state, i) =>
      admitted(env.GATEWAY.authorize(request(params, i, { apiKey: keyAt(params, i), scope: "api.read", cost: 1 }))),
  },
  "gateway.authorize-settle": {
    prepare: nonce,
    async call(env: DriverEnv, params: Params, run: string, i) {
      const auth = await admitted(env.GATEWAY.authorize(request(params, i, { apiKey: keyAt(params, i), scope: "api.read", estimate: 10 })));
      disposeResult(auth);
      return env.GATEWAY.settle({
        accountId: auth.accountId!,
        holdId: auth.holdId!,
        actualCost: 3,
        status: 200,
        latencyMs: 5,
        idempotencyKey: `${run}:${i}:settle`,
      });
    },
  },
  // What a gateway would do without `authorize`: three sequential calls, three objects' worth of hops.
  "gateway.sequential": {
    prepare: nonce,
    async call(env: DriverEnv, params: Params, run: string, i) {
      const verified = await env.CREDITS.verifyKey({ key: keyAt(params, i), scope: "api.read" });
      disposeResult(verified);
      if (!verified.valid) throw new Error(`verifyKey refused: ${verified.code}`);
      const hold = await env.CREDITS.reserve({
        accountId: verified.accountId,
        amount: 10,
        ttlMs: HOLD_TTL_MS,
        idempotencyKey: `${run}:${i}:r`,
        keyId: verified.keyId,
      });
      disposeResult(hold);
      if (!hold.ok) throw new Error(`reserve refused: ${hold.code}`);
      const subject = `ip:${ipAt(params, i)}`;
      const decision = await env.LIMITS.check({ subject, policy: IP_POLICY });
      if (!decision.allowed) throw new Error("check denied");
      return decision;
    },
  },
};

export const gateway: Scenario = {
  id: "gateway",
  title: "tollgate: authorize, authorize + settle (Gateway)",
  ops,
  async run(ctx) {
    const base = { prefix: `${ctx.runId}-gw`, subjects: HOT_PATH_SUBJECTS, net: 77 };
    const keys = (await ctx.call("gateway.setup", base)) as string[];
    const params = { ...base, keys };
    const ceiling = { op: CEILING_OPS.entrypoint, params: { prefix: `${ctx.runId}:gateway-ceiling`, subjects: HOT_PATH_SUBJECTS } };
    // Five rows, each paired with the ceiling: two levels in a full run (one caller, and the
    // level nearest 32), the busiest one in a quick run, to keep within the run budgets.
    const sorted = [...ctx.concurrencyLevels].sort((a, b) => a - b);
    const busy = sorted.reduce((best, level) => (Math.abs(level - 32) < Math.abs(best - 32) ? level : best), sorted[0]!);
    const levels = ctx.mode === "full" ? [...new Set([sorted[0]!, busy])] : [sorted[sorted.length - 1]!];
    for (const [id, label, op] of [
      ["tollgate.authorize.anonymous", "authorize, anonymous: one limiter call (Gateway)", "gateway.authorize.anonymous"],
      ["tollgate.authorize.estimate", "authorize, key + estimate: limiter ‖ ledger (Gateway)", "gateway.authorize.estimate"],
      ["tollgate.authorize.cost", "authorize, key + fixed cost: limiter ‖ ledger (Gateway)", "gateway.authorize.cost"],
      ["tollgate.authorize-settle", "authorize (key + estimate) + settle, two calls (Gateway)", "gateway.authorize-settle"],
      ["tollgate.authorize.sequential", "the same as separate calls: verifyKey, reserve, check", "gateway.sequential"],
    ] as const) {
      for (const concurrency of levels) {
        await ctx.measure({ id, group: "tollgate: gateway", label, op, params, route: "entrypoint", concurrency, ceiling });
      }
    }
  },
};
