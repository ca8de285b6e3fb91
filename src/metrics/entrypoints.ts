/**
 * Counts every entrypoint and capnweb method (docs/metrics.md). Imported once by src/index.ts,
 * for its effect: the classes' prototype methods are wrapped when the Worker loads.
 */
import { AccountApiTarget } from "../capnweb/account-api";
import { AdminApiTarget } from "../capnweb/admin-api";
import { TollgateRpcRoot } from "../capnweb/rpc-root";
import { Admin } from "../entrypoints/admin";
import { Credits } from "../entrypoints/credits";
import { Gateway } from "../entrypoints/gateway";
import { PathStats } from "../entrypoints/path-stats";
import { RateLimits } from "../entrypoints/rate-limits";
import type { Env } from "../env";
import { AdaptiveService } from "../services/adaptive-service";
import { AlertsService } from "../services/alerts-service";
import { CreditsAuditService, CreditsService } from "../services/credits-service";
import { GatewayService } from "../services/gateway-service";
import { PathStatsService } from "../services/path-stats-service";
import { ProtectionService } from "../services/protection-service";
import { RateLimitsService } from "../services/rate-limits-service";
import { maybeFlush, recordEntrypointCall } from "./entrypoint-metrics";
import { instrumentEntrypoint, type EntrypointRecorder } from "./instrument";
import { OK } from "./model";

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
