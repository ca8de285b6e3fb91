import type { Env } from "../../platform/env";
import { errorCodeOf } from "../../platform/errors";
import { parseIp } from "../../path-stats/ip";
import { type Cidr, cidrContains, parseCidr } from "./cidr";
import { protectionCacheMs, TtlCache } from "./ttl-cache";
import { PROTECTION_NAME } from "../../platform/names";

type DenyEntries = { cidr: Cidr; until?: number }[];

/** One copy of the deny list per isolate (per protection namespace), trusted for `PROTECTION_CACHE_MS`. */
const caches = new WeakMap<object, TtlCache<DenyEntries>>();

function cacheFor(env: Env): TtlCache<DenyEntries> {
  let cache = caches.get(env.PROTECTION);
  if (cache === undefined) {
    cache = new TtlCache(
      protectionCacheMs(env.PROTECTION_CACHE_MS),
      async () => {
        const { deny } = await env.PROTECTION.getByName(PROTECTION_NAME).snapshot();
        return deny.map((entry) => ({ cidr: parseCidr(entry.cidr)!, ...(entry.until === undefined ? {} : { until: entry.until }) }));
      },
      (error) => console.error("gateway: the deny list is unreachable, using the last copy", errorCodeOf(error) ?? String(error)),
    );
    caches.set(env.PROTECTION, cache);
  }
  return cache;
}

/**
 * Whether `ip` lies in a denied range that has not expired. Costs no call while the isolate's
 * copy is fresh; a stale copy is reloaded once (concurrent callers share the load). When the
 * list cannot be read and no copy exists, the answer is "not denied": the deny list is a
 * filter in front of the limits, and an outage of it must not take the gateway down.
 */
export async function isDenied(env: Env, ip: string, nowMs: number = Date.now()): Promise<boolean> {
  let entries: DenyEntries;
  try {
    entries = await cacheFor(env).get(nowMs);
  } catch (error) {
    console.error("gateway: the deny list is unreachable; admitting", errorCodeOf(error) ?? String(error));
    return false;
  }
  if (entries.length === 0) return false;
  const parsed = parseIp(ip);
  return parsed !== null && entries.some((entry) => (entry.until === undefined || entry.until > nowMs) && cidrContains(entry.cidr, parsed));
}
