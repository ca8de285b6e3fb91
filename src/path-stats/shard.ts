import { murmur3 } from "../sketches/hash";

/** Default number of collector shards (`PATH_SHARDS`). */
export const DEFAULT_SHARDS = 64;
export const MAX_SHARDS = 1_024;

/** The collector shard a client belongs to: a stable hash of its stored id, mod the shard count. */
export function shardOf(clientId: string, shards: number): number {
  return murmur3(clientId, 0x5eed) % shards;
}

/** The Durable Object name of shard `n`. */
export const shardName = (shard: number) => `shard:${shard}`;

/** Reads the shard number back from an object name; `null` when the name is not a shard's. */
export function shardFromName(name: string | undefined): number | null {
  const match = name === undefined ? null : /^shard:(\d{1,4})$/.exec(name);
  return match === null ? null : Number(match[1]);
}
