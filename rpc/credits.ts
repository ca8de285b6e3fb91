/**
 * Credits and API-key contract: entrypoint `Credits`, object `CreditLedgerDO` (one per
 * account). Types only. All amounts are safe integers in the account's smallest unit; all
 * times are epoch milliseconds. See docs/credits.md for the model and its invariants.
 */
import type { Decision, Rule } from "./rate-limits";
import type { ErrorValue } from "./errors";

export interface CreateAccountInput {
  /** 1–64 of `[A-Za-z0-9-]`, starting with a letter or digit (it is embedded in API keys). Generated when absent. */
  accountId?: string;
  name: string;
  /** How far `available` may go below zero. Default 0. */
  overdraftLimit?: number;
}

export interface Account {
  accountId: string;
  name: string;
  overdraftLimit: number;
  createdAt: number;
}

/** `granted = available + held + consumed + expired`, and `available ≥ -overdraftLimit`. */
export interface Balance {
  available: number;
  held: number;
  granted: number;
  consumed: number;
  expired: number;
  overdraftLimit: number;
}

export interface BalanceInput {
  accountId: string;
  /** Read the balance as it stood at this time (after every entry at or before it). */
  at?: number;
}

/**
 * `overrun`: the cost of a hold's request above the hold, when it was committed with
 * `capAtHold`: recorded beside the commit, never charged (it changes no total).
 */
export type EntryKind = "grant" | "debit" | "reserve" | "commit" | "void" | "release" | "refund" | "expire" | "overrun";

/** A part of an entry's amount, by grant; `grantId: null` is the overdraft. */
export interface Draw {
  grantId: string | null;
  amount: number;
}

/** The price an entry was charged at, and the exact arithmetic behind it. */
export interface EntryPrice {
  operation: string;
  model: string;
  /** Credits per 1,000,000 units of each dimension. */
  request?: number;
  inputTokens?: number;
  outputTokens?: number;
  cachedTokens?: number;
  cacheWriteTokens?: number;
  /** Exact cost in millionths of a credit, as a decimal string (it may exceed 2^53). */
  exactMillionths: string;
  carryBefore: number;
  carryAfter: number;
}

/** An immutable ledger entry. `change` is what it did to each total; `balanceAfter` is `available` after it. */
export interface Entry {
  entryId: string;
  /** Position in the account's chain, from 1. */
  seq: number;
  kind: EntryKind;
  amount: number;
  balanceAfter: number;
  change: { granted: number; held: number; consumed: number; expired: number };
  reason: string;
  at: number;
  idempotencyKey: string | null;
  /** The grants drawn from (debit, reserve, commit) or given back to (void, release, refund, expire). */
  draws: Draw[];
  keyId?: string;
  holdId?: string;
  /** grant: the grant's id, expiry and priority. */
  grantId?: string;
  expiresAt?: number;
  priority?: number;
  /** refund: the entry refunded. */
  refundOf?: string;
  price?: EntryPrice;
  usage?: Usage;
  meta?: Record<string, string>;
  prevHash: string;
  hash: string;
}

export interface GrantInput {
  accountId: string;
  amount: number;
  /** After this time the grant's remainder is booked as expired (by alarm, exactly once). */
  expiresAt?: number;
  /** Lower is consumed first. Default 0. */
  priority?: number;
  reason: string;
  idempotencyKey: string;
  meta?: Record<string, string>;
}

/** Why a spend was refused; these are values, never errors. */
export type SpendDenial = "INSUFFICIENT_CREDITS" | "SPEND_CAP_EXCEEDED" | "RATE_LIMITED" | "KEY_INACTIVE";

export interface Denied {
  ok: false;
  code: SpendDenial;
  balance: Balance;
  /** RATE_LIMITED: when the same call would be admitted. */
  retryAfterMs?: number;
  /** RATE_LIMITED: the key's rule that denied. */
  deniedBy?: string[];
}

export interface DebitInput {
  accountId: string;
  amount: number;
  reason: string;
  idempotencyKey: string;
  /** Charged against this key's spend caps and rate rules, atomically with the debit. */
  keyId?: string;
  meta?: Record<string, string>;
}

export type DebitResult = { ok: true; entry: Entry; balance: Balance } | Denied;

export interface ReserveInput {
  accountId: string;
  amount: number;
  /** Released by alarm when neither committed nor voided within this time. */
  ttlMs: number;
  idempotencyKey: string;
  keyId?: string;
  reason?: string;
  meta?: Record<string, string>;
}

export type ReserveResult = { ok: true; holdId: string; expiresAt: number; entry: Entry; balance: Balance } | Denied;

export type HoldStatus = "open" | "committed" | "voided" | "expired";

export interface CommitInput {
  accountId: string;
  holdId: string;
  /** What to capture: up to the held amount, or more only within the overdraft. The rest is released. Give this or `usage`. */
  amount?: number;
  /**
   * What the held request used: priced by the price book (with the key's carried remainder, as
   * `charge` does) and captured. The commit entry keeps the usage and the price. Give this or `amount`.
   */
  usage?: Usage;
  /** Capture at most the hold: the cost above it is booked as an `overrun` entry, not charged. */
  capAtHold?: boolean;
  idempotencyKey: string;
  reason?: string;
  meta?: Record<string, string>;
}

export type CommitResult =
  | { ok: true; entry: Entry; balance: Balance; overrun?: Entry }
  | { ok: false; code: "HOLD_NOT_OPEN"; status: HoldStatus; balance: Balance }
  | { ok: false; code: "INSUFFICIENT_CREDITS"; balance: Balance };

export interface VoidInput {
  accountId: string;
  holdId: string;
  idempotencyKey?: string;
  reason?: string;
}

export type VoidResult =
  | { ok: true; entry: Entry; balance: Balance }
  | { ok: false; code: "HOLD_NOT_OPEN"; status: HoldStatus; balance: Balance };

export interface CreditRefundInput {
  accountId: string;
  /** A debit or commit entry (a charge is a debit). */
  entryId: string;
  /** Default: all that is still refundable. */
  amount?: number;
  reason: string;
  idempotencyKey: string;
}

export type CreditRefundResult =
  | { ok: true; entry: Entry; balance: Balance }
  | { ok: false; code: "REFUND_EXCEEDS_TAKEN"; refundable: number; balance: Balance };

export interface EntriesInput {
  accountId: string;
  /** From a previous page's `cursor`. */
  cursor?: string;
  /** 1–500, default 100. */
  limit?: number;
  /** Entries at or after this time. */
  since?: number;
  /** Entries before this time. */
  until?: number;
}

export interface EntriesPage {
  items: Entry[];
  /** Present when more entries follow. */
  cursor?: string;
}

export interface Hold {
  holdId: string;
  amount: number;
  status: HoldStatus;
  expiresAt: number;
  keyId?: string;
  createdAt: number;
}

/** Per-key budgets, in the account's unit, per UTC day and calendar month. */
export interface SpendCap {
  perDay?: number;
  perMonth?: number;
}

/** A key's spend in the current UTC day and calendar month (shared with keys it was rolled from), with the caps. */
export interface KeySpend {
  keyId: string;
  day: { period: string; spent: number; cap?: number };
  month: { period: string; spent: number; cap?: number };
}

export interface CreateKeyInput {
  accountId: string;
  name: string;
  /** `resource.action`, `resource.*` or `*`. */
  scopes: string[];
  expiresAt?: number;
  /** Rate rules applied to every debit, reserve and charge made with this key. */
  rules?: Rule[];
  spendCap?: SpendCap;
}

export interface CreatedKey {
  keyId: string;
  /** Shown once: only a hash of its secret is stored. */
  key: string;
  info: KeyInfo;
}

/** A key without its secret. `start` is the non-secret beginning of the key, to recognise it. */
export interface KeyInfo {
  keyId: string;
  name: string;
  start: string;
  scopes: string[];
  rules: Rule[];
  spendCap?: SpendCap;
  createdAt: number;
  expiresAt?: number;
  revokedAt?: number;
  /** Set on a key replaced by `rollKey`: the key that replaced it. */
  rolledTo?: string;
}

export interface VerifyKeyInput {
  key: string;
  /** A concrete `resource.action` the key must allow. */
  scope?: string;
}

export type KeyRejection = "MALFORMED" | "NOT_FOUND" | "REVOKED" | "EXPIRED" | "INSUFFICIENT_SCOPE";

export type VerifyKeyResult =
  | { valid: true; accountId: string; keyId: string; scopes: string[]; rules: Rule[]; expiresAt?: number; spendCap?: SpendCap }
  | { valid: false; code: KeyRejection };

export interface KeyRef {
  accountId: string;
  keyId: string;
}

export interface RollKeyInput extends KeyRef {
  /** How long the old key keeps working. 0 revokes it at once. */
  graceMs: number;
}

export interface RolledKey extends CreatedKey {
  previous: KeyInfo;
}

/**
 * `CreditLedgerDO.admitRequest`: the gateway's one call into an account (see docs/gateway.md).
 * Verifies the key and `scope`, counts one request against the key's rules, checks its spend
 * caps, and holds (`mode: "hold"`) or debits (`mode: "debit"`) `amount`, all atomically.
 * `amount` 0 only verifies and counts.
 */
export interface AdmitRequestInput {
  key: string;
  scope?: string;
  /** The amount to hold or debit. Give this or `usage`. */
  amount?: number;
  /** A priced request: the quote's worst case for this usage is held (`mode: "hold"` only). */
  usage?: Usage;
  mode: "hold" | "debit";
  /** How long a hold stays open before the alarm releases it. */
  ttlMs: number;
  /**
   * Makes a retried admission with an entry (a hold or a debit) answer its first result. The
   * gateway sends none: each of its requests is new, and a key it never reuses would cost rows.
   */
  idempotencyKey?: string;
  reason?: string;
  meta?: Record<string, string>;
}

export type AdmitRequestResult =
  | {
      ok: true;
      accountId: string;
      keyId: string;
      scopes: string[];
      holdId?: string;
      /** Credits held by `holdId`. */
      held?: number;
      expiresAt?: number;
      /** The debit's entry, when `mode` was "debit" and `amount` > 0. */
      entryId?: string;
      balance: Balance;
      /** The key's rate rules after this request, when it has any. */
      keyLimits?: Decision;
    }
  | {
      ok: false;
      code: KeyRejection | SpendDenial;
      /** Present once the key itself was recognised (not for MALFORMED or NOT_FOUND). */
      accountId?: string;
      keyId?: string;
      balance?: Balance;
      retryAfterMs?: number;
      deniedBy?: string[];
      keyLimits?: Decision;
    };

/** `CreditLedgerDO.releaseAdmission`: undoes an admitted request another check overruled. */
export interface ReleaseAdmissionInput {
  accountId: string;
  keyId: string;
  holdId?: string;
  entryId?: string;
  idempotencyKey: string;
}

export interface ReleaseAdmissionResult {
  balance: Balance;
}

/**
 * `CreditLedgerDO.commitMany`: several commits of one account in one object request (the
 * gateway's settles that waited while an earlier one was in flight). Each runs as its own
 * `commit` would, with its own idempotency key, and gets its own answer or error, in order.
 */
export interface CommitManyInput {
  accountId: string;
  /** 1 to 100 commits, each a `CommitInput` without `accountId`. */
  commits: Omit<CommitInput, "accountId">[];
}

export interface CommitManyResult {
  outcomes: CommitOutcome[];
}

/** One commit's answer, or the error it would have thrown (its `code`, and its message without the `[CODE]` prefix). */
export type CommitOutcome = { answer: CommitResult } | { error: ErrorValue };

/** One line of a price book: credits per 1,000,000 units of each dimension. */
export interface Price {
  operation: string;
  /** A model name, or `"*"` for every model of the operation (`operation: "*"` too for a catch-all). */
  model: string;
  request?: number;
  /** Input tokens that are neither read from nor written to the provider's prompt cache. */
  inputTokens?: number;
  /** Output tokens, reasoning tokens included. */
  outputTokens?: number;
  /** Input tokens read from the prompt cache (OpenAI `cached_tokens`, Anthropic `cache_read_input_tokens`). */
  cachedTokens?: number;
  /** Input tokens written to the prompt cache (Anthropic `cache_creation_input_tokens`). */
  cacheWriteTokens?: number;
}

export interface SetPricesInput {
  accountId?: string;
  /** Replaces the account's price book; empty returns to the default from configuration. */
  prices: Price[];
}

export interface PriceBook {
  prices: Price[];
  source: "account" | "default";
}

export interface Usage {
  operation: string;
  model?: string;
  /** Default 1. */
  requests?: number;
  /** Input tokens neither read from nor written to the prompt cache (OpenAI: `prompt_tokens − cached_tokens`). */
  inputTokens?: number;
  /** Output tokens, reasoning tokens included. */
  outputTokens?: number;
  /** Input tokens read from the prompt cache. */
  cachedTokens?: number;
  /** Input tokens written to the prompt cache. */
  cacheWriteTokens?: number;
  /** quote only: the most output tokens the call may produce, for sizing a hold. */
  maxOutputTokens?: number;
}

export interface QuoteInput {
  accountId: string;
  usage: Usage;
  keyId?: string;
}

export interface Quote {
  /** What `charge` would debit now (including the carried remainder of earlier calls). */
  cost: number;
  /** The most the call can cost (with `maxOutputTokens`, if given): the amount to hold. */
  worstCase: number;
  exactMillionths: string;
  price: Price;
}

export interface ChargeInput {
  accountId: string;
  keyId?: string;
  usage: Usage;
  idempotencyKey: string;
  reason?: string;
  meta?: Record<string, string>;
}

export type ChargeResult = ({ ok: true; entry: Entry; balance: Balance } | Denied) & { cost: number };

export type UsageRange = "1h" | "24h" | "7d" | "30d" | { from: number; to: number };

export interface UsageInput {
  accountId: string;
  range: UsageRange;
  groupBy: "day" | "key" | "model" | "operation";
}

export interface UsageReport {
  /** Whole UTC days covered (rollups are daily). */
  from: number;
  to: number;
  groupBy: UsageInput["groupBy"];
  /**
   * Credits spent and calls made per group, and the tokens of the calls that reported usage
   * (`charge`, or a commit with `usage`); refunds take their credits back, never their tokens.
   */
  items: UsageReportItem[];
}

export interface UsageReportItem {
  group: string;
  amount: number;
  count: number;
  inputTokens: number;
  outputTokens: number;
  cachedTokens: number;
  cacheWriteTokens: number;
}

export interface AccountRef {
  accountId: string;
}

/** The `Credits` entrypoint, and `AdminApi.credits()` over capnweb. */
export interface CreditsApi {
  createAccount(input: CreateAccountInput): Promise<Account>;
  account(input: AccountRef): Promise<Account>;
  balance(input: BalanceInput): Promise<Balance>;
  grant(input: GrantInput): Promise<Entry>;
  debit(input: DebitInput): Promise<DebitResult>;
  reserve(input: ReserveInput): Promise<ReserveResult>;
  commit(input: CommitInput): Promise<CommitResult>;
  void(input: VoidInput): Promise<VoidResult>;
  refund(input: CreditRefundInput): Promise<CreditRefundResult>;
  hold(input: { accountId: string; holdId: string }): Promise<Hold>;
  entries(input: EntriesInput): Promise<EntriesPage>;
  createKey(input: CreateKeyInput): Promise<CreatedKey>;
  verifyKey(input: VerifyKeyInput): Promise<VerifyKeyResult>;
  revokeKey(input: KeyRef): Promise<KeyInfo>;
  rollKey(input: RollKeyInput): Promise<RolledKey>;
  listKeys(input: AccountRef): Promise<{ keys: KeyInfo[] }>;
  setPrices(input: SetPricesInput): Promise<PriceBook>;
  prices(input: AccountRef): Promise<PriceBook>;
  quote(input: QuoteInput): Promise<Quote>;
  charge(input: ChargeInput): Promise<ChargeResult>;
  usage(input: UsageInput): Promise<UsageReport>;
}

/** What `verifyChain` found. */
export interface ChainReport {
  ok: boolean;
  checked: number;
  headHash: string;
  brokenAtSeq?: number;
  reason?: string;
}

/** One run of the self-audit: every invariant re-checked from stored entries, grants and holds. */
export interface AuditReport {
  at: number;
  ok: boolean;
  violations: string[];
  /** `full`: from the first entry (Admin's `audit`); `incremental`: from the last clean audit (the alarm's). */
  mode: "full" | "incremental";
  /** The first entry this audit re-read. */
  fromSeq: number;
  /** Entries in the account. */
  entries: number;
  balance: Balance;
  chain: ChainReport;
}

/** Admin-only ledger operations: `Admin.creditsAudit()` and `AdminApi.creditsAudit()`. */
export interface CreditsAuditApi {
  verifyChain(input: AccountRef): Promise<ChainReport>;
  /** Runs the self-audit now and returns its report (also stored). */
  audit(input: AccountRef): Promise<AuditReport>;
  /** Stored reports, newest first; `divergent: true` returns only failing ones. */
  auditReports(input: { accountId: string; limit?: number; divergent?: boolean }): Promise<{ reports: AuditReport[] }>;
}
