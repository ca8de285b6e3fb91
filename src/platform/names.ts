import { murmur3 } from "../sketches/hash";

/**
 * The names of the deployment's well-known Durable Objects, in one place, so that no object
 * or service imports another object's module to find it.
 */

/** The one aggregator of path statistics. */
export const AGGREGATOR_NAME = "global";
/** The one adaptive-limits controller. */
export const ADAPTIVE_LIMITS_NAME = "global";
/** The one protection object: allow and deny lists, the anomaly policy, the flag log. */
export const PROTECTION_NAME = "protection";
/** The one maintenance object: scheduled backups. */
export const MAINTENANCE_NAME = "maintenance";
/** The one alerts object. */
export const ALERTS_NAME = "alerts";

/** The Durable Object name of path collector shard `n`. */
export const shardName = (shard: number) => `shard:${shard}`;

/** Reads the shard number back from a collector's name; `null` when the name is not a shard's. */
export function shardFromName(name: string | undefined): number | null {
  const match = name === undefined ? null : /^shard:(\d{1,4})$/.exec(name);
  return match === null ? null : Number(match[1]);
}

/** The metrics rollup shard a source (object id, isolate id) pushes to. */
export function metricsShardName(source: string, shards: number): string {
  return `metrics:${murmur3(source, 0x3e7c) % shards}`;
}
