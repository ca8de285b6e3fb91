import { RpcTarget } from "cloudflare:workers";
import type { AllowEntry, AnomalyPolicy, DenyEntry, Flag, PolicyInfo, ProtectionApi } from "../../../rpc/protection";
import type { StatsRange } from "../../../rpc/path-stats";
import type { Env } from "../../platform/env";
import { PROTECTION_NAME } from "../../platform/names";

/**
 * Protection administration (`Admin.protection()`, capnweb `AdminApi.protection()`): the allow
 * and deny lists, the run-time anomaly policy, and the flag log. The object validates each call.
 * Changes reach the gateway and the collectors within `PROTECTION_CACHE_MS`.
 */
export class ProtectionService extends RpcTarget implements ProtectionApi {
  readonly #env: Env;

  constructor(env: Env) {
    super();
    this.#env = env;
  }

  allowList(): Promise<{ entries: AllowEntry[] }> {
    return this.#object().allowList();
  }

  allow(input: { cidr: string; note?: string }): Promise<AllowEntry> {
    return this.#object().allow(input);
  }

  unallow(input: { cidr: string }): Promise<{ removed: boolean }> {
    return this.#object().unallow(input);
  }

  denyList(): Promise<{ entries: DenyEntry[] }> {
    return this.#object().denyList();
  }

  deny(input: { cidr: string; untilMs?: number; reason: string }): Promise<DenyEntry> {
    return this.#object().deny(input);
  }

  undeny(input: { cidr: string }): Promise<{ removed: boolean }> {
    return this.#object().undeny(input);
  }

  policy(): Promise<PolicyInfo> {
    return this.#object().policy();
  }

  setPolicy(input: { policy: Partial<AnomalyPolicy> }): Promise<PolicyInfo> {
    return this.#object().setPolicy(input);
  }

  flagged(input?: { range?: StatsRange; limit?: number; client?: string }): Promise<{ flags: Flag[] }> {
    return this.#object().flagged(input);
  }

  #object() {
    return this.#env.PROTECTION.getByName(PROTECTION_NAME);
  }
}
