/** What an authenticated capnweb caller can reach. Types only. */
import type { BackupApi } from "./backup";
import type { CreditsApi, CreditsAuditApi } from "./credits";
import type { GatewayApi } from "./gateway";
import type { PathStatsApi } from "./path-stats";
import type { RateLimitsApi } from "./rate-limits";

/** Who a capability belongs to, as the server sees it. */
export interface Principal {
  role: "admin" | "account";
  accountId?: string;
}

/**
 * The capability returned by `authenticate(adminToken)`: every domain, one sub-capability
 * each. Calls pipeline, so `api.authenticate(t).rateLimits().check(...)` is one round trip.
 */
export interface AdminApi extends BackupApi {
  whoami(): Principal;
  rateLimits(): RateLimitsApi;
  credits(): CreditsApi;
  /** Hash-chain verification and self-audit reports of any account. */
  creditsAudit(): CreditsAuditApi;
  pathStats(): PathStatsApi;
  gateway(): GatewayApi;
}

/** The capability returned by `authenticate(apiKey)`: one account only (arrives with the gateway issue). */
export interface AccountApi {
  whoami(): Principal;
}

/** The main object served at `/rpc`. Nothing but `authenticate` is reachable without a token. */
export interface TollgateRpc {
  authenticate(token: string): Promise<AdminApi | AccountApi>;
}
