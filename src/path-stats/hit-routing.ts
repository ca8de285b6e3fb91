import type * as v from "valibot";
import { loadPathConfig, type PathConfig } from "./config";
import type { Env } from "../platform/env";
import { invalidArgument, ServiceError } from "../platform/errors";
import { normalizeMethod, normalizePath } from "./normalize";
import type { NormalizedHit } from "./partial";
import { clientIdOf } from "./privacy";
import { type hitSchema, PATH_BOUNDS } from "./schemas";
import { shardOf } from "./shard";

/** A hit as the caller gave it, after schema validation. */
export type HitInput = v.InferOutput<typeof hitSchema>;

/** One collector shard's hits, each with the address it came from (never stored: for anomaly blocking only). */
export interface ShardHits {
  hits: NormalizedHit[];
  ips: string[];
}

/**
 * Validates every hit (the clock window included), normalizes it, applies the privacy mode,
 * and groups the hits by collector shard (`hash(client) mod PATH_SHARDS`). Throws on the
 * first bad hit, before anything is sent anywhere, so bad input records nothing. `prefix`
 * names the hits in error messages (`hits.` for a batch).
 */
export async function routeHits(env: Env, hits: readonly HitInput[], prefix: string): Promise<Map<number, ShardHits>> {
  const config = loadPathConfig(env);
  const nowMs = Date.now();
  const byShard = new Map<number, ShardHits>();
  for (let i = 0; i < hits.length; i += 1) {
    const hit = hits[i]!;
    const where = prefix === "" ? "" : `${prefix}${i}.`;
    const at = hit.at ?? nowMs;
    if (at < nowMs - PATH_BOUNDS.maxAgeMs || at > nowMs + PATH_BOUNDS.maxSkewMs) {
      throw invalidArgument(`${where}at must be within 1 hour before and 1 minute after now`, [
        { path: `${where}at`, message: "outside the accepted window" },
      ]);
    }
    const path = normalizePath(hit.path, config.routes);
    if (path === null) throw invalidArgument(`${where}path is not a path`);
    const client = (await clientIdFor(hit.ip, config))!;
    const normalized: NormalizedHit = { client, method: normalizeMethod(hit.method)!, path, status: hit.status ?? 0, at };
    if (hit.latencyMs !== undefined) normalized.latencyMs = hit.latencyMs;
    if (hit.country !== undefined) normalized.country = hit.country.toUpperCase();
    if (hit.userAgent !== undefined) normalized.userAgent = hit.userAgent;
    const shard = shardOf(client, config.shards);
    let batch = byShard.get(shard);
    if (batch === undefined) byShard.set(shard, (batch = { hits: [], ips: [] }));
    batch.hits.push(normalized);
    batch.ips.push(hit.ip);
  }
  return byShard;
}

/** The stored client id of `ip` under the configured privacy mode; a misconfiguration is `INTERNAL` (the reason is logged). */
export async function clientIdFor(ip: string, config: PathConfig): Promise<string | null> {
  try {
    return await clientIdOf(ip, config.ipMode, config.hashKey);
  } catch (error) {
    console.error(`path statistics: ${(error as Error).message}`);
    throw new ServiceError("INTERNAL", "path statistics are misconfigured");
  }
}
