/** Gateway hot-path contract: the default entrypoint `Gateway`. Types only. See docs/gateway.md. */

export interface AuthorizeInput {
  /** The caller's API key (`tg_…`), as sent in `Authorization: Bearer <key>`. */
  apiKey?: string;
  /** The client's address: the per-IP limit (`GATEWAY_IP_POLICY`) applies to it. */
  ip: string;
  method: string;
  path: string;
  /** A concrete `resource.action` the key must allow. Needs `apiKey`. */
  scope?: string;
  /** A fixed price: debited at once, nothing to settle. Needs `apiKey`. */
  cost?: number;
  /** The most the request may cost: held until `settle`. Needs `apiKey`. */
  estimate?: number;
  /** How long the hold stays open without a `settle` (default 10 minutes, at most 30 days). */
  holdTtlMs?: number;
}

/** Why `authorize` refused. */
export type AuthorizeCode =
  | "MISSING_KEY"
  | "INVALID_KEY"
  | "KEY_REVOKED"
  | "KEY_EXPIRED"
  | "INSUFFICIENT_SCOPE"
  | "RATE_LIMITED"
  | "INSUFFICIENT_CREDITS"
  | "SPEND_CAP_EXCEEDED"
  /** The client's address is on the deny list (docs/protection.md). */
  | "IP_DENIED";

export interface AuthorizeResult {
  allowed: boolean;
  /** The status to answer: 200 (go on), 401, 402, 403 or 429. */
  status: 200 | 401 | 402 | 403 | 429;
  /** Present when denied. */
  code?: AuthorizeCode;
  accountId?: string;
  keyId?: string;
  /** The hold placed for `estimate`: pass it to `settle`. */
  holdId?: string;
  /** The debit entry of a fixed `cost`. */
  entryId?: string;
  /** 0 unless 429. */
  retryAfterMs: number;
  /** Copy onto the response: `RateLimit-Policy`, `RateLimit`, `X-RateLimit-*`, `Retry-After`, `WWW-Authenticate`. */
  headers: Record<string, string>;
}

export interface SettleInput {
  accountId: string;
  holdId: string;
  /** What the request really cost; 0 voids the hold. */
  actualCost: number;
  /** The upstream's status and the request's latency, kept on the settling entry. */
  status: number;
  latencyMs: number;
  /** A retried settle with the same key settles once. */
  idempotencyKey: string;
}

/**
 * - `committed`: `actualCost` was captured (up to the hold, beyond it within the overdraft);
 * - `capped`: the account could not cover more than the hold, so the hold was captured in full;
 * - `voided`: `actualCost` was 0;
 * - `debited`: the hold had expired, so `actualCost` was debited instead;
 * - `insufficient_credits`: the hold had expired and the account cannot cover `actualCost`;
 * - `already_settled`: the hold was committed or voided by an earlier call with another key.
 */
export type SettleOutcome = "committed" | "capped" | "voided" | "debited" | "insufficient_credits" | "already_settled";

export interface SettleResult {
  /** The account's available balance afterwards. */
  balance: number;
  outcome: SettleOutcome;
  /** What this settle took from the account. */
  charged: number;
}

/** The default `Gateway` entrypoint. */
export interface GatewayApi {
  authorize(input: AuthorizeInput): Promise<AuthorizeResult>;
  settle(input: SettleInput): Promise<SettleResult>;
}
