import type { CommitResult, Draw, EntryPrice, Hold, HoldStatus, ReserveResult, Usage, VoidResult } from "../../rpc/credits";
import { notFound, ServiceError } from "../platform/errors";
import type { PendingRecord, StoredRecord } from "../platform/idempotency";
import { all, maybeOne, run, write } from "../platform/sql";
import type { WriteBackCache } from "../platform/write-back";
import { mergeDraws, splitDraws } from "./burn-down";
import { HOLD_ID_CEILING, holdIdFloor, LEGACY_HOLD_ID, newHoldId } from "./hold-ids";
import { dayOf, monthOf } from "./invariants";
import { type Journal, noChange } from "./journal";
import type { LedgerAccount } from "./ledger-account";
import type { LedgerKeys } from "./ledger-keys";
import type { HoldRow } from "./ledger-rows";
import type { Spending } from "./spending";

/** A hold as `place` takes it (from `reserve` or the gateway's `admitRequest`). */
export interface HoldRequest {
  amount: number;
  ttlMs: number;
  keyId?: string;
  reason?: string;
  meta?: Record<string, string>;
}

/** What a hold's request used, when its commit was priced by the price book (`LedgerPricing.commit`). */
export interface PricedCapture {
  usage: Usage;
  price: EntryPrice;
}

/** A commit as `Holds.commit` takes it. */
export interface Capture {
  holdId: string;
  amount: number;
  /** Capture at most the hold; the rest of `amount` is booked as an `overrun` entry, not charged. */
  capAtHold?: boolean;
  reason?: string;
  meta?: Record<string, string>;
  priced?: PricedCapture;
}

/** Open holds from before migration 10: the rows of the partial index `holds_open_legacy`, whose condition this is. */
const OPEN_LEGACY = `status = 'open' AND ${LEGACY_HOLD_ID}`;
/** Open holds whose id carries their expiry (found by a range of ids, with this as the filter). */
const OPEN_BY_EXPIRY = `status = 'open' AND NOT (${LEGACY_HOLD_ID})`;

/**
 * The open holds due by a time (binding 1): the legacy ones by their index, the others by the
 * range of ids from bindings 2 to 3 (`holdIdFloor` of the first and of one past the last expiry).
 */
export const DUE_HOLDS = `SELECT * FROM holds WHERE ${OPEN_LEGACY} AND expires_at_ms <= ?
  UNION ALL SELECT * FROM holds WHERE hold_id >= ? AND hold_id < ? AND ${OPEN_BY_EXPIRY}
  ORDER BY expires_at_ms, hold_id`;

/**
 * How far before the last entry's time a new instance starts looking for open holds. Every
 * transaction that writes an entry has first booked the holds due at its call's time, and an
 * entry's time is that time or, when calls of a batch arrived out of order, a moment later.
 */
const RESTART_LOOKBACK_MS = 60_000;

/**
 * The time through which every hold (of the id format of migration 10) is settled: a lower bound
 * on the expiry of every open one, so looking for due holds reads only the ids after it. Kept in
 * memory and rolled back with a failed transaction, like the write-back caches; a new instance
 * starts from the last entry's time, less `RESTART_LOOKBACK_MS`.
 */
export class SettledThrough implements WriteBackCache {
  #ms: number | undefined;

  constructor(private readonly lastEntryAtMs: () => number) {}

  get(): number {
    this.#ms ??= this.lastEntryAtMs() - RESTART_LOOKBACK_MS;
    return this.#ms;
  }

  /** Every hold expiring by `nowMs` has just been settled. */
  advance(nowMs: number): void {
    this.#ms = Math.max(this.get(), nowMs);
  }

  /** A hold expiring at `expiresAtMs` was placed (by a call that waited while a later one looked): look from before it. */
  cover(expiresAtMs: number): void {
    if (expiresAtMs <= this.get()) this.#ms = expiresAtMs - 1;
  }

  /** Storage was replaced (a restore): start again from its entries. */
  forget(): void {
    this.#ms = undefined;
  }

  begin(): void {}
  end(): void {}
  mark(): unknown {
    return this.#ms;
  }
  restore(mark: unknown): void {
    this.#ms = mark as number | undefined;
  }
  writeBack(): void {}
}

/**
 * Reservations: the `holds` table (an open hold keeps its allocations as JSON). A hold takes its
 * credit from the grants (and, within the overdraft limit, from debt) when placed; commit, void
 * and expiry settle it exactly once. Every method runs inside the caller's transaction.
 *
 * A hold's id carries its expiry and the table is clustered on the id, so the holds due by a
 * time are a range of ids, read from `settledThrough` on: open holds need no index (which cost a
 * row per hold). Holds made before migration 10 keep a partial index (`holds_open_legacy`).
 */
export class Holds {
  /** The earliest expiry of the holds placed since `takePlacedExpiry` last asked, for the alarm. */
  #placedExpiry: number | undefined;

  /**
   * @param settledThrough rolled back with a failed transaction: the object registers it with its
   *   write-back caches.
   */
  constructor(
    private readonly sql: SqlStorage,
    private readonly account: LedgerAccount,
    private readonly journal: Journal,
    private readonly keys: LedgerKeys,
    private readonly spending: Spending,
    private readonly settledThrough: SettledThrough,
  ) {}

  /**
   * Books every grant expiry and hold release that is due, each exactly once (the flags it
   * sets are read in the same transaction). Runs at the start of every write and by alarm,
   * so no call ever spends expired credit or sees an overdue hold as open.
   */
  settleDue(nowMs: number): void {
    this.spending.expireGrants(nowMs);
    const from = this.settledThrough.get();
    if (from < nowMs) {
      const holds = all<HoldRow>(this.sql, DUE_HOLDS, nowMs, holdIdFloor(from + 1), holdIdFloor(nowMs + 1));
      for (const hold of holds) this.release(hold, "release", "hold expired", null, nowMs);
      this.settledThrough.advance(nowMs);
    }
  }

  /** A query for the holds still open: the legacy ones, and those expiring after `settledThrough`. */
  openHoldsQuery(): string {
    const from = holdIdFloor(this.settledThrough.get() + 1);
    return `SELECT * FROM holds WHERE ${OPEN_LEGACY}
      UNION ALL SELECT * FROM holds WHERE hold_id >= '${from}' AND hold_id < '${HOLD_ID_CEILING}' AND ${OPEN_BY_EXPIRY}`;
  }

  /**
   * When the first open hold expires, or null when none is open. Reads the holds expiring after
   * `settledThrough` up to the first open one, so the alarm asks once per run; the write path
   * learns what it placed from `takePlacedExpiry`.
   */
  earliestOpenExpiry(): number | null {
    const legacy = maybeOne<{ next: number | null }>(this.sql, `SELECT MIN(expires_at_ms) AS next FROM holds WHERE ${OPEN_LEGACY}`)?.next;
    const first = maybeOne<{ next: number }>(
      this.sql,
      `SELECT expires_at_ms AS next FROM holds WHERE hold_id >= ? AND hold_id < ? AND ${OPEN_BY_EXPIRY} ORDER BY hold_id LIMIT 1`,
      holdIdFloor(this.settledThrough.get() + 1),
      HOLD_ID_CEILING,
    )?.next;
    const found = [legacy, first].filter((ms): ms is number => typeof ms === "number");
    return found.length === 0 ? null : Math.min(...found);
  }

  /** The earliest expiry of the holds placed since the last ask (undefined: none). */
  takePlacedExpiry(): number | undefined {
    const placed = this.#placedExpiry;
    this.#placedExpiry = undefined;
    return placed;
  }

  /** Storage was replaced by a restore. */
  afterImport(): void {
    this.settledThrough.forget();
    this.#placedExpiry = undefined;
  }

  /** A hold of `amount`: key admission, then funds, then the allocations, the hold and its entry. */
  place(request: HoldRequest, idempotencyKey: string | null, nowMs: number): ReserveResult {
    const admission = this.spending.admitKey(request.keyId, request.amount, nowMs);
    if (!admission.ok) return admission.denied;
    const plan = this.spending.plan(request.amount, nowMs);
    if (plan === undefined) return this.account.denied("INSUFFICIENT_CREDITS");
    const expiresAt = nowMs + request.ttlMs;
    const holdId = newHoldId(expiresAt);
    this.settledThrough.cover(expiresAt);
    this.#placedExpiry = Math.min(this.#placedExpiry ?? expiresAt, expiresAt);
    this.spending.take(plan.draws, "held");
    const allocations = plan.shortfall > 0 ? [...plan.draws, { grantId: null, amount: plan.shortfall }] : plan.draws;
    this.account.addDebt(plan.shortfall, 0);
    write(
      this.sql,
      `INSERT INTO holds (hold_id, amount, status, expires_at_ms, key_id, spend_day, spend_month, created_at_ms, allocations)
       VALUES (?, ?, 'open', ?, ?, ?, ?, ?, ?)`,
      holdId,
      request.amount,
      expiresAt,
      request.keyId ?? null,
      dayOf(nowMs),
      monthOf(nowMs),
      nowMs,
      JSON.stringify(allocations.map((draw) => ({ grantId: draw.grantId, amount: draw.amount }))),
    );
    this.keys.record(admission.admitted, request.amount, dayOf(nowMs), monthOf(nowMs));
    const entry = this.journal.append(nowMs, {
      kind: "reserve",
      amount: request.amount,
      change: { ...noChange(), held: request.amount },
      reason: request.reason ?? "reserve",
      idempotencyKey,
      draws: allocations,
      keyId: request.keyId,
      holdId,
      meta: request.meta,
    });
    return { ok: true, holdId, expiresAt, entry, balance: this.account.balance() };
  }

  /**
   * Captures `amount` of an open hold and releases the rest. Capturing more than was held
   * draws the excess from grants and, within the overdraft limit, beyond.
   */
  commit(request: Capture, idempotencyKey: string, nowMs: number, record?: PendingRecord): CommitResult {
    const hold = this.require(request.holdId);
    if (hold.status !== "open") return { ok: false, code: "HOLD_NOT_OPEN", status: hold.status, balance: this.account.balance() };
    const overrun = request.capAtHold === true ? Math.max(0, request.amount - hold.amount) : 0;
    const capture = { ...request, amount: request.amount - overrun };
    const allocations = this.allocationsOf(hold);
    const { taken, left } = splitDraws(allocations, Math.min(capture.amount, hold.amount));
    let extra: Draw[] = [];
    if (capture.amount > hold.amount) {
      const plan = this.spending.plan(capture.amount - hold.amount, nowMs);
      if (plan === undefined) return { ok: false, code: "INSUFFICIENT_CREDITS", balance: this.account.balance() };
      this.spending.take(plan.draws, "consumed");
      this.account.addDebt(0, plan.shortfall);
      extra = plan.shortfall > 0 ? [...plan.draws, { grantId: null, amount: plan.shortfall }] : plan.draws;
    }
    const expired = this.spending.captureHeld(taken, left, nowMs);
    const draws = mergeDraws([...taken, ...extra]);
    const entry = this.journal.append(nowMs, {
      kind: "commit",
      amount: capture.amount,
      change: { granted: 0, held: -hold.amount, consumed: capture.amount, expired },
      reason: capture.reason ?? "commit",
      idempotencyKey,
      draws,
      keyId: hold.key_id ?? undefined,
      holdId: hold.hold_id,
      ...(capture.priced === undefined ? {} : { usage: capture.priced.usage, price: capture.priced.price }),
      meta: capture.meta,
    });
    this.spending.repayDebt(nowMs);
    let result: CommitResult = { ok: true, entry, balance: this.account.balance() };
    if (overrun > 0) {
      // Recorded beside the commit, never charged: the request's cost above what was held for it.
      const overrunEntry = this.journal.append(nowMs, {
        kind: "overrun",
        amount: overrun,
        change: noChange(),
        reason: "cost above the hold, not charged",
        idempotencyKey: null,
        draws: [],
        keyId: hold.key_id ?? undefined,
        holdId: hold.hold_id,
        meta: capture.meta,
      });
      result = { ...result, overrun: overrunEntry };
    }
    // Last, with the answer: the hold's row keeps the call's idempotency record.
    this.close(hold, "committed", nowMs, capture.amount, record?.keep(result));
    return result;
  }

  /** Releases an open hold in full. A hold that is no longer open is answered, not thrown. */
  void(holdId: string, reason: string, idempotencyKey: string | null, nowMs: number, record?: PendingRecord): VoidResult {
    const hold = this.require(holdId);
    if (hold.status !== "open") return { ok: false, code: "HOLD_NOT_OPEN", status: hold.status, balance: this.account.balance() };
    return this.release(hold, "void", reason, idempotencyKey, nowMs, record);
  }

  /**
   * Gives an open hold's allocations back and books the `void` or `release` entry; the hold's
   * row keeps `record`, the idempotency record of the call that voids it, if any.
   */
  release(
    hold: HoldRow,
    kind: "void" | "release",
    reason: string,
    idempotencyKey: string | null,
    nowMs: number,
    record?: PendingRecord,
  ): Extract<VoidResult, { ok: true }> {
    const allocations = this.allocationsOf(hold);
    const expired = this.spending.captureHeld([], allocations, nowMs);
    const entry = this.journal.append(nowMs, {
      kind,
      amount: hold.amount,
      change: { granted: 0, held: -hold.amount, consumed: 0, expired },
      reason,
      idempotencyKey,
      draws: allocations,
      keyId: hold.key_id ?? undefined,
      holdId: hold.hold_id,
    });
    this.spending.repayDebt(nowMs);
    const result = { ok: true as const, entry, balance: this.account.balance() };
    this.close(hold, kind === "void" ? "voided" : "expired", nowMs, 0, record?.keep(result));
    return result;
  }

  /** The idempotency record a settled hold's row keeps for `key` (see `close`), if any. */
  recordOf(key: string): StoredRecord | undefined {
    return maybeOne<StoredRecord>(
      this.sql,
      "SELECT settle_request AS fingerprint, settle_result AS result FROM holds WHERE settle_key = ?",
      key,
    );
  }

  require(holdId: string): HoldRow {
    const row = maybeOne<HoldRow>(this.sql, "SELECT * FROM holds WHERE hold_id = ?", holdId);
    if (row === undefined) throw notFound(`no hold "${holdId}" in this account`);
    return row;
  }

  /** The hold as callers see it. */
  view(holdId: string): Hold {
    const row = this.require(holdId);
    return {
      holdId: row.hold_id,
      amount: row.amount,
      status: row.status,
      expiresAt: row.expires_at_ms,
      ...(row.key_id === null ? {} : { keyId: row.key_id }),
      createdAt: row.created_at_ms,
    };
  }

  /**
   * Marks a hold settled (exactly once: callers check `status = 'open'` in the same transaction)
   * and fixes its key's spend. The one write of the row also keeps `kept`, the idempotency record
   * of the call that settles it, for one more row (its entry in the unique index over
   * `settle_key`) where a record in the idempotency table costs two (its row, and its deletion
   * when pruned). It stays as long as the hold's row: a settle's key replays for good.
   */
  private close(
    hold: HoldRow,
    status: Exclude<HoldStatus, "open">,
    nowMs: number,
    captured: number,
    kept: ({ key: string } & StoredRecord) | undefined,
  ): void {
    // A settled hold's allocations have gone back or been captured: only an open hold keeps them.
    const settle = `UPDATE holds SET status = ?, settled_at_ms = ?, allocations = NULL, settle_key = ?, settle_request = ?, settle_result = ?
      WHERE hold_id = ? AND status = 'open'`;
    const changed = run(this.sql, settle, status, nowMs, kept?.key ?? null, kept?.fingerprint ?? null, kept?.result ?? null, hold.hold_id);
    if (changed !== 1) throw new ServiceError("INTERNAL", `hold ${hold.hold_id} was settled twice`);
    if (hold.key_id !== null) {
      const key = this.keys.row(hold.key_id);
      if (key) this.keys.addSpend(key, captured - hold.amount, hold.spend_day, hold.spend_month);
    }
  }

  /** An open hold's allocations, in the order they were drawn. */
  private allocationsOf(hold: HoldRow): Draw[] {
    return hold.allocations === null ? [] : (JSON.parse(hold.allocations) as Draw[]);
  }
}
