import type { Balance, EntriesPage, Entry } from "../../rpc/credits";
import { all, maybeOne, one, run } from "../platform/sql";
import { entryHash } from "./chain";
import { availableOf, type Totals } from "./invariants";
import type { LedgerAccount } from "./ledger-account";
import { type AccountRow, type EntryRow, newId, toEntry } from "./ledger-rows";

/** What an entry says before the ledger numbers, dates and hashes it. */
export type EntryDraft = Omit<Entry, "entryId" | "seq" | "balanceAfter" | "at" | "prevHash" | "hash"> & { entryId?: string };

export const noChange = (): Totals => ({ granted: 0, held: 0, consumed: 0, expired: 0 });

/**
 * The `entries` table: the immutable, hash-chained record of every change, and the running
 * totals on the account row that each entry moves. `append` is the only writer of `entries`.
 */
export class Journal {
  constructor(
    private readonly sql: SqlStorage,
    private readonly account: LedgerAccount,
  ) {}

  /**
   * Appends one entry: applies its change to the running totals, numbers it, and chains it
   * to the previous entry's hash.
   */
  append(nowMs: number, draft: EntryDraft): Entry {
    const change = draft.change;
    // The account's totals are the last entry's: this entry carries the new ones (see LedgerAccount).
    const account = this.account.row()!;
    const totals = {
      granted: account.granted + change.granted,
      held: account.held + change.held,
      consumed: account.consumed + change.consumed,
      expired: account.expired + change.expired,
    };
    // Key order is fixed here, so the body (and its hash) is canonical.
    const body: Omit<Entry, "hash"> = {
      entryId: draft.entryId ?? newId("e"),
      seq: account.last_seq + 1,
      kind: draft.kind,
      amount: draft.amount,
      balanceAfter: availableOf(totals),
      change: { granted: change.granted, held: change.held, consumed: change.consumed, expired: change.expired },
      reason: draft.reason,
      at: nowMs,
      idempotencyKey: draft.idempotencyKey,
      draws: draft.draws.map((d) => ({ grantId: d.grantId, amount: d.amount })),
      keyId: draft.keyId,
      holdId: draft.holdId,
      grantId: draft.grantId,
      expiresAt: draft.expiresAt,
      priority: draft.priority,
      refundOf: draft.refundOf,
      price: draft.price,
      usage: draft.usage,
      meta: draft.meta,
      prevHash: account.head_hash,
    };
    const text = JSON.stringify(body);
    const hash = entryHash(account.head_hash, text);
    run(
      this.sql,
      `INSERT INTO entries (seq, entry_id, kind, at_ms, balance_after, granted_after, held_after, consumed_after, expired_after, body, prev_hash, hash)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      body.seq,
      body.entryId,
      body.kind,
      nowMs,
      body.balanceAfter,
      totals.granted,
      totals.held,
      totals.consumed,
      totals.expired,
      text,
      account.head_hash,
      hash,
    );
    return { ...(JSON.parse(text) as Omit<Entry, "hash">), hash };
  }

  /** The balance as it stood at `at`: after every entry at or before it. */
  balanceAt(account: AccountRow, at: number): Balance {
    const row = maybeOne<{ granted_after: number; held_after: number; consumed_after: number; expired_after: number }>(
      this.sql,
      "SELECT granted_after, held_after, consumed_after, expired_after FROM entries WHERE at_ms <= ? ORDER BY seq DESC LIMIT 1",
      at,
    );
    const totals = row
      ? { granted: row.granted_after, held: row.held_after, consumed: row.consumed_after, expired: row.expired_after }
      : noChange();
    return { available: availableOf(totals), ...totals, overdraftLimit: account.overdraft_limit };
  }

  /** Entries in chain order, `limit` at a time, optionally within `[since, until)`. */
  page(query: { cursor?: string; since?: number; until?: number; limit?: number }): EntriesPage {
    const limit = query.limit ?? 100;
    const rows = all<EntryRow>(
      this.sql,
      `SELECT seq, body, prev_hash, hash FROM entries
       WHERE seq > ? AND at_ms >= ? AND at_ms < ? ORDER BY seq LIMIT ?`,
      Number(query.cursor ?? 0),
      query.since ?? 0,
      query.until ?? Number.MAX_SAFE_INTEGER,
      limit + 1,
    );
    const items = rows.slice(0, limit).map(toEntry);
    return rows.length > limit ? { items, cursor: String(items.at(-1)!.seq) } : { items };
  }

  /** The entry's body (without its hash), or `undefined` when this account has no such entry. */
  find(entryId: string): Entry | undefined {
    const row = maybeOne<{ body: string }>(this.sql, "SELECT body FROM entries WHERE entry_id = ?", entryId);
    return row === undefined ? undefined : (JSON.parse(row.body) as Entry);
  }

  /** The body of an entry known to exist. */
  get(entryId: string): Entry {
    return JSON.parse(one<{ body: string }>(this.sql, "SELECT body FROM entries WHERE entry_id = ?", entryId).body) as Entry;
  }
}
