import { murmur3 } from "../sketches/hash";

/** Default number of collector shards (`PATH_SHARDS`). */
export const DEFAULT_SHARDS = 64;
export const MAX_SHARDS = 1_024;

/** The collector shard a client belongs to: a stable hash of its stored id, mod the shard count. */
export function shardOf(clientId: string, shards: number): number {
  return murmur3(clientId, 0x5eed) % shards;
}
