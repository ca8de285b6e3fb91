/**
 * tollgate: `debit` and `reserve` + `commit` on credit ledgers through the `Credits`
 * entrypoint. Accounts are created and funded once, untimed. The ceiling is the no-op on
 * RateLimiterDO through the same kind of hop (service binding → entrypoint → DO RPC).
 */
import { disposeResult } from "../harness/stats";
import type { AnyOp, DriverEnv, Params, Scenario } from "../harness/types";
import { CEILING_OPS, HOT_PATH_SUBJECTS } from "./ceiling";

/** Enough that no run ever exhausts an account. */
const FUNDING = 1_000_000_000_000;

const accountAt = (params: Params, index: number) => `${String(params.prefix)}-${index % Number(params.subjects)}`;

/** A fresh nonce per measurement, so idempotency keys never repeat across rounds (a replay is a cheaper path). */
const nonce = async () => crypto.randomUUID();

const ops: Record<string, AnyOp> = {
  "credits.setup": {
    async call(env: DriverEnv, params: Params) {
      for (let i = 0; i < Number(params.subjects); i++) {
        const accountId = accountAt(params, i);
        disposeResult(await env.CREDITS.createAccount({ accountId, name: accountId }));
        disposeResult(
          await env.CREDITS.grant({ accountId, amount: FUNDING, reason: "bench funding", idempotencyKey: `fund-${accountId}` }),
        );
      }
    },
  },
  "credits.debit": {
    prepare: nonce,
    async call(env: DriverEnv, params: Params, run: string, i) {
      const result = await env.CREDITS.debit({
        accountId: accountAt(params, i),
        amount: 1,
        reason: "bench",
        idempotencyKey: `${run}:${i}`,
      });
      if (!result.ok) throw new Error(`debit refused: ${result.code}`);
      return result;
    },
  },
  "credits.reserve-commit": {
    prepare: nonce,
    async call(env: DriverEnv, params: Params, run: string, i) {
      const accountId = accountAt(params, i);
      const hold = await env.CREDITS.reserve({ accountId, amount: 1, ttlMs: 60_000, idempotencyKey: `${run}:${i}:r` });
      disposeResult(hold);
      if (!hold.ok) throw new Error(`reserve refused: ${hold.code}`);
      return env.CREDITS.commit({ accountId, holdId: hold.holdId, amount: 1, idempotencyKey: `${run}:${i}:c` });
    },
  },
};

export const credits: Scenario = {
  id: "credits",
  title: "tollgate: debit, reserve + commit",
  ops,
  async run(ctx) {
    const params = { prefix: `${ctx.runId}-acct`, subjects: HOT_PATH_SUBJECTS };
    await ctx.call("credits.setup", params);
    const ceiling = { op: CEILING_OPS.entrypoint, params: { prefix: `${ctx.runId}:credits-ceiling`, subjects: HOT_PATH_SUBJECTS } };
    for (const [id, label, op] of [
      ["tollgate.debit", "debit (Credits entrypoint)", "credits.debit"],
      ["tollgate.reserve-commit", "reserve + commit, two calls (Credits entrypoint)", "credits.reserve-commit"],
    ] as const) {
      for (const concurrency of ctx.concurrencyLevels) {
        await ctx.measure({ id, group: "tollgate", label, op, params, route: "entrypoint", concurrency, ceiling });
      }
    }
  },
};
