import type { RecordInput } from "../../rpc/path-stats";
import type { Env } from "../platform/env";
import { errorCodeOf } from "../platform/errors";
import { shardName } from "../platform/names";
import { parseInput } from "../platform/schemas";
import { routeHits, type ShardHits } from "./hit-routing";
import type { NormalizedHit } from "./partial";
import { hitSchema, PATH_BOUNDS } from "./schemas";
import { sleep } from "../platform/durations";

/** Hits wait at most this long in an isolate before they are sent to their collectors. */
export const HIT_BATCH_MS = 1_000;
/** A shard's hits are sent at once when this many wait (the most one `ingest` takes). */
export const HIT_BATCH_MAX = PATH_BOUNDS.maxBatch;

type Send = (shard: number, batch: ShardHits) => Promise<unknown>;

/** How often a request whose batch is being sent looks again (its own timer, see HitBatcher). */
const SENT_POLL_MS = 10;
/** A request stops waiting for its batch after this long (the send itself goes on). */
const SENT_WAIT_LIMIT_MS = 30_000;

/**
 * Hits handed over by `Gateway.authorize`, held in the isolate and sent as ONE `ingest` per
 * collector shard when a shard's batch is full or HIT_BATCH_MS after the first hit waiting,
 * instead of one object request per gateway request. `add` returns a promise that settles
 * when the hit's batch has been sent: each request hands it to its `waitUntil`, so the isolate
 * stays up until every hit it accepted is at its collector (and the request whose timer sends
 * a batch stays up while it sends). An isolate that crashes loses the hits waiting (at most
 * HIT_BATCH_MS of them); a send that fails is logged and its hits lost, as a failed `record`
 * was before: statistics never fail a request.
 *
 * Requests share only plain data here: each one waits for its batch on timers of its own
 * rather than on a promise another request made and settles, which the runtime would have
 * to hand across request contexts.
 */
export class HitBatcher {
  readonly #send: Send;
  #waiting = new Map<number, ShardHits>();
  /** Whether a timer (in some request's context) will send what waits. */
  #timerSet = false;
  /** The batch now taking hits; earlier ones are sent or being sent. */
  #collecting = 0;
  /** Batches being sent. */
  readonly #sending = new Set<number>();

  constructor(send: Send) {
    this.#send = send;
  }

  /** Queues an already validated hit for its shard; the promise settles once it has been sent (never rejects). */
  add(shard: number, hit: NormalizedHit, ip: string): Promise<void> {
    let batch = this.#waiting.get(shard);
    if (batch === undefined) this.#waiting.set(shard, (batch = { hits: [], ips: [] }));
    batch.hits.push(hit);
    batch.ips.push(ip);
    const generation = this.#collecting;
    if (batch.hits.length >= HIT_BATCH_MAX) void this.flush();
    else if (!this.#timerSet) {
      this.#timerSet = true;
      setTimeout(() => {
        // A batch sent early (full) left this timer behind: it sends whatever waits now, which is harmless.
        if (this.#collecting === generation) void this.flush();
      }, HIT_BATCH_MS);
    }
    return this.#sent(generation);
  }

  /** How many hits wait, over all shards. */
  get waiting(): number {
    let count = 0;
    for (const batch of this.#waiting.values()) count += batch.hits.length;
    return count;
  }

  /** Sends everything waiting now, one `ingest` per shard in parallel; settles when all are done. */
  async flush(): Promise<void> {
    const generation = this.#collecting;
    const waiting = this.#waiting;
    this.#collecting += 1;
    this.#waiting = new Map();
    this.#timerSet = false;
    this.#sending.add(generation);
    try {
      const batches = [...waiting];
      const results = await Promise.allSettled(batches.map(([shard, batch]) => this.#send(shard, batch)));
      results.forEach((result, i) => {
        if (result.status === "fulfilled") return;
        const [shard, batch] = batches[i]!;
        console.error(
          `path statistics: sending ${batch.hits.length} hits to shard ${shard} failed`,
          errorCodeOf(result.reason) ?? result.reason,
        );
      });
    } finally {
      this.#sending.delete(generation);
    }
  }

  /** Settles once batch `generation` has been sent (or after SENT_WAIT_LIMIT_MS). */
  async #sent(generation: number): Promise<void> {
    let waited = 0;
    while (waited < SENT_WAIT_LIMIT_MS && (this.#collecting <= generation || this.#sending.has(generation))) {
      const step = this.#collecting <= generation ? HIT_BATCH_MS : SENT_POLL_MS;
      await sleep(step);
      waited += step;
    }
  }
}

/** One batcher per isolate and collector namespace (module state: it outlives each request). */
const batchers = new WeakMap<object, HitBatcher>();

/** The isolate's batcher for `env`'s collectors. */
export function hitBatcherFor(env: Env): HitBatcher {
  const namespace = env.PATH_COLLECTOR;
  let batcher = batchers.get(namespace);
  if (batcher === undefined) {
    batcher = new HitBatcher((shard, batch) => namespace.getByName(shardName(shard)).ingest(batch));
    batchers.set(namespace, batcher);
  }
  return batcher;
}

/**
 * Validates and normalizes one hit exactly as `PathStats.record` does (bad input throws, and
 * nothing is queued), then hands it to the isolate's batcher instead of sending it now. The
 * promise settles once its batch has reached the collector: give it to `waitUntil`. For
 * `Gateway.authorize`, whose hits are many and whose callers do not read them back at once.
 */
export async function enqueueHit(env: Env, input: RecordInput): Promise<void> {
  const hit = parseInput(hitSchema, input, "record input");
  for (const [shard, routed] of await routeHits(env, [hit], "")) await hitBatcherFor(env).add(shard, routed.hits[0]!, routed.ips[0]!);
}
