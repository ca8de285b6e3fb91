import { loadMetricsConfig } from "./config";
import type { Env } from "../env";
import { MINUTE_MS, floorTo } from "../buckets";
import type { CallOutcome } from "./instrument";
import { latencyBucket, type MetricRow } from "./model";
import { metricsShardName } from "../names";

/**
 * Entrypoint counts live in the isolate's memory until flushed: entrypoints are stateless, and
 * a write per call would cost a Durable Object request per call. A flush freezes the buffer
 * under the next push id of this isolate and sends it (through `waitUntil`) to the isolate's
 * shard, which stores each (isolate, push id) once; a failed flush is retried with the same id.
 *
 * What can be lost: the calls counted since the isolate's last flush, when the isolate dies
 * before serving another call (at most METRICS_FLUSH_MS of its calls, default 5 s), and a
 * frozen push whose every retry fails before the isolate dies.
 */

type BufferedRow = Omit<MetricRow, "surface"> & { minuteMs: number };

const buffer = new Map<string, BufferedRow>();
/** Frozen pushes not yet acknowledged, by push id. */
const pending = new Map<number, BufferedRow[]>();
let isolateId: string | null = null;
let nextPushId = 1;
let lastFlushMs = 0;

/** Adds one finished entrypoint call to this isolate's buffer. */
export function recordEntrypointCall(kind: string, outcome: CallOutcome): void {
  const minuteMs = floorTo(outcome.endMs, MINUTE_MS);
  const bucket = latencyBucket(outcome.latencyMs);
  const key = `${minuteMs}\u0000${kind}\u0000${outcome.method}\u0000${outcome.code}\u0000${bucket}`;
  const row = buffer.get(key);
  if (row === undefined) {
    buffer.set(key, { minuteMs, kind, method: outcome.method, code: outcome.code, bucket, calls: 1, rowsRead: 0, rowsWritten: 0 });
  } else {
    row.calls += 1;
  }
}

/** Flushes through `waitUntil` when the last flush is at least METRICS_FLUSH_MS old. */
export function maybeFlush(env: Env, waitUntil: (promise: Promise<unknown>) => void): void {
  if (buffer.size === 0 && pending.size === 0) return;
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
 * by another in Workers, and two flushes sending the same frozen push are harmless, since the
 * shard stores each (isolate, push id) once.
 */
export async function flushEntrypointMetrics(env: Env): Promise<void> {
  if (buffer.size > 0) {
    pending.set(nextPushId, [...buffer.values()]);
    nextPushId += 1;
    buffer.clear();
  }
  if (pending.size === 0) return;
  isolateId ??= `isolate:${crypto.randomUUID()}`;
  const source = isolateId;
  const batches = [...pending].map(([pushId, rows]) => ({ pushId, rows }));
  try {
    const { shards } = loadMetricsConfig(env);
    await env.METRICS.getByName(metricsShardName(source, shards)).push({ source, surface: "entrypoint", batches });
    for (const batch of batches) pending.delete(batch.pushId);
  } catch (error) {
    console.error("metrics: entrypoint flush failed; it is retried with the next flush", error);
  }
}
