import { loadMetricsConfig } from "./config";
import type { Env } from "../env";
import type { CallOutcome } from "./call-outcome";
import { ISOLATE_COUNTS } from "./metrics-buffer";

/**
 * Entrypoint counts live in the isolate's memory until flushed: entrypoints are stateless, and
 * a write per call would cost a Durable Object request per call. A flush sends the isolate's
 * buffer (its objects' counts too, if it runs any) through `waitUntil` to its shard as one push
 * (`isolate:<uuid>`, push id n), which the shard stores once; a failed flush is retried with the
 * same id by the next one.
 *
 * What can be lost: the calls counted since the isolate's last flush, when the isolate dies
 * before serving another call (at most METRICS_FLUSH_MS of its calls, default 5 s), and a
 * batch whose every retry fails for 15 minutes (GIVE_UP_MS).
 */

const buffer = ISOLATE_COUNTS;
let lastFlushMs = 0;

/** Adds one finished entrypoint call to this isolate's buffer. */
export function recordEntrypointCall(kind: string, outcome: CallOutcome): void {
  buffer.add("entrypoint", kind, { ...outcome, rowsRead: 0, rowsWritten: 0 });
}

/** Flushes through `waitUntil` when the last flush is at least METRICS_FLUSH_MS old. */
export function maybeFlush(env: Env, waitUntil: (promise: Promise<unknown>) => void): void {
  if (!buffer.holdsAny) return;
  const nowMs = Date.now();
  let flushMs: number;
  try {
    flushMs = loadMetricsConfig(env).flushMs;
  } catch {
    return;
  }
  if (nowMs - lastFlushMs < flushMs) return;
  lastFlushMs = nowMs;
  waitUntil(flushEntrypointMetrics(env));
}

/**
 * Sends this isolate's counts now (Admin.metrics calls it first, so its own isolate's calls are
 * in the answer). Flushes never wait for each other: a promise of one request cannot be awaited
 * by another in Workers, and two flushes sending the same batch are harmless, since the shard
 * stores each (isolate, push id) once. Never throws: a failed batch waits for the next flush.
 */
export async function flushEntrypointMetrics(env: Env): Promise<void> {
  await buffer.push(env);
}
