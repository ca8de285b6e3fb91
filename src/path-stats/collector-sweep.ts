import type { Env } from "../platform/env";
import { errorCodeOf } from "../platform/errors";
import { shardName } from "../platform/names";

/** Shards pruned at once by the sweep. */
const SWEEP_PARALLEL = 16;

/**
 * Asks every collector shard to prune what is past its retention (`PathCollectorDO.prune`).
 * Driven by the aggregator's daily task, so a collector needs no alarm of its own to forget
 * old counters, even one that has seen no hit for weeks. Throws after trying every shard if
 * any failed, so the task is retried (pruning twice changes nothing).
 */
export async function sweepCollectors(env: Env, shards: number): Promise<void> {
  const failed: number[] = [];
  for (let start = 0; start < shards; start += SWEEP_PARALLEL) {
    const batch = Array.from({ length: Math.min(SWEEP_PARALLEL, shards - start) }, (_, i) => start + i);
    const results = await Promise.allSettled(batch.map((shard) => env.PATH_COLLECTOR.getByName(shardName(shard)).prune({})));
    results.forEach((result, i) => {
      if (result.status === "fulfilled") return;
      failed.push(batch[i]!);
      console.error(`sweep: pruning collector shard ${batch[i]} failed`, errorCodeOf(result.reason) ?? result.reason);
    });
  }
  if (failed.length > 0) throw new Error(`pruning failed on ${failed.length} collector shards (${failed.join(", ")})`);
}
