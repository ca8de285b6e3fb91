/**
 * The shipped object classes as the bench binds them: the same code, constructed with the cost
 * meter's hooks (bench/workers/cost-meter.ts), plus two bench-only methods the cost run calls.
 * They are not counted as requests: only the shipped classes' own methods are.
 * RateLimiterDO's bench subclass is BenchRateLimiterDO (it also carries the ceiling's no-ops).
 */
import {
  AdaptiveLimitsDO,
  AggregatorDO,
  AlertsDO,
  CreditLedgerDO,
  MaintenanceDO,
  MetricsDO,
  PathCollectorDO,
  ProtectionDO,
} from "../../src/index";
import type { Env } from "../../src/platform/env";
import type { TollgateObject } from "../../src/platform/tollgate-object";
import { costMeter, countRequestsOf, type ObjectKind } from "./cost-meter";

// biome-ignore lint/suspicious/noExplicitAny: a mixin's base must take `any[]` (TypeScript's rule for mixins)
type ObjectClass = new (...args: any[]) => TollgateObject;

/** The bench-only surface every metered object has (reached by BenchCost, never by tollgate). */
export interface MeteredObject {
  /** Constructs the object (migrations included) and does nothing else. */
  benchPing(): null;
  /** Runs its due alarm work now, at the isolate's clock. */
  benchRunAlarm(): Promise<{ ran: number; nextDueMs: number | null }>;
  /** Has it push the metrics rows it still holds (CostMeter.nudge). */
  benchNudge(): Promise<boolean>;
}

function metered<C extends ObjectClass>(Base: C, kind: ObjectKind) {
  return class extends Base implements MeteredObject {
    // biome-ignore lint/suspicious/noExplicitAny: see ObjectClass
    constructor(...args: any[]) {
      const [ctx, env] = args as [DurableObjectState, Env];
      super(ctx, env, costMeter.hooks(ctx, kind));
      countRequestsOf(kind);
    }

    benchPing(): null {
      return null;
    }

    benchRunAlarm(): Promise<{ ran: number; nextDueMs: number | null }> {
      return costMeter.runAlarm(this.ctx);
    }

    benchNudge(): Promise<boolean> {
      return costMeter.nudge(this.ctx, this.scheduler);
    }
  };
}

export const MeteredCreditLedgerDO = metered(CreditLedgerDO, "CreditLedgerDO");
export const MeteredPathCollectorDO = metered(PathCollectorDO, "PathCollectorDO");
export const MeteredAggregatorDO = metered(AggregatorDO, "AggregatorDO");
export const MeteredMaintenanceDO = metered(MaintenanceDO, "MaintenanceDO");
export const MeteredAdaptiveLimitsDO = metered(AdaptiveLimitsDO, "AdaptiveLimitsDO");
export const MeteredProtectionDO = metered(ProtectionDO, "ProtectionDO");
export const MeteredMetricsDO = metered(MetricsDO, "MetricsDO");
export const MeteredAlertsDO = metered(AlertsDO, "AlertsDO");
