import type { AnomalyPolicy } from "../../rpc/protection";
import { configuredPolicy } from "../operations/protection/config";
import type { Env } from "../platform/env";
import { errorCodeOf } from "../platform/errors";
import type { NormalizedHit } from "./partial";
import { CidrSet } from "../operations/protection/cidr";
import { type ClientBaseline, type Detection, newBaseline, observe } from "../operations/protection/detector";
import { mergePolicy } from "../operations/protection/policy";
import { protectionCacheMs, TtlCache } from "../operations/protection/ttl-cache";
import type { ProtectionSnapshot } from "../operations/protection/protection-do";
import { PROTECTION_NAME } from "../platform/names";
import type { BaselineCache } from "./collector-baselines";

/**
 * Anomaly detection inside a path collector (docs/protection.md): each client's baseline lives
 * in the shard that already sees all of its hits, keyed by the stored client id (never a raw
 * address). The collector calls `observeHits` as it takes hits in and `actOn` after it; the
 * baselines live in memory between flushes (collector-baselines.ts).
 */

/** A detection, and which hit of the ingest call raised it (to find its address, which is never stored). */
export interface Found extends Detection {
  client: string;
  hitIndex: number;
}

/**
 * Counts each hit into its client's baseline (in memory, see BaselineCache) and returns the
 * detections, one per client at most.
 */
export function observeHits(baselines: BaselineCache, hits: readonly NormalizedHit[], policy: AnomalyPolicy): Found[] {
  if (!policy.enabled) return [];
  const byClient = new Map<string, number[]>();
  hits.forEach((hit, index) => {
    let list = byClient.get(hit.client);
    if (list === undefined) byClient.set(hit.client, (list = []));
    list.push(index);
  });
  const found: Found[] = [];
  for (const [client, indexes] of byClient) {
    indexes.sort((a, b) => hits[a]!.at - hits[b]!.at || a - b);
    const first = hits[indexes[0]!]!.at;
    let state: ClientBaseline = baselines.get(client) ?? newBaseline(policy, first - (first % 60_000));
    for (const index of indexes) {
      const result = observe(state, hits[index]!, policy);
      state = result.state;
      if (result.detection !== undefined) found.push({ ...result.detection, client, hitIndex: index });
    }
    baselines.set(client, state);
  }
  return found;
}

/**
 * The protection state as one collector sees it: cached for `PROTECTION_CACHE_MS`. When the
 * protection object cannot be reached and nothing is cached, the configured policy applies with
 * blocking off (the allow list is unknown, so nobody may be blocked).
 */
export class ProtectionView {
  readonly #env: Env;
  readonly #cache: TtlCache<ProtectionSnapshot & { allowSet: CidrSet }>;

  constructor(env: Env) {
    this.#env = env;
    this.#cache = new TtlCache(
      protectionCacheMs(env.PROTECTION_CACHE_MS),
      async () => {
        const snapshot = await env.PROTECTION.getByName(PROTECTION_NAME).snapshot();
        return { ...snapshot, allowSet: new CidrSet(snapshot.allow) };
      },
      (error) => console.error("collector: protection state unreachable, using the last copy", errorCodeOf(error) ?? String(error)),
    );
  }

  async get(nowMs: number): Promise<{ policy: AnomalyPolicy; allowSet: CidrSet }> {
    try {
      return await this.#cache.get(nowMs);
    } catch (error) {
      console.error("collector: protection state unreachable; flagging without blocking", errorCodeOf(error) ?? String(error));
      return { policy: { ...mergePolicy(configuredPolicy(this.#env)), block: false }, allowSet: new CidrSet([]) };
    }
  }

  /**
   * Blocks each flagged client's address (unless allow-listed or the policy does not block)
   * and reports the flag. The address comes from the ingest call and is used for the block's
   * subject only: it is written nowhere, logged nowhere. A failure is logged and the flag
   * stays (the client is not flagged again until its cooldown ends).
   */
  async actOn(
    found: readonly Found[],
    ips: readonly string[] | undefined,
    view: { policy: AnomalyPolicy; allowSet: CidrSet },
    nowMs: number,
  ): Promise<void> {
    for (const detection of found) {
      const ip = ips?.[detection.hitIndex];
      const allowListed = ip !== undefined && view.allowSet.has(ip);
      let blockedUntil: number | undefined;
      if (view.policy.block && ip !== undefined && !allowListed) {
        const subject = `ip:${ip}`;
        const untilMs = nowMs + view.policy.blockMs;
        try {
          await this.#env.RATE_LIMITER.getByName(subject).block({ subject, untilMs, reason: `anomaly: ${detection.rule}` });
          blockedUntil = untilMs;
        } catch (error) {
          console.error(`collector: blocking a flagged client (${detection.rule}) failed`, errorCodeOf(error) ?? String(error));
        }
      }
      try {
        await this.#env.PROTECTION.getByName(PROTECTION_NAME).reportFlag({
          client: detection.client,
          rule: detection.rule,
          at: detection.at,
          blocked: blockedUntil !== undefined,
          allowListed,
          ...(blockedUntil === undefined ? {} : { blockedUntil }),
          evidence: detection.evidence,
        });
      } catch (error) {
        console.error("collector: reporting a flag failed", errorCodeOf(error) ?? String(error));
      }
    }
  }
}
