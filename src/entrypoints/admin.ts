import { WorkerEntrypoint } from "cloudflare:workers";
import type { Principal } from "../../rpc/admin";
import type { Env } from "../env";
import { CreditsAuditService, CreditsService } from "../services/credits-service";
import { GatewayService } from "../services/gateway-service";
import { PathStatsService } from "../services/path-stats-service";
import { RateLimitsService } from "../services/rate-limits-service";

/**
 * `Admin`: every capability, for an operator's own Worker. Binding it grants full control,
 * so bind it only where that is intended. The same surface is `AdminApi` over capnweb.
 */
export class Admin extends WorkerEntrypoint<Env> {
  whoami(): Principal {
    return { role: "admin" };
  }

  rateLimits(): RateLimitsService {
    return new RateLimitsService(this.env);
  }

  credits(): CreditsService {
    return new CreditsService(this.env);
  }

  /** Admin-only: hash-chain verification and the ledger self-audit. */
  creditsAudit(): CreditsAuditService {
    return new CreditsAuditService(this.env);
  }

  pathStats(): PathStatsService {
    return new PathStatsService(this.env);
  }

  gateway(): GatewayService {
    return new GatewayService(this.env, (promise) => this.ctx.waitUntil(promise));
  }
}
