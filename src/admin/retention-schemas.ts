import * as v from "valibot";

/** Every data class `Admin.retention()` reports (src/admin/retention-settings.ts). */
export const DATA_CLASSES = [
  "limiter.state",
  "limiter.shadowCounts",
  "limiter.idempotency",
  "ledger.entries",
  "ledger.idempotency",
  "ledger.keyRuleState",
  "ledger.keySpendDays",
  "ledger.keySpendMonths",
  "ledger.auditReports",
  "paths.minutes",
  "paths.hours",
  "paths.days",
  "paths.clients",
  "metrics.minutes",
  "metrics.hours",
  "metrics.days",
  "limiter.checkCounts",
  "alerts.history",
  "protection.flags",
  "protection.baselines",
  "adaptive.history",
] as const;

export type DataClass = (typeof DATA_CLASSES)[number];

export const retentionInputSchema = v.strictObject({
  dataClass: v.optional(v.picklist(DATA_CLASSES, `must be one of ${DATA_CLASSES.join(", ")}`)),
});
