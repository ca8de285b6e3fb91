import type { AnomalyPolicy } from "../../../rpc/protection";

/**
 * The built-in policy (docs/protection.md explains each number). Detection is on; blocking is
 * opt-in (`"block": true` in ANOMALY_POLICY or through `Admin.protection().setPolicy`), because
 * a false positive that blocks a real client costs more than a flag an operator reads.
 */
export const DEFAULT_ANOMALY_POLICY: AnomalyPolicy = {
  enabled: true,
  block: false,
  blockMs: 10 * 60_000,
  alpha: 0.1,
  rateK: 4,
  rateMinCount: 120,
  rateMinSd: 5,
  rateMinRelativeSd: 0.25,
  scanK: 4,
  scanMinCount: 20,
  scanMinShare: 0.5,
  scanMinSd: 0.05,
  priorRateMean: 10,
  priorRateSd: 10,
  priorScanShare: 0.05,
  priorScanSd: 0.1,
};

/** Each layer's fields replace the ones before; absent fields fall through. */
export function mergePolicy(...layers: Partial<AnomalyPolicy>[]): AnomalyPolicy {
  const merged: AnomalyPolicy = { ...DEFAULT_ANOMALY_POLICY };
  for (const layer of layers) {
    for (const [key, value] of Object.entries(layer)) {
      if (value !== undefined) (merged as unknown as Record<string, unknown>)[key] = value;
    }
  }
  return merged;
}
