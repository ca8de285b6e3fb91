import { RpcTarget } from "cloudflare:workers";
import type { AdminApi, Principal } from "../../rpc/admin";
import type { Env } from "../env";
import { CreditsAuditService, CreditsService } from "../services/credits-service";
import { GatewayService, type WaitUntil } from "../services/gateway-service";
import { PathStatsService } from "../services/path-stats-service";
import { RateLimitsService } from "../services/rate-limits-service";

/** What `authenticate(adminToken)` hands to a capnweb caller: every domain. */
export class AdminApiTarget extends RpcTarget implements AdminApi {
  readonly #env: Env;
  readonly #waitUntil: WaitUntil;

  constructor(env: Env, waitUntil: WaitUntil) {
    super();
    this.#env = env;
    this.#waitUntil = waitUntil;
  }

  whoami(): Principal {
    return { role: "admin" };
  }

  rateLimits(): RateLimitsService {
    return new RateLimitsService(this.#env);
  }

  credits(): CreditsService {
    return new CreditsService(this.#env);
  }

  /** Admin-only: hash-chain verification and the ledger self-audit. */
  creditsAudit(): CreditsAuditService {
    return new CreditsAuditService(this.#env);
  }

  pathStats(): PathStatsService {
    return new PathStatsService(this.#env);
  }

  gateway(): GatewayService {
    return new GatewayService(this.#env, this.#waitUntil);
  }
}
