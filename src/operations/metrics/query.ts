import { loadMetricsConfig } from "../../platform/metering/config";
import type { Env } from "../../platform/env";
import type { ShardAnswer } from "./metrics-do";

/**
 * Asks every metrics shard for `range` and merges the answers: the rows are concatenated (the
 * report sums them), stored bytes are summed per kind, and the range answered is the union of
 * what the shards answered (a shard that compacted further may widen it to whole hours).
 */
export async function queryShards(env: Env, range: { from: number; to: number }): Promise<ShardAnswer> {
  const { shards } = loadMetricsConfig(env);
  const answers = await Promise.all(
    Array.from({ length: shards }, (_, shard) => env.METRICS.getByName(`metrics:${shard}`).query({ range })),
  );
  const bytes = new Map<string, { kind: string; bytes: number; sources: number }>();
  for (const answer of answers) {
    for (const size of answer.storedBytes) {
      const mine = bytes.get(size.kind) ?? { kind: size.kind, bytes: 0, sources: 0 };
      mine.bytes += size.bytes;
      mine.sources += size.sources;
      bytes.set(size.kind, mine);
    }
  }
  return {
    range: {
      from: Math.min(...answers.map((answer) => answer.range.from)),
      to: Math.max(...answers.map((answer) => answer.range.to)),
    },
    rows: answers.flatMap((answer) => answer.rows),
    storedBytes: [...bytes.values()].sort((a, b) => (a.kind < b.kind ? -1 : 1)),
  };
}
