/**
 * Counts every entrypoint and capnweb method (docs/metrics.md). Imported once by src/index.ts,
 * for its effect: the classes' prototype methods are wrapped when the Worker loads.
 */
import { AccountApiTarget } from "../../gateway/account-api";
import { AdminApiTarget } from "../../admin/admin-api";
import { TollgateRpcRoot } from "../../gateway/rpc-root";
import { Admin } from "../../admin/entrypoint";
import { Credits } from "../../credits/entrypoint";
import { Gateway } from "../../gateway/entrypoint";
import { PathStats } from "../../path-stats/entrypoint";
import { RateLimits } from "../../rate-limits/entrypoint";
import type { Env } from "../../platform/env";
import { AdaptiveService } from "../adaptive/service";
import { AlertsService } from "../alerts/service";
import { CreditsAuditService, CreditsService } from "../../credits/service";
import { GatewayService } from "../../gateway/service";
import { PathStatsService } from "../../path-stats/service";
import { ProtectionService } from "../protection/service";
import { RateLimitsService } from "../../rate-limits/service";
import { maybeFlush, recordEntrypointCall } from "../../platform/metering/entrypoint-metrics";
import { instrumentEntrypoint, type EntrypointRecorder } from "../../platform/metering/instrument";
import { OK } from "../../platform/metering/model";

/**
 * Buffers the call; a WorkerEntrypoint (which has `env` and `ctx`) that returned normally also
 * flushes the buffer when it is due. RPC targets have neither, and the runtime cancels what a
 * call that threw left in `waitUntil`: those counts go out with the isolate's next flush.
 */
const record: EntrypointRecorder = (self, kind, outcome) => {
  recordEntrypointCall(kind, outcome);
  const { env, ctx } = self as { env?: Env; ctx?: ExecutionContext };
  if (outcome.code === OK && env !== undefined && ctx !== undefined && typeof ctx.waitUntil === "function") {
    maybeFlush(env, (promise) => ctx.waitUntil(promise));
  }
};

// `fetch` serves capnweb: it is counted (an HTTP request is a billed Workers request) but opens
// no scope, so the capnweb calls it carries are counted as AdminApi / AccountApi calls.
instrumentEntrypoint(Gateway, "Gateway", record, new Set(["fetch"]));
instrumentEntrypoint(RateLimits, "RateLimits", record);
instrumentEntrypoint(Credits, "Credits", record);
instrumentEntrypoint(PathStats, "PathStats", record);
instrumentEntrypoint(Admin, "Admin", record);
instrumentEntrypoint(TollgateRpcRoot, "Rpc", record);
instrumentEntrypoint(AdminApiTarget, "AdminApi", record);
instrumentEntrypoint(AccountApiTarget, "AccountApi", record);
// The domain services Admin and AdminApi hand out (`admin.rateLimits().check(...)`): a call on
// one arrives on its own, outside any entrypoint call, and is counted under the service's name.
instrumentEntrypoint(RateLimitsService, "RateLimitsService", record);
instrumentEntrypoint(CreditsService, "CreditsService", record);
instrumentEntrypoint(CreditsAuditService, "CreditsAuditService", record);
instrumentEntrypoint(PathStatsService, "PathStatsService", record);
instrumentEntrypoint(GatewayService, "GatewayService", record);
instrumentEntrypoint(AlertsService, "AlertsService", record);
instrumentEntrypoint(ProtectionService, "ProtectionService", record);
instrumentEntrypoint(AdaptiveService, "AdaptiveService", record);
