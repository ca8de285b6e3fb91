/**
 * Cost: rows written, rows read and object requests per operation, everything included, counted
 * by the bench Worker itself (bench/workers/cost-meter.ts), independent of tollgate's metering.
 *
 * Each operation gets its own subjects and account, created in an uncounted set-up, and runs a
 * day after the one before (the isolate's clock is moved forward), a quarter past an hour: `n`
 * calls, then the objects' alarms in time order on that clock — flushes, metrics pushes,
 * compactions, expiries — until a quarter past the next hour, so every flush and the hourly close
 * of its data are in. Idle time in between (alarms of no operation's data, earlier scenarios'
 * work) is counted apart. Last, the clock jumps 40 days for each operation's own limiters and
 * ledger: what they prune and expire by then (idempotency records, rule state) and one
 * self-audit are that operation's too.
 *
 * Not timed: this scenario runs outside the run's measuring budget, bounded by its own counts.
 */
import type { AuthorizeInput, AuthorizeResult } from "../../rpc/gateway";
import type { RecordInput } from "../../rpc/path-stats";
import {
  baselineRows,
  type CostDrainInput,
  type CostDrainResult,
  type CostPricesLike,
  type CostSnapshot,
  costRow,
  type MeasuredOperation,
} from "../harness/cost";
import { disposeResult } from "../harness/stats";
import type { AnyOp, BenchContext, DriverEnv, Json, Params, Row, Scenario } from "../harness/types";
import { ONE_RULE } from "./check";

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
/** Mirrors BENCH_GATEWAY_IP_POLICY (a scenario file stays neutral: no import of the Node-side harness). */
const IP_POLICY = "bench-per-ip";
const CLIENTS = 20;
const TEMPLATES = 10;
const BATCH = 100;
/**
 * An operation starts this far into an hour, after the hourly compactions of the hour before
 * (aggregator at :05, metrics at :10), and its alarms run until the same point of the next
 * hour: its flushes and pushes, and the compactions that close its hour, are in.
 */
const START_IN_HOUR_MS = 15 * 60_000;
const DRAIN_AFTER_HOUR_MS = HOUR_MS + START_IN_HOUR_MS;
/**
 * Idle time before each operation: past the rollups' 26-hour minute retention (the pruning of
 * what came before runs in idle time) and the metrics shards' 24-hour acceptance window.
 */
const IDLE_GAP_MS = 28 * HOUR_MS;
/** How far the clock jumps for the later work of an operation's own limiters and ledger. */
const LATER_MS = 40 * DAY_MS;
/** Bounds of one drain, whatever it finds to run. */
const DRAIN_STEPS = 1_000;
const DRAIN_WALL_MS = 90_000;

/** Client `c` of an operation: its own /24, so the per-client counters and shards differ as IPs do. */
const ipOf = (params: Params, client: number) => `10.${Number(params.net)}.${client % CLIENTS}.1`;
const pathOf = (i: number) => `/v1/resource-${i % TEMPLATES}/${i}`;

const hit = (params: Params, i: number): RecordInput => ({
  ip: ipOf(params, i),
  method: "GET",
  path: pathOf(i),
  status: 200,
  latencyMs: 1 + (i % 40),
});

function request(params: Params, i: number, extra: Partial<AuthorizeInput>): AuthorizeInput {
  return { ip: ipOf(params, i), method: "GET", path: pathOf(i), apiKey: String(params.key), scope: "api.read", ...extra };
}

async function admitted(result: Promise<AuthorizeResult>): Promise<AuthorizeResult> {
  const answer = await result;
  if (!answer.allowed) throw new Error(`authorize refused: ${answer.status} ${answer.code}`);
  return answer;
}

const ops: Record<string, AnyOp> = {
  // The BenchCost entrypoint's controls, passed through (bench/workers/bench-cost.ts).
  "cost.control": {
    call: (env: DriverEnv, params: Params) => {
      const input = params.input as never;
      return (env.COST[params.action as keyof DriverEnv["COST"]] as (input: never) => Promise<Json>)(input);
    },
  },
  "cost.setup-check": {
    async call(env: DriverEnv, params: Params) {
      disposeResult(await env.LIMITS.peek({ subject: String(params.subject), rules: ONE_RULE }));
      return null;
    },
  },
  "cost.setup-gateway": {
    async call(env: DriverEnv, params: Params): Promise<Json> {
      const accountId = String(params.account);
      disposeResult(await env.CREDITS.createAccount({ accountId, name: accountId }));
      disposeResult(
        await env.CREDITS.grant({ accountId, amount: 1_000_000_000_000, reason: "bench funding", idempotencyKey: `fund-${accountId}` }),
      );
      const created = await env.CREDITS.createKey({ accountId, name: "bench", scopes: ["*"] });
      const key = created.key;
      disposeResult(created);
      // Each client's limiter exists before the counting starts, as the account does.
      for (let client = 0; client < CLIENTS; client++) {
        disposeResult(await env.LIMITS.peek({ subject: `ip:${ipOf(params, client)}`, policy: IP_POLICY }));
      }
      return key;
    },
  },
  "cost.check": {
    async call(env: DriverEnv, params: Params) {
      const decision = await env.LIMITS.check({ subject: String(params.subject), rules: ONE_RULE });
      if (!decision.allowed) throw new Error("check denied");
      return decision;
    },
  },
  "cost.record": {
    call: (env: DriverEnv, params: Params, _state, i) => env.PATH_STATS.record(hit(params, i)),
  },
  // One client per call (rotating over the 20), its 100 hits over the 10 templates.
  "cost.record-many": {
    call: (env: DriverEnv, params: Params, _state, i) =>
      env.PATH_STATS.recordMany({ hits: Array.from({ length: BATCH }, (_, j) => ({ ...hit(params, j), ip: ipOf(params, i) })) }),
  },
  "cost.authorize-cost": {
    call: (env: DriverEnv, params: Params, _state, i) => admitted(env.GATEWAY.authorize(request(params, i, { cost: 1 }))),
  },
  "cost.authorize-settle": {
    prepare: async () => crypto.randomUUID(),
    async call(env: DriverEnv, params: Params, run: string, i) {
      const auth = await admitted(env.GATEWAY.authorize(request(params, i, { estimate: 10 })));
      disposeResult(auth);
      return env.GATEWAY.settle({
        accountId: auth.accountId!,
        holdId: auth.holdId!,
        actualCost: 3,
        status: 200,
        latencyMs: 5,
        idempotencyKey: `${run}:${i}`,
      });
    },
  },
};

interface CostOperation {
  id: string;
  label: string;
  op: string;
  setup?: "cost.setup-check" | "cost.setup-gateway";
  concurrency: number;
  unitsPerCall?: number;
}

/** The budget table, in its order. */
const OPERATIONS: readonly CostOperation[] = [
  {
    id: "cost.check.sequential",
    label: "check, 1 rule, one subject, sequential",
    op: "cost.check",
    setup: "cost.setup-check",
    concurrency: 1,
  },
  {
    id: "cost.check.concurrent",
    label: "check, 1 rule, one subject, 16 concurrent callers",
    op: "cost.check",
    setup: "cost.setup-check",
    concurrency: 16,
  },
  { id: "cost.record", label: "record, one hit (20 clients)", op: "cost.record", concurrency: 16 },
  {
    id: "cost.record-many",
    label: "recordMany, 100 hits of one client over 10 paths (per hit)",
    op: "cost.record-many",
    concurrency: 1,
    unitsPerCall: BATCH,
  },
  {
    id: "cost.authorize.cost",
    label: "authorize(cost), key + per-IP policy, hit included",
    op: "cost.authorize-cost",
    setup: "cost.setup-gateway",
    concurrency: 16,
  },
  {
    id: "cost.authorize-settle",
    label: "authorize(estimate) + settle, hit included",
    op: "cost.authorize-settle",
    setup: "cost.setup-gateway",
    concurrency: 16,
  },
];

/** Calls per operation: 200 in a quick run, as the issue measured. */
const CALLS = { quick: 200, full: 2_000, test: 20 } as const;

export const cost: Scenario = {
  id: "cost",
  title: "Cost: rows written, rows read and object requests per operation",
  outsideBudget: true,
  ops,
  async run(ctx) {
    const control = async <T>(action: keyof DriverEnv["COST"], input?: unknown): Promise<T> =>
      (await ctx.call("cost.control", { action, input: (input ?? null) as Json })) as T;
    const prices = await control<CostPricesLike>("prices");
    await control("start");
    await control("window", { label: "warm-up" });
    await control("warm");
    let clock = await control<number>("window", { label: "idle" });

    const calls = CALLS[ctx.mode];
    const measured: MeasuredOperation[] = [];
    for (const [index, operation] of OPERATIONS.entries()) {
      const params: Params = {
        subject: `${ctx.runId}:${operation.id}`,
        account: `${ctx.runId}-${operation.id.replaceAll(".", "-")}`,
        net: 200 + index,
      };
      // More than a day on: whatever earlier scenarios and operations left, their pruning included,
      // runs in idle time, and their last metrics rows, pushed with this operation's, are refused as too old.
      let hour = Math.ceil((clock + IDLE_GAP_MS) / HOUR_MS) * HOUR_MS;
      // Not the hour before midnight (UTC): the daily close of every rollup would fall in its window.
      if (new Date(hour).getUTCHours() === 23) hour += HOUR_MS;
      await drain(ctx, { untilMs: hour + 60_000, runs: "idle" });

      // The set-up in the same hour, its alarms (and the hourly compactions at :05 and :10) uncounted.
      await control("window", { label: `setup:${operation.id}`, owner: operation.id });
      // What shared objects still hold from idle time is pushed now, not late in the operation's window.
      await control("nudge");
      if (operation.setup) params.key = await ctx.call(operation.setup, params);
      await drain(ctx, { untilMs: hour + START_IN_HOUR_MS, runs: "idle", owner: operation.id });

      await control("window", { label: operation.id, owner: operation.id });
      ctx.log(`  ${operation.label}: ${calls} calls @${operation.concurrency}`);
      const result = await ctx.drive(operation.op, params, { concurrency: operation.concurrency, maxOps: calls, durationMs: 110_000 });
      const drained = await drain(ctx, { untilMs: hour + DRAIN_AFTER_HOUR_MS, runs: "operation", owner: operation.id });
      clock = await control<number>("window", { label: "idle" });
      measured.push({
        id: operation.id,
        label: operation.label,
        concurrency: operation.concurrency,
        calls: result.ops,
        errors: result.errors,
        ...(result.firstError ? { firstError: result.firstError } : {}),
        unitsPerCall: operation.unitsPerCall ?? 1,
        unit: operation.unitsPerCall ? "hit" : "call",
        ...(drained.note ? { drainNote: drained.note } : {}),
      });
    }

    // The later work of each operation's own limiters and ledger: one jump, then the pushes it schedules.
    for (const operation of measured) {
      clock = await control<number>("window", { label: operation.id });
      const jumped = await drain(ctx, { untilMs: clock + LATER_MS, jump: true, runs: "owned", owner: operation.id });
      const after = await drain(ctx, { untilMs: jumped.clockMs + 15 * 60_000, runs: "owned", owner: operation.id });
      const note = jumped.note ?? after.note;
      if (note) operation.drainNote = [operation.drainNote, `later work: ${note}`].filter(Boolean).join("; ");
    }
    await control("window", { label: "done" });
    const snapshot = await control<CostSnapshot>("snapshot");

    const rows: Row[] = measured.map((operation) => costRow(operation, snapshot.buckets[operation.id], prices));
    for (const row of [...rows, ...baselineRows(prices)]) ctx.record(row);
    const idle = snapshot.buckets.idle;
    ctx.record({
      id: "cost.idle",
      group: "cost: context",
      label: "between operations: alarms of no operation's data (hourly compactions, pushes)",
      extra: {
        rowsWritten: Object.values(idle?.rows ?? {}).reduce((sum, [written]) => sum + written, 0),
        requests: Object.values(idle?.requests ?? {}).reduce((sum, count) => sum + count, 0),
        objects: snapshot.objects,
        prices: prices.source,
      },
    });
  },
};

/** Drains until done or its wall bound, calling BenchCost.drain as often as it needs. */
async function drain(
  ctx: BenchContext,
  input: Omit<CostDrainInput, "maxSteps" | "maxWallMs">,
): Promise<CostDrainResult & { note?: string }> {
  const stopAt = Date.now() + DRAIN_WALL_MS;
  let steps = 0;
  let errors = 0;
  let firstError: string | undefined;
  for (;;) {
    const result = (await ctx.call("cost.control", {
      action: "drain",
      input: { ...input, maxSteps: DRAIN_STEPS, maxWallMs: 20_000 } as unknown as Json,
    })) as unknown as CostDrainResult;
    steps += result.steps;
    errors += result.errors;
    firstError ??= result.firstError;
    // Only the first call jumps; the rest continue at the clock it reached.
    input = { ...input, jump: false };
    const failed = errors > 0 ? `${errors} alarm runs failed (${firstError})` : undefined;
    if (result.done) return { ...result, steps, errors, ...(failed ? { note: failed } : {}) };
    if (Date.now() > stopAt || steps >= 10 * DRAIN_STEPS) {
      const note = [failed, `alarms stopped after ${steps} runs: later work partly counted`].filter(Boolean).join("; ");
      // Said here too: a drain of idle time that stops leaves its work to the next window.
      ctx.log(`  ${input.runs} drain: ${note}`);
      return { ...result, steps, errors, note };
    }
  }
}
