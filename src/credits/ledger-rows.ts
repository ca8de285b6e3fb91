import type { Account, Balance, Entry, HoldStatus, KeyInfo, SpendCap } from "../../rpc/credits";
import type { Rule } from "../../rpc/rate-limits";
import { invalidArgument } from "../platform/errors";
import type { GrantBucket } from "./burn-down";
import { availableOf } from "./invariants";
import { toHex } from "./sha256";
import { LEDGER_BOUNDS } from "./schemas";

/** Rows of CreditLedgerDO's tables (see credit-ledger-schema.ts) and their public shapes. */
export type AccountRow = {
  account_id: string;
  name: string;
  overdraft_limit: number;
  created_at_ms: number;
  granted: number;
  held: number;
  consumed: number;
  expired: number;
  held_debt: number;
  consumed_debt: number;
  last_seq: number;
  head_hash: string;
  /** The last entry's time (0 before the first): read with the totals, not stored on `account`. */
  last_at_ms: number;
};

export type GrantRow = {
  grant_id: string;
  seq: number;
  amount: number;
  remaining: number;
  consumed: number;
  repaid: number;
  expired: number;
  priority: number;
  expires_at_ms: number | null;
  expiry_booked: number;
};

export type HoldRow = {
  hold_id: string;
  amount: number;
  status: HoldStatus;
  expires_at_ms: number;
  key_id: string | null;
  spend_day: string;
  spend_month: string;
  created_at_ms: number;
  /** JSON `Draw[]` while open; null once settled. */
  allocations: string | null;
};

export type KeyRow = {
  key_id: string;
  family_id: string;
  name: string;
  start: string;
  secret_hash: string;
  scopes: string;
  rules: string;
  spend_cap_day: number | null;
  spend_cap_month: number | null;
  created_at_ms: number;
  expires_at_ms: number | null;
  revoked_at_ms: number | null;
  rolled_to: string | null;
};

export type EntryRow = { seq: number; body: string; prev_hash: string; hash: string };

export function toAccount(row: AccountRow): Account {
  return { accountId: row.account_id, name: row.name, overdraftLimit: row.overdraft_limit, createdAt: row.created_at_ms };
}

export function toBalance(row: AccountRow): Balance {
  const totals = { granted: row.granted, held: row.held, consumed: row.consumed, expired: row.expired };
  return { available: availableOf(totals), ...totals, overdraftLimit: row.overdraft_limit };
}

export function toEntry(row: EntryRow): Entry {
  return { ...(JSON.parse(row.body) as Omit<Entry, "hash">), hash: row.hash };
}

export function toBucket(row: GrantRow): GrantBucket {
  return { grantId: row.grant_id, remaining: row.remaining, priority: row.priority, expiresAt: row.expires_at_ms, seq: row.seq };
}

export function isExpired(grant: GrantRow, nowMs: number): boolean {
  return grant.expiry_booked === 1 || (grant.expires_at_ms !== null && grant.expires_at_ms <= nowMs);
}

export function toKeyInfo(row: KeyRow): KeyInfo {
  const spendCap: SpendCap = {
    ...(row.spend_cap_day === null ? {} : { perDay: row.spend_cap_day }),
    ...(row.spend_cap_month === null ? {} : { perMonth: row.spend_cap_month }),
  };
  return {
    keyId: row.key_id,
    name: row.name,
    start: row.start,
    scopes: JSON.parse(row.scopes) as string[],
    rules: JSON.parse(row.rules) as Rule[],
    ...(Object.keys(spendCap).length === 0 ? {} : { spendCap }),
    createdAt: row.created_at_ms,
    ...(row.expires_at_ms === null ? {} : { expiresAt: row.expires_at_ms }),
    ...(row.revoked_at_ms === null ? {} : { revokedAt: row.revoked_at_ms }),
    ...(row.rolled_to === null ? {} : { rolledTo: row.rolled_to }),
  };
}

/**
 * A grant's id (`g_`): random, so an id from another account never resolves here. Entry ids carry
 * their seq (entry-ids.ts), hold ids their expiry (hold-ids.ts).
 */
export function newId(prefix: "g"): string {
  return `${prefix}_${toHex(crypto.getRandomValues(new Uint8Array(10)))}`;
}

/** Compared against when the key id is unknown, so that path does the same work as a wrong secret. */
export const UNKNOWN_KEY_HASH = "f".repeat(64);

/** Compares two SHA-256 hex digests in constant time. */
export function hashesEqual(a: string, b: string): boolean {
  const encoder = new TextEncoder();
  const x = encoder.encode(a);
  const y = encoder.encode(b);
  return x.length === y.length && crypto.subtle.timingSafeEqual(x, y);
}

export function toAmount(cost: bigint): number {
  if (cost > BigInt(LEDGER_BOUNDS.maxAmount))
    throw invalidArgument(`the usage costs ${cost}, more than the largest amount ${LEDGER_BOUNDS.maxAmount}`);
  return Number(cost);
}
