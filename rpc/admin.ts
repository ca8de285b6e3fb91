/** What an authenticated capnweb caller can reach. Types only. */
import type { AdaptiveApi } from "./adaptive";
import type { AlertsApi } from "./alerts";
import type { BackupApi } from "./backup";
import type { Account, Balance, CreditsApi, CreditsAuditApi, EntriesInput, EntriesPage, KeyInfo, UsageInput, UsageReport } from "./credits";
import type { GatewayApi } from "./gateway";
import type { MetricsApi } from "./metrics";
import type { PathStatsApi } from "./path-stats";
import type { ProtectionApi } from "./protection";
import type { RateLimitsApi } from "./rate-limits";
import type { RetentionApi } from "./retention";

/** Who a capability belongs to, as the server sees it. */
export interface Principal {
  role: "admin" | "account";
  accountId?: string;
  /** For an account capability: the key it was obtained with. */
  keyId?: string;
}

/**
 * The capability returned by `authenticate(adminToken)`: every domain, one sub-capability
 * each. Calls pipeline, so `api.authenticate(t).rateLimits().check(...)` is one round trip.
 */
export interface AdminApi extends BackupApi, RetentionApi, MetricsApi {
  whoami(): Principal;
  rateLimits(): RateLimitsApi;
  credits(): CreditsApi;
  /** Hash-chain verification and self-audit reports of any account. */
  creditsAudit(): CreditsAuditApi;
  pathStats(): PathStatsApi;
  gateway(): GatewayApi;
  /** Adaptive limits (docs/adaptive-limits.md). */
  adaptive(): AdaptiveApi;
  /** Allow and deny lists, the anomaly policy, the flag log. */
  protection(): ProtectionApi;
  /** Alert rules, their alerts, acknowledgement and muting. */
  alerts(): AlertsApi;
}

export type AccountEntriesInput = Omit<EntriesInput, "accountId">;
export type AccountUsageInput = Omit<UsageInput, "accountId">;

/**
 * The capability returned by `authenticate(apiKey)`: read access to that key's account only.
 * No method takes an account id (one given is refused as INVALID_ARGUMENT). A revoked or
 * expired key fails its next call with UNAUTHENTICATED.
 */
export interface AccountApi {
  whoami(): Principal;
  account(): Promise<Account>;
  balance(input?: { at?: number }): Promise<Balance>;
  entries(input?: AccountEntriesInput): Promise<EntriesPage>;
  usage(input: AccountUsageInput): Promise<UsageReport>;
  keys(): Promise<{ keys: KeyInfo[] }>;
}

/** The main object served at `/rpc`. Nothing but `authenticate` is reachable without a token. */
export interface TollgateRpc {
  authenticate(token: string): Promise<AdminApi | AccountApi>;
}
