import type { AnomalyPolicy } from "../../../rpc/protection";
import { policyPatchSchema } from "./schemas";
import { parseJsonVar } from "../../platform/json-var";

/** The variables protection reads (wrangler.toml `[vars]`). */
export interface ProtectionVars {
  /** JSON: any fields of the anomaly policy, over the built-in defaults (docs/protection.md). */
  ANOMALY_POLICY?: string;
  /** How long the gateway and the collectors trust their copy of the lists and policy, in ms (default 5000). */
  PROTECTION_CACHE_MS?: string;
}

/** The configured layer of the policy (checked once per isolate; malformed: INTERNAL, reason logged). */
export function configuredPolicy(vars: ProtectionVars): Partial<AnomalyPolicy> {
  return parseJsonVar("ANOMALY_POLICY", vars.ANOMALY_POLICY, "{}", policyPatchSchema) as Partial<AnomalyPolicy>;
}
