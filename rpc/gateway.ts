/** Gateway hot-path contract: the default entrypoint `Gateway`. Types only. See docs/gateway.md. */
import type { Usage } from "./credits";

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
  /**
   * A request priced by the account's price book (an LLM call): the hold is the quote's worst
   * case, `inputTokens`, `cachedTokens` and `cacheWriteTokens` at their prices plus
   * `maxOutputTokens` output tokens, placed in the same ledger call as the key check. Held until
   * `settle`. Needs `apiKey`; excludes `cost` and `estimate`.
   */
  usage?: Usage;
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
  /** The hold placed for `estimate` or `usage`: pass it to `settle`. */
  holdId?: string;
  /** Credits held by `holdId`. */
  held?: number;
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
  /** What the request really cost; 0 voids the hold. Give this or `usage`. */
  actualCost?: number;
  /**
   * What the request really used (an LLM call): priced exactly by the account's price book, with
   * the carried remainder, and committed against the hold. Give this or `actualCost`.
   */
  usage?: Usage;
  /**
   * Charge never more than the hold: the part of the cost above it is recorded as its own
   * `overrun` entry (not charged) and reported as `overrun`. For requests cut short, whose
   * usage may be an estimate. Without it, a cost above the hold is taken within the overdraft.
   */
  capAtHold?: boolean;
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
  /** With `capAtHold`: the cost above the hold, recorded but not charged (0 when none). */
  overrun?: number;
}

/** The default `Gateway` entrypoint. */
export interface GatewayApi {
  authorize(input: AuthorizeInput): Promise<AuthorizeResult>;
  settle(input: SettleInput): Promise<SettleResult>;
}
