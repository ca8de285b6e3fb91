/**
 * The load driver: a sibling Worker that calls tollgate over real service bindings and DO
 * RPC. The Node side posts one measurement at a time; the loop runs here, inside workerd,
 * so nothing but the calls under test sits on the measured path.
 *
 * POST /run  { op, params, concurrency, durationMs, maxOps } → DriveResult
 * POST /call { op, params }                                  → { result }
 */
import type { AnyOp, DriveResult, DriverEnv, Json, LoopBounds, Params } from "../harness/types";
import { disposeResult } from "../harness/stats";
import { allOps } from "../scenarios/index";

/** A measurement may never outlive this, whatever it asked for. */
const HARD_LIMIT_MS = 120_000;

const OPS: Record<string, AnyOp> = allOps();

export default {
  async fetch(request: Request, env: DriverEnv): Promise<Response> {
    if (request.method !== "POST") return new Response("POST only", { status: 405 });
    const url = new URL(request.url);
    try {
      const body = (await request.json()) as { op: string; params?: Params } & Partial<LoopBounds>;
      const op = OPS[body.op];
      if (op === undefined) return Response.json({ error: `unknown op "${body.op}"` }, { status: 404 });
      const params = body.params ?? {};
      if (url.pathname === "/call") {
        const state = op.prepare ? await op.prepare(env, params) : undefined;
        return Response.json({ result: ((await op.call(env, params, state, 0)) ?? null) as Json });
      }
      if (url.pathname === "/run") {
        return Response.json(await drive(env, op, params, bounds(body)));
      }
      return new Response("not found", { status: 404 });
    } catch (error) {
      return Response.json({ error: String((error as Error)?.stack ?? error) }, { status: 500 });
    }
  },
};

function bounds(body: Partial<LoopBounds>): LoopBounds {
  const positive = (value: unknown, fallback: number) =>
    typeof value === "number" && Number.isSafeInteger(value) && value > 0 ? value : fallback;
  return {
    concurrency: Math.min(positive(body.concurrency, 1), 2_000),
    durationMs: Math.min(positive(body.durationMs, 1_000), HARD_LIMIT_MS),
    maxOps: Math.min(positive(body.maxOps, 10_000), 1_000_000),
  };
}

/**
 * `concurrency` callers, each awaiting one call at a time, until `maxOps` calls have been
 * issued or `durationMs` has passed. Latency is taken around each awaited call.
 */
async function drive(env: DriverEnv, op: AnyOp, params: Params, limits: LoopBounds): Promise<DriveResult> {
  const state = op.prepare ? await op.prepare(env, params) : undefined;
  const latenciesMs: number[] = [];
  let issued = 0;
  let errors = 0;
  let firstError: string | undefined;
  const start = performance.now();
  const deadline = start + limits.durationMs;

  const caller = async () => {
    while (issued < limits.maxOps && performance.now() < deadline) {
      const index = issued++;
      const t0 = performance.now();
      try {
        const result = await op.call(env, params, state, index);
        latenciesMs.push(performance.now() - t0);
        disposeResult(result);
      } catch (error) {
        errors++;
        firstError ??= String((error as Error)?.message ?? error);
      }
    }
  };
  await Promise.all(Array.from({ length: limits.concurrency }, caller));
  const elapsedMs = performance.now() - start;
  const extra = op.finish ? await op.finish(env, params, state, latenciesMs.length) : {};
  return {
    ops: latenciesMs.length,
    errors,
    ...(firstError === undefined ? {} : { firstError }),
    elapsedMs,
    latenciesMs: latenciesMs.map((ms) => Math.round(ms * 1_000) / 1_000),
    extra,
  };
}
