import type { Balance, EntriesPage, Entry } from "../../rpc/credits";
import { ServiceError } from "../platform/errors";
import { all, maybeOne, one, write } from "../platform/sql";
import { entryHash } from "./chain";
import { LEGACY_ENTRY_ID, newEntryId, seqOfEntryId } from "./entry-ids";
import { availableOf, type Totals } from "./invariants";
import type { LedgerAccount } from "./ledger-account";
import { type AccountRow, type EntryRow, toEntry } from "./ledger-rows";

/**
 * What an entry says before the ledger numbers, dates and hashes it. `entryId` is made from
 * the entry's `seq` unless given; a given id that does not carry the seq still works (the
 * legacy index finds it and keeps it unique), at the cost of that index's row.
 */
export type EntryDraft = Omit<Entry, "entryId" | "seq" | "balanceAfter" | "at" | "prevHash" | "hash"> & { entryId?: string };

export const noChange = (): Totals => ({ granted: 0, held: 0, consumed: 0, expired: 0 });

/** Whether any stored entry is older than the one before it (a clock set back before migration 7). */
export function timesGoBackwards(sql: SqlStorage): boolean {
  return (
    maybeOne(sql, "SELECT 1 AS found FROM entries a JOIN entries b ON b.seq = a.seq + 1 WHERE b.at_ms < a.at_ms LIMIT 1") !== undefined
  );
}

/**
 * The `entries` table: the immutable, hash-chained record of every change, and the running
 * totals on the account row that each entry moves. `append` is the only writer of `entries`.
 */
export class Journal {
  /**
   * Whether `entries_by_time` still exists: migration 7 drops it from a ledger whose entries'
   * times never go backwards; an older one whose did keeps it, and its queries.
   */
  #timeIndexed: boolean;

  constructor(
    private readonly sql: SqlStorage,
    private readonly account: LedgerAccount,
  ) {
    this.#timeIndexed = this.#hasTimeIndex();
  }

  /**
   * After a restore wrote the entries: a dump's times may go backwards (taken before migration 7
   * from a ledger whose clock was set back), and then they need the index over time again.
   */
  afterImport(): void {
    if (!this.#hasTimeIndex() && timesGoBackwards(this.sql)) this.sql.exec("CREATE INDEX entries_by_time ON entries (at_ms, seq)");
    this.#timeIndexed = this.#hasTimeIndex();
  }

  #hasTimeIndex(): boolean {
    return maybeOne(this.sql, "SELECT 1 AS found FROM sqlite_master WHERE type = 'index' AND name = 'entries_by_time'") !== undefined;
  }

  /**
   * Appends one entry: applies its change to the running totals, numbers it, and chains it
   * to the previous entry's hash.
   */
  append(nowMs: number, draft: EntryDraft): Entry {
    // A given id that carries its seq would skip the legacy index, so nothing else would stop it repeating one.
    if (draft.entryId !== undefined && this.find(draft.entryId) !== undefined) {
      throw new ServiceError("INTERNAL", `entry id "${draft.entryId}" is already taken`);
    }
    const change = draft.change;
    // The account's totals are the last entry's: this entry carries the new ones (see LedgerAccount).
    const account = this.account.row()!;
    // Entry times never go backwards (a clock that did is read as standing still), so a time
    // finds its place in the chain by bisecting `seq`, with no index over time to write.
    const at = Math.max(nowMs, account.last_at_ms);
    const totals = {
      granted: account.granted + change.granted,
      held: account.held + change.held,
      consumed: account.consumed + change.consumed,
      expired: account.expired + change.expired,
    };
    // Key order is fixed here, so the body (and its hash) is canonical.
    const seq = account.last_seq + 1;
    const body: Omit<Entry, "hash"> = {
      entryId: draft.entryId ?? newEntryId(seq),
      seq,
      kind: draft.kind,
      amount: draft.amount,
      balanceAfter: availableOf(totals),
      change: { granted: change.granted, held: change.held, consumed: change.consumed, expired: change.expired },
      reason: draft.reason,
      at,
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
    this.account.forget();
    write(
      this.sql,
      `INSERT INTO entries (seq, entry_id, kind, at_ms, balance_after, granted_after, held_after, consumed_after, expired_after, body, prev_hash, hash)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      body.seq,
      body.entryId,
      body.kind,
      at,
      body.balanceAfter,
      totals.granted,
      totals.held,
      totals.consumed,
      totals.expired,
      text,
      account.head_hash,
      hash,
    );
    this.account.wrote({ ...account, ...totals, last_seq: seq, head_hash: hash, last_at_ms: at });
    return { ...(JSON.parse(text) as Omit<Entry, "hash">), hash };
  }

  /** The balance as it stood at `at`: after every entry at or before it. */
  balanceAt(account: AccountRow, at: number): Balance {
    type Totals = { granted_after: number; held_after: number; consumed_after: number; expired_after: number };
    const columns = "granted_after, held_after, consumed_after, expired_after";
    const row = this.#timeIndexed
      ? maybeOne<Totals>(this.sql, `SELECT ${columns} FROM entries WHERE at_ms <= ? ORDER BY seq DESC LIMIT 1`, at)
      : maybeOne<Totals>(this.sql, `SELECT ${columns} FROM entries WHERE seq = ?`, this.#lastSeqAtOrBefore(at, account.last_seq));
    const totals = row
      ? { granted: row.granted_after, held: row.held_after, consumed: row.consumed_after, expired: row.expired_after }
      : noChange();
    return { available: availableOf(totals), ...totals, overdraftLimit: account.overdraft_limit };
  }

  /** Entries in chain order, `limit` at a time, optionally within `[since, until)`. */
  page(query: { cursor?: string; since?: number; until?: number; limit?: number }): EntriesPage {
    const limit = query.limit ?? 100;
    const after = Number(query.cursor ?? 0);
    const since = query.since ?? 0;
    const until = query.until ?? Number.MAX_SAFE_INTEGER;
    let rows: EntryRow[];
    if (this.#timeIndexed) {
      rows = all<EntryRow>(
        this.sql,
        "SELECT seq, body, prev_hash, hash FROM entries WHERE seq > ? AND at_ms >= ? AND at_ms < ? ORDER BY seq LIMIT ?",
        after,
        since,
        until,
        limit + 1,
      );
    } else {
      // The window's entries are a run of seq: after the last one before `since`, up to the last one before `until`.
      const last = this.account.row()?.last_seq ?? 0;
      const from = Math.max(after, since <= 0 ? 0 : this.#lastSeqAtOrBefore(since - 1, last));
      const to = this.#lastSeqAtOrBefore(until - 1, last);
      rows = all<EntryRow>(
        this.sql,
        "SELECT seq, body, prev_hash, hash FROM entries WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
        from,
        to,
        limit + 1,
      );
    }
    const items = rows.slice(0, limit).map(toEntry);
    return rows.length > limit ? { items, cursor: String(items.at(-1)!.seq) } : { items };
  }

  /** The time of entry `seq` (0 before the first). */
  #lastAt(seq: number): number {
    return seq === 0 ? 0 : one<{ at_ms: number }>(this.sql, "SELECT at_ms FROM entries WHERE seq = ?", seq).at_ms;
  }

  /** The last entry at or before `at` (0: none), by bisection over 1..`last`: entry times never go backwards. */
  #lastSeqAtOrBefore(at: number, last: number): number {
    let low = 0;
    let high = last;
    while (low < high) {
      const middle = Math.ceil((low + high) / 2);
      if (this.#lastAt(middle) <= at) low = middle;
      else high = middle - 1;
    }
    return low;
  }

  /**
   * The entry's body (without its hash), or `undefined` when this account has no such entry.
   * An id that carries its seq is found by primary key; any other by `entries_by_legacy_id`,
   * whose predicate the query repeats so SQLite uses that partial index. Never a scan.
   */
  find(entryId: string): Entry | undefined {
    type Body = { body: string };
    const seq = seqOfEntryId(entryId);
    const bySeq =
      seq === undefined ? undefined : maybeOne<Body>(this.sql, "SELECT body FROM entries WHERE seq = ? AND entry_id = ?", seq, entryId);
    const row = bySeq ?? maybeOne<Body>(this.sql, `SELECT body FROM entries WHERE entry_id = ? AND ${LEGACY_ENTRY_ID}`, entryId);
    return row === undefined ? undefined : (JSON.parse(row.body) as Entry);
  }

  /** The body of an entry known to exist. */
  get(entryId: string): Entry {
    const entry = this.find(entryId);
    if (entry === undefined) throw new ServiceError("INTERNAL", `expected entry "${entryId}", found none`);
    return entry;
  }
}
