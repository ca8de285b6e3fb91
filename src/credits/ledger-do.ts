import type {
  Account,
  AdmitRequestResult,
  ReleaseAdmissionResult,
  AuditReport,
  Balance,
  ChainReport,
  ChargeResult,
  CommitResult,
  CreatedKey,
  Denied,
  Draw,
  EntriesPage,
  Entry,
  EntryPrice,
  Hold,
  HoldStatus,
  KeyInfo,
  KeySpend,
  Price,
  PriceBook,
  Quote,
  CreditRefundResult,
  ReserveResult,
  RolledKey,
  Usage,
  UsageReport,
  VerifyKeyResult,
  VoidResult,
  DebitResult,
} from "../../rpc/credits";
import { loadDefaultPrices } from "./price-config";
import { DEFAULT_DATA_RETENTION, KEY_SPEND_DAYS_KEPT_MS, KEY_SPEND_MONTHS_KEPT_MS, loadDataRetention } from "../platform/retention";
import type { Env } from "../platform/env";
import { conflict, invalidArgument, notFound, ServiceError } from "../platform/errors";
import { drawFromGrants, mergeDraws, splitDraws } from "./burn-down";
import { entryHash, GENESIS_HASH, verifyChain } from "./chain";
import { availableOf, checkInvariants, dayOf, monthOf, type Totals } from "./invariants";
import { hashSecret, type ParsedKey, parseKey, scopeAllows } from "./keys";
import { ceilCost, DEFAULT_MODEL, exactCost, findPrice, withCarry } from "./pricing";
import { evaluateRules } from "../rate-limits/algorithms/evaluate-rules";
import { parseInput } from "../platform/schemas";
import {
  accountRefSchema,
  admitRequestSchema,
  releaseAdmissionSchema,
  auditReportsSchema,
  balanceSchema,
  chargeSchema,
  commitSchema,
  createAccountSchema,
  createKeySchema,
  debitSchema,
  entriesSchema,
  grantSchema,
  holdRefSchema,
  keyRefSchema,
  LEDGER_BOUNDS,
  quoteSchema,
  refundSchema,
  reserveSchema,
  rollKeySchema,
  setPricesSchema,
  usageQuerySchema,
  verifyKeySchema,
  voidSchema,
} from "./schemas";
import type { TaskHandlers } from "../platform/task-scheduler";
import { all, maybeOne, one, run } from "../platform/sql";
import {
  type AccountRow,
  type EntryRow,
  type GrantRow,
  type HoldRow,
  hashesEqual,
  isExpired,
  newId,
  toAccount,
  toAmount,
  toBalance,
  toBucket,
  toEntry,
  toKeyInfo,
  UNKNOWN_KEY_HASH,
} from "./ledger-rows";
import { type KeyAdmission, LedgerKeys } from "./ledger-keys";
import { CREDIT_LEDGER_MIGRATIONS } from "./ledger-tables";
import { TollgateObject } from "../platform/tollgate-object";

/** Idempotency keys are honoured this long by default (a monthly billing cycle plus slack; `RETENTION.ledgerIdempotency`). */
export const IDEMPOTENCY_TTL_MS = DEFAULT_DATA_RETENTION.ledgerIdempotency;
/** How often the self-audit re-derives the balance and checks every invariant. */
export const AUDIT_INTERVAL_MS = 6 * 3_600_000;
/** Entries one alarm-driven audit reads at most; a longer backlog continues in the next run. */
export const AUDIT_BATCH_ENTRIES = 20_000;
const AUDIT_BACKLOG_DELAY_MS = 60_000;
/** Audit reports kept per account. */
const AUDIT_REPORTS_KEPT = 100;
/** Pruning waits this long past the first expiry, so one alarm prunes many keys. */
const PRUNE_SLACK_MS = 3_600_000;
/** Most expired rows of each kind one prune run deletes (retention in small batches). */
export const PRUNE_BATCH = 1_000;
const CHAIN_PAGE = 500;


/** The state after the last clean audit: where the next incremental audit starts. */
interface AuditCheckpoint {
  seq: number;
  hash: string;
  totals: Totals;
  balanceAfter: number;
}

/** What an entry says before the ledger numbers, dates and hashes it. */
type EntryDraft = Omit<Entry, "entryId" | "seq" | "balanceAfter" | "at" | "prevHash" | "hash"> & { entryId?: string };

const noChange = (): Totals => ({ granted: 0, held: 0, consumed: 0, expired: 0 });

/**
 * One account's credit ledger and API keys. Single-threaded, so every decision is exact:
 * each mutating call reads, decides and writes inside one synchronous `transactionSync`,
 * with no `await` before the write (which would let another call interleave).
 *
 * Every change is an immutable, hash-chained entry; the running totals, grants, holds and
 * key counters are derived state that the self-audit re-checks against the entries.
 * See docs/credits.md.
 */
export class CreditLedgerDO extends TollgateObject {
  readonly #keys: LedgerKeys;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env, { component: "credit-ledger", migrations: CREDIT_LEDGER_MIGRATIONS });
    this.#keys = new LedgerKeys(this.sql);
  }

  /** The clock. Test subclasses move it; production reads the real one. */
  protected now(): number {
    return Date.now();
  }

  /** The alarm reads the same clock as the calls, so lazy and alarm-driven settling agree. */
  override async alarm(): Promise<void> {
    await this.runAlarm(this.now());
  }

  // ---------------------------------------------------------------- accounts

  /** Creates the account; calling again with the same name and limit returns it unchanged. */
  async createAccount(input: unknown): Promise<Account> {
    const parsed = parseInput(createAccountSchema, input, "createAccount input");
    if (parsed.accountId === undefined) throw invalidArgument("accountId is required by the object (the service generates one)");
    this.assertAccountName(parsed.accountId);
    const overdraftLimit = parsed.overdraftLimit ?? 0;
    const existing = this.accountRow();
    if (existing) {
      if (existing.name !== parsed.name || existing.overdraft_limit !== overdraftLimit) {
        throw conflict(`account "${parsed.accountId}" already exists with a different name or overdraft limit`);
      }
      return toAccount(existing);
    }
    const nowMs = this.now();
    run(
      this.sql,
      "INSERT INTO account (id, account_id, name, overdraft_limit, created_at_ms, head_hash) VALUES (1, ?, ?, ?, ?, ?)",
      parsed.accountId,
      parsed.name,
      overdraftLimit,
      nowMs,
      GENESIS_HASH,
    );
    await this.scheduler.schedule("audit", nowMs + AUDIT_INTERVAL_MS, null, "audit", "earliest");
    return toAccount(this.accountRow()!);
  }

  async account(input: unknown): Promise<Account> {
    const parsed = parseInput(accountRefSchema, input, "account input");
    return toAccount(this.requireAccount(parsed.accountId));
  }

  /** The balance now, or as it stood at `at` (after every entry at or before it). */
  async balance(input: unknown): Promise<Balance> {
    const parsed = parseInput(balanceSchema, input, "balance input");
    const account = this.requireAccount(parsed.accountId);
    if (parsed.at === undefined) return toBalance(account);
    const row = maybeOne<{ granted_after: number; held_after: number; consumed_after: number; expired_after: number }>(
      this.sql,
      "SELECT granted_after, held_after, consumed_after, expired_after FROM entries WHERE at_ms <= ? ORDER BY seq DESC LIMIT 1",
      parsed.at,
    );
    const totals = row
      ? { granted: row.granted_after, held: row.held_after, consumed: row.consumed_after, expired: row.expired_after }
      : noChange();
    return { available: availableOf(totals), ...totals, overdraftLimit: account.overdraft_limit };
  }

  // ---------------------------------------------------------------- grants and debits

  async grant(input: unknown): Promise<Entry> {
    const parsed = parseInput(grantSchema, input, "grant input");
    const nowMs = this.now();
    const { idempotencyKey, ...params } = parsed;
    const entry = this.idempotent(idempotencyKey, "grant", params, nowMs, () => {
      const account = this.requireAccount(parsed.accountId);
      if (parsed.expiresAt !== undefined && parsed.expiresAt <= nowMs) throw invalidArgument("expiresAt must be in the future");
      if (account.granted + parsed.amount > LEDGER_BOUNDS.maxGranted) {
        throw new ServiceError("RESOURCE_EXHAUSTED", `an account may be granted at most ${LEDGER_BOUNDS.maxGranted} in total`);
      }
      this.settleDue(nowMs);
      const grantId = newId("g");
      const seq = this.accountRow()!.last_seq + 1;
      run(
        this.sql,
        "INSERT INTO grants (grant_id, seq, amount, remaining, priority, expires_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
        grantId,
        seq,
        parsed.amount,
        parsed.amount,
        parsed.priority ?? 0,
        parsed.expiresAt ?? null,
      );
      const written = this.append(nowMs, {
        kind: "grant",
        amount: parsed.amount,
        change: { ...noChange(), granted: parsed.amount },
        reason: parsed.reason,
        idempotencyKey,
        draws: [],
        grantId,
        expiresAt: parsed.expiresAt,
        priority: parsed.priority ?? 0,
        meta: parsed.meta,
      });
      this.repayDebt(nowMs);
      return written;
    });
    await this.afterWrite();
    return entry;
  }

  /** Takes `amount` now, from grants in burn-down order, then from the overdraft. Exact under concurrency. */
  async debit(input: unknown): Promise<DebitResult> {
    const parsed = parseInput(debitSchema, input, "debit input");
    const nowMs = this.now();
    const { idempotencyKey, ...params } = parsed;
    const result = this.idempotent(idempotencyKey, "debit", params, nowMs, () => {
      this.requireAccount(parsed.accountId);
      this.settleDue(nowMs);
      return this.consume(nowMs, {
        amount: parsed.amount,
        reason: parsed.reason,
        idempotencyKey,
        keyId: parsed.keyId,
        meta: parsed.meta,
        operation: "debit",
        model: "",
      });
    });
    await this.afterWrite();
    return result;
  }

  // ---------------------------------------------------------------- holds

  /** Reserves `amount` until committed, voided, or released by alarm after `ttlMs`. */
  async reserve(input: unknown): Promise<ReserveResult> {
    const parsed = parseInput(reserveSchema, input, "reserve input");
    const nowMs = this.now();
    const { idempotencyKey, ...params } = parsed;
    const result = this.idempotent(idempotencyKey, "reserve", params, nowMs, (): ReserveResult => {
      this.requireAccount(parsed.accountId);
      this.settleDue(nowMs);
      return this.placeHold(parsed, idempotencyKey, nowMs);
    });
    await this.afterWrite();
    return result;
  }

  /**
   * Captures `amount` of an open hold and releases the rest. Capturing more than was held
   * draws the excess from grants and, within the overdraft limit, beyond.
   */
  async commit(input: unknown): Promise<CommitResult> {
    const parsed = parseInput(commitSchema, input, "commit input");
    const nowMs = this.now();
    const { idempotencyKey, ...params } = parsed;
    const result = this.idempotent(idempotencyKey, "commit", params, nowMs, (): CommitResult => {
      this.requireAccount(parsed.accountId);
      this.settleDue(nowMs);
      const hold = this.requireHold(parsed.holdId);
      if (hold.status !== "open") return { ok: false, code: "HOLD_NOT_OPEN", status: hold.status, balance: this.currentBalance() };
      const allocations = this.allocationsOf(hold.hold_id);
      const { taken, left } = splitDraws(allocations, Math.min(parsed.amount, hold.amount));
      let extra: Draw[] = [];
      if (parsed.amount > hold.amount) {
        const plan = this.planSpend(parsed.amount - hold.amount, nowMs);
        if (plan === undefined) return { ok: false, code: "INSUFFICIENT_CREDITS", balance: this.currentBalance() };
        this.takeFromGrants(plan.draws);
        run(this.sql, "UPDATE account SET consumed_debt = consumed_debt + ?", plan.shortfall);
        extra = plan.shortfall > 0 ? [...plan.draws, { grantId: null, amount: plan.shortfall }] : plan.draws;
      }
      // The captured allocations move from held to consumed, grant by grant.
      for (const draw of taken) {
        if (draw.grantId === null) run(this.sql, "UPDATE account SET held_debt = held_debt - ?, consumed_debt = consumed_debt + ?", draw.amount, draw.amount);
        else run(this.sql, "UPDATE grants SET consumed = consumed + ? WHERE grant_id = ?", draw.amount, draw.grantId);
      }
      for (const draw of extra) {
        if (draw.grantId !== null) run(this.sql, "UPDATE grants SET consumed = consumed + ? WHERE grant_id = ?", draw.amount, draw.grantId);
      }
      const expired = this.returnToGrants(left, nowMs, "held");
      this.closeHold(hold, "committed", nowMs, parsed.amount);
      const draws = mergeDraws([...taken, ...extra]);
      const entry = this.append(nowMs, {
        kind: "commit",
        amount: parsed.amount,
        change: { granted: 0, held: -hold.amount, consumed: parsed.amount, expired },
        reason: parsed.reason ?? "commit",
        idempotencyKey,
        draws,
        keyId: hold.key_id ?? undefined,
        holdId: hold.hold_id,
        meta: parsed.meta,
      });
      this.recordConsumption(entry.entryId, draws);
      this.rollUp(nowMs, hold.key_id ?? "", "hold", "", parsed.amount, 1);
      this.repayDebt(nowMs);
      return { ok: true, entry, balance: this.currentBalance() };
    });
    await this.afterWrite();
    return result;
  }

  /** Releases an open hold in full. Voiding a hold that is no longer open is answered, not thrown. */
  async void(input: unknown): Promise<VoidResult> {
    const parsed = parseInput(voidSchema, input, "void input");
    const nowMs = this.now();
    const { idempotencyKey, ...params } = parsed;
    const body = (): VoidResult => {
      this.requireAccount(parsed.accountId);
      this.settleDue(nowMs);
      const hold = this.requireHold(parsed.holdId);
      if (hold.status !== "open") return { ok: false, code: "HOLD_NOT_OPEN", status: hold.status, balance: this.currentBalance() };
      const entry = this.releaseHold(hold, "void", parsed.reason ?? "void", idempotencyKey ?? null, nowMs);
      return { ok: true, entry, balance: this.currentBalance() };
    };
    const result = idempotencyKey === undefined
      ? this.transaction(body)
      : this.idempotent(idempotencyKey, "void", params, nowMs, body);
    await this.afterWrite();
    return result;
  }

  async hold(input: unknown): Promise<Hold> {
    const parsed = parseInput(holdRefSchema, input, "hold input");
    this.requireAccount(parsed.accountId);
    const row = this.requireHold(parsed.holdId);
    return {
      holdId: row.hold_id,
      amount: row.amount,
      status: row.status,
      expiresAt: row.expires_at_ms,
      ...(row.key_id === null ? {} : { keyId: row.key_id }),
      createdAt: row.created_at_ms,
    };
  }

  // ---------------------------------------------------------------- refunds

  /** Gives back all or part of a debit or commit, to the grants it came from; never more than was taken. */
  async refund(input: unknown): Promise<CreditRefundResult> {
    const parsed = parseInput(refundSchema, input, "refund input");
    const nowMs = this.now();
    const { idempotencyKey, ...params } = parsed;
    const result = this.idempotent(idempotencyKey, "refund", params, nowMs, (): CreditRefundResult => {
      this.requireAccount(parsed.accountId);
      this.settleDue(nowMs);
      return this.refundEntry(parsed, idempotencyKey, nowMs);
    });
    await this.afterWrite();
    return result;
  }

  // ---------------------------------------------------------------- entries

  /** Entries in chain order, `limit` at a time, optionally within `[since, until)`. */
  async entries(input: unknown): Promise<EntriesPage> {
    const parsed = parseInput(entriesSchema, input, "entries input");
    this.requireAccount(parsed.accountId);
    const limit = parsed.limit ?? 100;
    const rows = all<EntryRow>(
      this.sql,
      `SELECT seq, body, prev_hash, hash FROM entries
       WHERE seq > ? AND at_ms >= ? AND at_ms < ? ORDER BY seq LIMIT ?`,
      Number(parsed.cursor ?? 0),
      parsed.since ?? 0,
      parsed.until ?? Number.MAX_SAFE_INTEGER,
      limit + 1,
    );
    const items = rows.slice(0, limit).map(toEntry);
    return rows.length > limit ? { items, cursor: String(items.at(-1)!.seq) } : { items };
  }

  // ---------------------------------------------------------------- API keys

  /** Creates a key; the returned `key` is the only time its secret exists outside the caller. */
  async createKey(input: unknown): Promise<CreatedKey> {
    const parsed = parseInput(createKeySchema, input, "createKey input");
    const nowMs = this.now();
    this.requireAccount(parsed.accountId);
    if (parsed.expiresAt !== undefined && parsed.expiresAt <= nowMs) throw invalidArgument("expiresAt must be in the future");
    // A rule whose algorithm the limiter does not offer is refused now, not at the first spend.
    if (parsed.rules !== undefined) evaluateRules(parsed.rules, new Map(), nowMs, 1, false);
    const created = this.#keys.insert(parsed.accountId, {
      name: parsed.name,
      scopes: parsed.scopes,
      rules: parsed.rules ?? [],
      spendCap: parsed.spendCap,
      expiresAt: parsed.expiresAt,
    }, nowMs);
    return created;
  }

  /** Checks a key: secret (in constant time), revocation, expiry, and a scope. Never throws for a bad key. */
  async verifyKey(input: unknown): Promise<VerifyKeyResult> {
    const parsed = parseInput(verifyKeySchema, input, "verifyKey input");
    const key = parseKey(parsed.key);
    if (key === undefined) return { valid: false, code: "MALFORMED" };
    return this.checkKey(key, parsed.scope, this.now());
  }

  /** `verifyKey` after parsing: the same work for an unknown id and a wrong secret, so neither can be probed. */
  private checkKey(key: ParsedKey, scope: string | undefined, nowMs: number): VerifyKeyResult {
    this.assertAccountName(key.accountId);
    if (this.accountRow() === undefined) return { valid: false, code: "NOT_FOUND" };
    const row = this.#keys.row(key.keyId);
    // An unknown id and a wrong secret answer alike and take the same work, so neither can be probed.
    const given = hashSecret(key.secret);
    if (!hashesEqual(given, row?.secret_hash ?? UNKNOWN_KEY_HASH) || row === undefined) return { valid: false, code: "NOT_FOUND" };
    if (row.revoked_at_ms !== null && row.revoked_at_ms <= nowMs) return { valid: false, code: "REVOKED" };
    if (row.expires_at_ms !== null && row.expires_at_ms <= nowMs) return { valid: false, code: "EXPIRED" };
    const scopes = JSON.parse(row.scopes) as string[];
    if (scope !== undefined && !scopeAllows(scopes, scope)) return { valid: false, code: "INSUFFICIENT_SCOPE" };
    const info = toKeyInfo(row);
    return {
      valid: true,
      accountId: key.accountId,
      keyId: row.key_id,
      scopes,
      rules: info.rules,
      ...(info.expiresAt === undefined ? {} : { expiresAt: info.expiresAt }),
      ...(info.spendCap === undefined ? {} : { spendCap: info.spendCap }),
    };
  }

  /** Revokes a key; the very next verification (and spend) with it fails. Idempotent. */
  async revokeKey(input: unknown): Promise<KeyInfo> {
    const parsed = parseInput(keyRefSchema, input, "revokeKey input");
    this.requireAccount(parsed.accountId);
    this.#keys.require(parsed.keyId);
    run(this.sql, "UPDATE api_keys SET revoked_at_ms = ? WHERE key_id = ? AND revoked_at_ms IS NULL", this.now(), parsed.keyId);
    return toKeyInfo(this.#keys.require(parsed.keyId));
  }

  /**
   * Replaces a key with a new one of the same name, scopes, rules and caps (which keep
   * counting: the two share spend and rate state). The old key works for `graceMs` more.
   */
  async rollKey(input: unknown): Promise<RolledKey> {
    const parsed = parseInput(rollKeySchema, input, "rollKey input");
    const nowMs = this.now();
    this.requireAccount(parsed.accountId);
    return this.transaction(() => {
      const old = this.#keys.require(parsed.keyId);
      if (old.revoked_at_ms !== null) throw conflict(`key "${parsed.keyId}" is revoked`);
      if (old.rolled_to !== null) throw conflict(`key "${parsed.keyId}" was already rolled to "${old.rolled_to}"`);
      const info = toKeyInfo(old);
      const created = this.#keys.insert(parsed.accountId, {
        name: info.name,
        scopes: info.scopes,
        rules: info.rules,
        spendCap: info.spendCap,
        expiresAt: info.expiresAt,
        familyId: old.family_id,
      }, nowMs);
      const graceEnd = nowMs + parsed.graceMs;
      if (parsed.graceMs === 0) {
        run(this.sql, "UPDATE api_keys SET revoked_at_ms = ?, rolled_to = ? WHERE key_id = ?", nowMs, created.keyId, old.key_id);
      } else {
        run(
          this.sql,
          "UPDATE api_keys SET expires_at_ms = MIN(COALESCE(expires_at_ms, ?), ?), rolled_to = ? WHERE key_id = ?",
          graceEnd,
          graceEnd,
          created.keyId,
          old.key_id,
        );
      }
      return { ...created, previous: toKeyInfo(this.#keys.require(old.key_id)) };
    });
  }

  async listKeys(input: unknown): Promise<{ keys: KeyInfo[] }> {
    const parsed = parseInput(accountRefSchema, input, "listKeys input");
    this.requireAccount(parsed.accountId);
    return { keys: this.#keys.list() };
  }

  /** What a key has spent in its caps' current day and month (read by `key_spend_share` alert rules). */
  async keySpend(input: unknown): Promise<KeySpend> {
    const parsed = parseInput(keyRefSchema, input, "keySpend input");
    this.requireAccount(parsed.accountId);
    return this.#keys.spendOf(this.#keys.require(parsed.keyId), this.now());
  }

  // ---------------------------------------------------------------- the gateway's calls

  /**
   * The gateway hot path's one call into the account: verifies the key and scope, counts one
   * request against the key's rate rules, checks its spend caps, and holds or debits `amount`,
   * reading, deciding and writing in one transaction, so a single round trip does what
   * `verifyKey` + `reserve` would do in two. Every refusal is a value.
   */
  async admitRequest(input: unknown): Promise<AdmitRequestResult> {
    const parsed = parseInput(admitRequestSchema, input, "admitRequest input");
    const key = parseKey(parsed.key);
    if (key === undefined) return { ok: false, code: "MALFORMED" };
    const nowMs = this.now();
    const verdict = this.checkKey(key, parsed.scope, nowMs);
    if (!verdict.valid) {
      // Only a key that exists (right secret) learns whose it is.
      return verdict.code === "NOT_FOUND" ? { ok: false, code: verdict.code } : { ok: false, code: verdict.code, accountId: key.accountId, keyId: key.keyId };
    }
    const { accountId, keyId, scopes } = verdict;
    const { idempotencyKey, key: _secret, ...params } = parsed;
    const admit = (): AdmitRequestResult => {
      this.requireAccount(accountId);
      this.settleDue(nowMs);
      const spend = { amount: parsed.amount, keyId, reason: parsed.reason ?? "gateway request", meta: parsed.meta };
      let outcome: ReserveResult | DebitResult | { ok: true };
      if (parsed.amount === 0) {
        const admission = this.admitKey(keyId, 0, nowMs);
        if (admission.ok) this.#keys.record(admission.admitted, 0, dayOf(nowMs), monthOf(nowMs));
        outcome = admission.ok ? { ok: true } : admission.denied;
      } else if (parsed.mode === "hold") {
        outcome = this.placeHold({ ...spend, ttlMs: parsed.ttlMs }, idempotencyKey, nowMs);
      } else {
        outcome = this.consume(nowMs, { ...spend, idempotencyKey, operation: "debit", model: "" });
      }
      const row = this.#keys.require(keyId);
      if (!outcome.ok) {
        const keyLimits = this.#keys.limits(row, nowMs, 1);
        return { ...outcome, accountId, keyId, ...(keyLimits === undefined ? {} : { keyLimits }) };
      }
      const keyLimits = this.#keys.limits(row, nowMs, 0);
      return {
        ok: true,
        accountId,
        keyId,
        scopes,
        ...("holdId" in outcome ? { holdId: outcome.holdId, expiresAt: outcome.expiresAt } : {}),
        ...("entry" in outcome && !("holdId" in outcome) ? { entryId: outcome.entry.entryId } : {}),
        balance: this.currentBalance(),
        ...(keyLimits === undefined ? {} : { keyLimits }),
      };
    };
    // Only a request that writes an entry needs a replay record; a bare verification does not.
    const result = parsed.amount === 0 ? this.transaction(admit) : this.idempotent(idempotencyKey, "admitRequest", { ...params, keyId }, nowMs, admit);
    if (parsed.amount > 0) await this.afterWrite();
    return result;
  }

  /**
   * Undoes an admitted request that another check (the per-IP limit) overruled: gives the
   * request back to the key's rate rules, voids its hold or refunds its debit, and takes the
   * amount off the key's spend counters, so the account is as if the request never came.
   */
  async releaseAdmission(input: unknown): Promise<ReleaseAdmissionResult> {
    const parsed = parseInput(releaseAdmissionSchema, input, "releaseAdmission input");
    const nowMs = this.now();
    const { idempotencyKey, ...params } = parsed;
    const result = this.idempotent(idempotencyKey, "releaseAdmission", params, nowMs, (): ReleaseAdmissionResult => {
      this.requireAccount(parsed.accountId);
      this.settleDue(nowMs);
      const key = this.#keys.require(parsed.keyId);
      this.#keys.refundRequest(key, nowMs);
      if (parsed.holdId !== undefined) {
        const hold = this.requireHold(parsed.holdId);
        if (hold.status === "open") this.releaseHold(hold, "void", "request overruled", null, nowMs);
      }
      if (parsed.entryId !== undefined) {
        const refunded = this.refundEntry({ entryId: parsed.entryId, reason: "request overruled" }, idempotencyKey, nowMs);
        if (refunded.ok) {
          const taken = JSON.parse(one<{ body: string }>(this.sql, "SELECT body FROM entries WHERE entry_id = ?", parsed.entryId).body) as Entry;
          this.#keys.addSpend(key.family_id, -refunded.entry.amount, dayOf(taken.at), monthOf(taken.at));
        }
      }
      return { balance: this.currentBalance() };
    });
    await this.afterWrite();
    return result;
  }

  // ---------------------------------------------------------------- pricing and usage

  /** Replaces the account's price book; an empty list returns the account to the default. */
  async setPrices(input: unknown): Promise<PriceBook> {
    const parsed = parseInput(setPricesSchema, input, "setPrices input");
    if (parsed.accountId === undefined) throw invalidArgument("accountId is required: the default price book comes from CREDIT_PRICES");
    this.requireAccount(parsed.accountId);
    this.transaction(() => {
      run(this.sql, "DELETE FROM prices");
      for (const price of parsed.prices) {
        run(this.sql, "INSERT INTO prices (operation, model, body) VALUES (?, ?, ?)", price.operation, price.model, JSON.stringify(price));
      }
    });
    return this.priceBook();
  }

  async prices(input: unknown): Promise<PriceBook> {
    const parsed = parseInput(accountRefSchema, input, "prices input");
    this.requireAccount(parsed.accountId);
    return this.priceBook();
  }

  /** What `charge` would take now, and the worst case to size a hold with. Changes nothing. */
  async quote(input: unknown): Promise<Quote> {
    const parsed = parseInput(quoteSchema, input, "quote input");
    this.requireAccount(parsed.accountId);
    const model = parsed.usage.model ?? DEFAULT_MODEL;
    const price = this.requirePrice(parsed.usage.operation, model);
    const exact = exactCost(price, parsed.usage);
    const { cost } = withCarry(exact, this.carryOf(parsed.keyId ?? "", parsed.usage.operation, model));
    const outputTokens = Math.max(parsed.usage.outputTokens ?? 0, parsed.usage.maxOutputTokens ?? 0);
    const worstCase = ceilCost(exactCost(price, parsed.usage, outputTokens));
    return { cost: toAmount(cost), worstCase: toAmount(worstCase), exactMillionths: exact.toString(), price };
  }

  /** Prices `usage` and debits the whole credits, carrying the fraction to the next call of the same key and model. */
  async charge(input: unknown): Promise<ChargeResult> {
    const parsed = parseInput(chargeSchema, input, "charge input");
    const nowMs = this.now();
    const { idempotencyKey, ...params } = parsed;
    const result = this.idempotent(idempotencyKey, "charge", params, nowMs, (): ChargeResult => {
      this.requireAccount(parsed.accountId);
      this.settleDue(nowMs);
      const { usage } = parsed;
      const model = usage.model ?? DEFAULT_MODEL;
      const price = this.requirePrice(usage.operation, model);
      const exact = exactCost(price, usage);
      const keyId = parsed.keyId ?? "";
      const carryBefore = this.carryOf(keyId, usage.operation, model);
      const { cost, carry } = withCarry(exact, carryBefore);
      const amount = toAmount(cost);
      const outcome = this.consume(nowMs, {
        amount,
        reason: parsed.reason ?? `charge ${usage.operation}`,
        idempotencyKey,
        keyId: parsed.keyId,
        meta: parsed.meta,
        operation: usage.operation,
        model,
        usage,
        price: { ...price, exactMillionths: exact.toString(), carryBefore, carryAfter: carry },
      });
      if (outcome.ok) {
        run(
          this.sql,
          `INSERT INTO price_carries (key_id, operation, model, carry) VALUES (?, ?, ?, ?)
           ON CONFLICT (key_id, operation, model) DO UPDATE SET carry = excluded.carry`,
          keyId,
          usage.operation,
          model,
          carry,
        );
      }
      return { ...outcome, cost: amount };
    });
    await this.afterWrite();
    return result;
  }

  /** Spend by day, key, model or operation over whole UTC days, from the daily rollups. */
  async usage(input: unknown): Promise<UsageReport> {
    const parsed = parseInput(usageQuerySchema, input, "usage input");
    this.requireAccount(parsed.accountId);
    const nowMs = this.now();
    const span = { "1h": 3_600_000, "24h": 86_400_000, "7d": 7 * 86_400_000, "30d": 30 * 86_400_000 } as const;
    const range = typeof parsed.range === "string" ? { from: nowMs - span[parsed.range], to: nowMs } : parsed.range;
    const fromDay = dayOf(range.from);
    const toDay = dayOf(range.to - 1);
    const column = { day: "day", key: "key_id", model: "model", operation: "operation" }[parsed.groupBy];
    const rows = all<{ grp: string; amount: number; count: number }>(
      this.sql,
      `SELECT ${column} AS grp, SUM(amount) AS amount, SUM(count) AS count FROM usage_rollups
       WHERE day >= ? AND day <= ? GROUP BY ${column} ORDER BY ${column}`,
      fromDay,
      toDay,
    );
    return {
      from: Date.parse(`${fromDay}T00:00:00Z`),
      to: Date.parse(`${toDay}T00:00:00Z`) + 86_400_000,
      groupBy: parsed.groupBy,
      items: rows.map((r) => ({ group: r.grp === "" ? "(none)" : r.grp, amount: r.amount, count: r.count })),
    };
  }

  // ---------------------------------------------------------------- audit (Admin)

  /** Re-hashes every entry in order; reports the first that does not verify. */
  async verifyChain(input: unknown): Promise<ChainReport> {
    const parsed = parseInput(accountRefSchema, input, "verifyChain input");
    this.requireAccount(parsed.accountId);
    return this.checkChain();
  }

  /** Runs the self-audit now, stores and returns its report. */
  async audit(input: unknown): Promise<AuditReport> {
    const parsed = parseInput(accountRefSchema, input, "audit input");
    this.requireAccount(parsed.accountId);
    return this.runAudit(this.now(), "full")!;
  }

  async auditReports(input: unknown): Promise<{ reports: AuditReport[] }> {
    const parsed = parseInput(auditReportsSchema, input, "auditReports input");
    this.requireAccount(parsed.accountId);
    const rows = all<{ body: string }>(
      this.sql,
      `SELECT body FROM audit_reports ${parsed.divergent ? "WHERE ok = 0" : ""} ORDER BY at_ms DESC, rowid DESC LIMIT ?`,
      parsed.limit ?? 20,
    );
    return { reports: rows.map((r) => JSON.parse(r.body) as AuditReport) };
  }

  // ---------------------------------------------------------------- timed work

  protected override taskHandlers(): TaskHandlers {
    return {
      "settle-due": async (_payload, nowMs) => {
        this.transaction(() => this.settleDue(nowMs));
        await this.scheduleSettle("replace");
      },
      prune: async (_payload, nowMs) => {
        // In batches, so a backlog never holds the object for long; a full batch comes back at once.
        const deleted =
          run(this.sql, "DELETE FROM idempotency WHERE idempotency_key IN (SELECT idempotency_key FROM idempotency WHERE expires_at_ms <= ? ORDER BY expires_at_ms LIMIT ?)", nowMs, PRUNE_BATCH) +
          run(this.sql, "DELETE FROM key_rule_states WHERE (family_id, rule_name) IN (SELECT family_id, rule_name FROM key_rule_states WHERE expires_at_ms <= ? LIMIT ?)", nowMs, PRUNE_BATCH);
        // Spend counters of past periods are never read again (caps look at the current day and month).
        run(this.sql, "DELETE FROM key_spend WHERE (period LIKE 'd:%' AND period < ?) OR (period LIKE 'm:%' AND period < ?)", `d:${dayOf(nowMs - KEY_SPEND_DAYS_KEPT_MS)}`, `m:${monthOf(nowMs - KEY_SPEND_MONTHS_KEPT_MS)}`);
        if (deleted >= PRUNE_BATCH) await this.ensureTask("prune", nowMs, "replace");
        else await this.schedulePrune("replace");
      },
      audit: async (_payload, nowMs) => {
        if (this.accountRow() === undefined) return;
        const report = this.runAudit(nowMs, "incremental", AUDIT_BATCH_ENTRIES);
        // An unfinished backlog continues soon; otherwise the next audit is a full interval away.
        await this.scheduler.schedule("audit", nowMs + (report === undefined ? AUDIT_BACKLOG_DELAY_MS : AUDIT_INTERVAL_MS), null, "audit", "replace");
      },
    };
  }

  /** Arms the alarm for whatever the last write made due. */
  private async afterWrite(): Promise<void> {
    await this.scheduleSettle("earliest");
    await this.schedulePrune("earliest");
  }

  private async scheduleSettle(keep: "replace" | "earliest"): Promise<void> {
    const next = maybeOne<{ next: number | null }>(
      this.sql,
      `SELECT MIN(t) AS next FROM (
         SELECT MIN(expires_at_ms) AS t FROM grants WHERE expiry_booked = 0 AND expires_at_ms IS NOT NULL
         UNION ALL SELECT MIN(expires_at_ms) FROM holds WHERE status = 'open')`,
    )?.next;
    if (next != null) await this.ensureTask("settle-due", next, keep);
  }

  private async schedulePrune(keep: "replace" | "earliest"): Promise<void> {
    const next = maybeOne<{ next: number | null }>(
      this.sql,
      `SELECT MIN(t) AS next FROM (
         SELECT MIN(expires_at_ms) AS t FROM idempotency UNION ALL SELECT MIN(expires_at_ms) FROM key_rule_states)`,
    )?.next;
    if (next != null) await this.ensureTask("prune", next + PRUNE_SLACK_MS, keep);
  }

  /**
   * Schedules task `kind` at `dueMs`. On the write path (`earliest`) a task already due no
   * later is left alone, so a busy account does not rewrite its task row and alarm on every call.
   */
  private async ensureTask(kind: string, dueMs: number, keep: "replace" | "earliest"): Promise<void> {
    const existing = this.scheduler.get(kind);
    if (keep === "earliest" && existing !== undefined && existing.parkedAtMs === null && existing.dueMs <= dueMs) return;
    await this.scheduler.schedule(kind, dueMs, null, kind, keep);
  }

  /**
   * Books every grant expiry and hold release that is due, each exactly once (the flags it
   * sets are read in the same transaction). Runs at the start of every write and by alarm,
   * so no call ever spends expired credit or sees an overdue hold as open.
   */
  private settleDue(nowMs: number): void {
    const grants = all<GrantRow>(
      this.sql,
      "SELECT * FROM grants WHERE expiry_booked = 0 AND expires_at_ms IS NOT NULL AND expires_at_ms <= ? ORDER BY expires_at_ms, seq",
      nowMs,
    );
    for (const grant of grants) {
      run(this.sql, "UPDATE grants SET expiry_booked = 1, expired = expired + remaining, remaining = 0 WHERE grant_id = ?", grant.grant_id);
      if (grant.remaining > 0) {
        this.append(nowMs, {
          kind: "expire",
          amount: grant.remaining,
          change: { ...noChange(), expired: grant.remaining },
          reason: "grant expired",
          idempotencyKey: null,
          draws: [{ grantId: grant.grant_id, amount: grant.remaining }],
          grantId: grant.grant_id,
        });
      }
    }
    const holds = all<HoldRow>(this.sql, "SELECT * FROM holds WHERE status = 'open' AND expires_at_ms <= ? ORDER BY expires_at_ms, hold_id", nowMs);
    for (const hold of holds) this.releaseHold(hold, "release", "hold expired", null, nowMs);
  }

  // ---------------------------------------------------------------- internals: spending

  /** Gives back `amount` (default: all still refundable) of a debit or commit, last drawn first. */
  private refundEntry(parsed: { entryId: string; amount?: number; reason: string }, idempotencyKey: string, nowMs: number): CreditRefundResult {
    const original = maybeOne<{ body: string }>(this.sql, "SELECT body FROM entries WHERE entry_id = ?", parsed.entryId);
    if (original === undefined) throw notFound(`no entry "${parsed.entryId}" in this account`);
    const taken = JSON.parse(original.body) as Entry;
    if (taken.kind !== "debit" && taken.kind !== "commit") throw invalidArgument(`entry "${parsed.entryId}" is a ${taken.kind}; only debits and commits can be refunded`);
    const parts = all<{ ord: number; grant_id: string | null; amount: number; refunded: number }>(
      this.sql,
      "SELECT ord, grant_id, amount, refunded FROM consumptions WHERE entry_id = ? ORDER BY ord DESC",
      parsed.entryId,
    );
    const refundable = parts.reduce((sum, p) => sum + p.amount - p.refunded, 0);
    const amount = parsed.amount ?? refundable;
    if (amount === 0 || amount > refundable) return { ok: false, code: "REFUND_EXCEEDS_TAKEN", refundable, balance: this.currentBalance() };
    // Last drawn, first refunded: the reverse of the burn-down.
    const back: Draw[] = [];
    let left = amount;
    for (const part of parts) {
      const give = Math.min(left, part.amount - part.refunded);
      if (give <= 0) continue;
      run(this.sql, "UPDATE consumptions SET refunded = refunded + ? WHERE entry_id = ? AND ord = ?", give, parsed.entryId, part.ord);
      back.push({ grantId: part.grant_id, amount: give });
      left -= give;
      if (left === 0) break;
    }
    const expired = this.returnToGrants(back, nowMs, "consumed");
    const entry = this.append(nowMs, {
      kind: "refund",
      amount,
      change: { granted: 0, held: 0, consumed: -amount, expired },
      reason: parsed.reason,
      idempotencyKey,
      draws: mergeDraws(back),
      keyId: taken.keyId,
      refundOf: parsed.entryId,
    });
    const operation = taken.usage?.operation ?? (taken.kind === "commit" ? "hold" : "debit");
    const model = taken.usage ? (taken.usage.model ?? DEFAULT_MODEL) : "";
    this.rollUp(taken.at, taken.keyId ?? "", operation, model, -amount, 0);
    this.repayDebt(nowMs);
    return { ok: true, entry, balance: this.currentBalance() };
  }

  /** A hold of `amount`: key admission, then funds, then the allocations, the hold and its entry. */
  private placeHold(
    parsed: { amount: number; ttlMs: number; keyId?: string; reason?: string; meta?: Record<string, string> },
    idempotencyKey: string,
    nowMs: number,
  ): ReserveResult {
    const admission = this.admitKey(parsed.keyId, parsed.amount, nowMs);
    if (!admission.ok) return admission.denied;
    const plan = this.planSpend(parsed.amount, nowMs);
    if (plan === undefined) return this.denied("INSUFFICIENT_CREDITS");
    const holdId = newId("h");
    const expiresAt = nowMs + parsed.ttlMs;
    this.takeFromGrants(plan.draws);
    const allocations = plan.shortfall > 0 ? [...plan.draws, { grantId: null, amount: plan.shortfall }] : plan.draws;
    allocations.forEach((draw, ord) => {
      run(this.sql, "INSERT INTO hold_allocations (hold_id, ord, grant_id, amount) VALUES (?, ?, ?, ?)", holdId, ord, draw.grantId, draw.amount);
    });
    run(this.sql, "UPDATE account SET held_debt = held_debt + ?", plan.shortfall);
    run(
      this.sql,
      `INSERT INTO holds (hold_id, amount, status, expires_at_ms, key_id, spend_day, spend_month, created_at_ms)
       VALUES (?, ?, 'open', ?, ?, ?, ?, ?)`,
      holdId,
      parsed.amount,
      expiresAt,
      parsed.keyId ?? null,
      dayOf(nowMs),
      monthOf(nowMs),
      nowMs,
    );
    this.#keys.record(admission.admitted, parsed.amount, dayOf(nowMs), monthOf(nowMs));
    const entry = this.append(nowMs, {
      kind: "reserve",
      amount: parsed.amount,
      change: { ...noChange(), held: parsed.amount },
      reason: parsed.reason ?? "reserve",
      idempotencyKey,
      draws: allocations,
      keyId: parsed.keyId,
      holdId,
      meta: parsed.meta,
    });
    return { ok: true, holdId, expiresAt, entry, balance: this.currentBalance() };
  }

  /** A debit (or a charge): key admission, then funds, then the entry. */
  private consume(
    nowMs: number,
    spend: {
      amount: number;
      reason: string;
      idempotencyKey: string;
      keyId?: string;
      meta?: Record<string, string>;
      operation: string;
      model: string;
      usage?: Usage;
      price?: EntryPrice;
    },
  ): DebitResult {
    const admission = this.admitKey(spend.keyId, spend.amount, nowMs);
    if (!admission.ok) return admission.denied;
    const plan = this.planSpend(spend.amount, nowMs);
    if (plan === undefined) return this.denied("INSUFFICIENT_CREDITS");
    this.takeFromGrants(plan.draws);
    for (const draw of plan.draws) run(this.sql, "UPDATE grants SET consumed = consumed + ? WHERE grant_id = ?", draw.amount, draw.grantId);
    run(this.sql, "UPDATE account SET consumed_debt = consumed_debt + ?", plan.shortfall);
    const draws = plan.shortfall > 0 ? [...plan.draws, { grantId: null, amount: plan.shortfall }] : plan.draws;
    this.#keys.record(admission.admitted, spend.amount, dayOf(nowMs), monthOf(nowMs));
    const entry = this.append(nowMs, {
      kind: "debit",
      amount: spend.amount,
      change: { ...noChange(), consumed: spend.amount },
      reason: spend.reason,
      idempotencyKey: spend.idempotencyKey,
      draws,
      keyId: spend.keyId,
      price: spend.price,
      usage: spend.usage,
      meta: spend.meta,
    });
    this.recordConsumption(entry.entryId, draws);
    this.rollUp(nowMs, spend.keyId ?? "", spend.operation, spend.model, spend.amount, 1);
    return { ok: true, entry, balance: this.currentBalance() };
  }

  /**
   * How `amount` would be covered: grants in burn-down order, the shortfall from the
   * overdraft. `undefined` when the debt would exceed the overdraft limit. The debt is read
   * here, not passed in: the caller's `settleDue` may just have released a hold or repaid
   * debt, and a row read before it would refuse credit that is there.
   */
  private planSpend(amount: number, nowMs: number): { draws: Draw[]; shortfall: number } | undefined {
    const account = this.accountRow()!;
    const grants = all<GrantRow>(this.sql, "SELECT * FROM grants WHERE remaining > 0");
    const plan = drawFromGrants(grants.map(toBucket), amount, nowMs);
    const debt = account.held_debt + account.consumed_debt;
    if (debt + plan.shortfall > account.overdraft_limit) return undefined;
    return plan;
  }

  private takeFromGrants(draws: readonly Draw[]): void {
    for (const draw of draws) run(this.sql, "UPDATE grants SET remaining = remaining - ? WHERE grant_id = ?", draw.amount, draw.grantId);
  }

  /**
   * Gives `parts` back to their grants (from `held` allocations or `consumed` credit). What
   * goes back to an expired grant is booked as expired at once; what goes back to the
   * overdraft reduces the debt. Returns the amount booked as expired.
   */
  private returnToGrants(parts: readonly Draw[], nowMs: number, from: "held" | "consumed"): number {
    let expired = 0;
    for (const part of parts) {
      if (part.grantId === null) {
        if (from === "held") run(this.sql, "UPDATE account SET held_debt = held_debt - ?", part.amount);
        else expired += this.refundDebt(part.amount, nowMs);
        continue;
      }
      // A held part was never counted in the grant's `consumed`; a refunded part was.
      if (from === "consumed") run(this.sql, "UPDATE grants SET consumed = consumed - ? WHERE grant_id = ?", part.amount, part.grantId);
      const grant = one<GrantRow>(this.sql, "SELECT * FROM grants WHERE grant_id = ?", part.grantId);
      const target = isExpired(grant, nowMs) ? "expired" : "remaining";
      run(this.sql, `UPDATE grants SET ${target} = ${target} + ? WHERE grant_id = ?`, part.amount, part.grantId);
      if (target === "expired") expired += part.amount;
    }
    return expired;
  }

  /**
   * Refunds an overdraft part: it cancels outstanding debt; whatever a later grant already
   * repaid goes back to that grant (newest repayment first). Returns what was booked expired.
   */
  private refundDebt(amount: number, nowMs: number): number {
    const account = this.accountRow()!;
    const cancel = Math.min(amount, account.consumed_debt);
    run(this.sql, "UPDATE account SET consumed_debt = consumed_debt - ?", cancel);
    let left = amount - cancel;
    let expired = 0;
    const repaying = all<GrantRow>(this.sql, "SELECT * FROM grants WHERE repaid > 0 ORDER BY seq DESC");
    for (const grant of repaying) {
      if (left === 0) break;
      const give = Math.min(left, grant.repaid);
      const target = isExpired(grant, nowMs) ? "expired" : "remaining";
      run(this.sql, `UPDATE grants SET repaid = repaid - ?, consumed = consumed - ?, ${target} = ${target} + ? WHERE grant_id = ?`, give, give, give, grant.grant_id);
      if (target === "expired") expired += give;
      left -= give;
    }
    if (left !== 0) throw new ServiceError("INTERNAL", "refund of overdraft found no debt or repayment to reverse");
    return expired;
  }

  /** Credit that became spendable while the account owes: it pays the debt first, in burn-down order. */
  private repayDebt(nowMs: number): void {
    const debt = this.accountRow()!.consumed_debt;
    if (debt === 0) return;
    const grants = all<GrantRow>(this.sql, "SELECT * FROM grants WHERE remaining > 0");
    const { draws } = drawFromGrants(grants.map(toBucket), debt, nowMs);
    let repaid = 0;
    for (const draw of draws) {
      run(this.sql, "UPDATE grants SET remaining = remaining - ?, consumed = consumed + ?, repaid = repaid + ? WHERE grant_id = ?", draw.amount, draw.amount, draw.amount, draw.grantId);
      repaid += draw.amount;
    }
    run(this.sql, "UPDATE account SET consumed_debt = consumed_debt - ?", repaid);
  }

  private releaseHold(hold: HoldRow, kind: "void" | "release", reason: string, idempotencyKey: string | null, nowMs: number): Entry {
    const allocations = this.allocationsOf(hold.hold_id);
    const expired = this.returnToGrants(allocations, nowMs, "held");
    this.closeHold(hold, kind === "void" ? "voided" : "expired", nowMs, 0);
    const entry = this.append(nowMs, {
      kind,
      amount: hold.amount,
      change: { granted: 0, held: -hold.amount, consumed: 0, expired },
      reason,
      idempotencyKey,
      draws: allocations,
      keyId: hold.key_id ?? undefined,
      holdId: hold.hold_id,
    });
    this.repayDebt(nowMs);
    return entry;
  }

  /** Marks a hold settled (exactly once: callers check `status = 'open'` in the same transaction) and fixes its key's spend. */
  private closeHold(hold: HoldRow, status: Exclude<HoldStatus, "open">, nowMs: number, captured: number): void {
    const changed = run(this.sql, "UPDATE holds SET status = ?, settled_at_ms = ? WHERE hold_id = ? AND status = 'open'", status, nowMs, hold.hold_id);
    if (changed !== 1) throw new ServiceError("INTERNAL", `hold ${hold.hold_id} was settled twice`);
    run(this.sql, "DELETE FROM hold_allocations WHERE hold_id = ?", hold.hold_id);
    if (hold.key_id !== null) {
      const key = this.#keys.row(hold.key_id);
      if (key) this.#keys.addSpend(key.family_id, captured - hold.amount, hold.spend_day, hold.spend_month);
    }
  }

  private allocationsOf(holdId: string): Draw[] {
    return all<{ grant_id: string | null; amount: number }>(this.sql, "SELECT grant_id, amount FROM hold_allocations WHERE hold_id = ? ORDER BY ord", holdId)
      .map((r) => ({ grantId: r.grant_id, amount: r.amount }));
  }

  private recordConsumption(entryId: string, draws: readonly Draw[]): void {
    draws.forEach((draw, ord) => {
      run(this.sql, "INSERT INTO consumptions (entry_id, ord, grant_id, amount) VALUES (?, ?, ?, ?)", entryId, ord, draw.grantId, draw.amount);
    });
  }

  private rollUp(atMs: number, keyId: string, operation: string, model: string, amount: number, count: number): void {
    run(
      this.sql,
      `INSERT INTO usage_rollups (day, key_id, operation, model, amount, count) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (day, key_id, operation, model) DO UPDATE SET amount = amount + excluded.amount, count = count + excluded.count`,
      dayOf(atMs),
      keyId,
      operation,
      model,
      amount,
      count,
    );
  }

  // ---------------------------------------------------------------- internals: keys on the spend path

  /** `LedgerKeys.admit`, with a refusal turned into the `Denied` answer (which carries the balance). */
  private admitKey(keyId: string | undefined, amount: number, nowMs: number): { ok: true; admitted?: KeyAdmission } | { ok: false; denied: Denied } {
    const admission = this.#keys.admit(keyId, amount, nowMs);
    if (admission.ok) return admission;
    const { code, ...rest } = admission.refusal;
    return { ok: false, denied: { ...this.denied(code), ...rest } };
  }

  // ---------------------------------------------------------------- internals: entries, idempotency, audit

  /**
   * Appends one entry: applies its change to the running totals, numbers it, and chains it
   * to the previous entry's hash. The only statement that writes `entries`.
   */
  private append(nowMs: number, draft: EntryDraft): Entry {
    const change = draft.change;
    run(
      this.sql,
      "UPDATE account SET granted = granted + ?, held = held + ?, consumed = consumed + ?, expired = expired + ?, last_seq = last_seq + 1",
      change.granted,
      change.held,
      change.consumed,
      change.expired,
    );
    const account = this.accountRow()!;
    const totals = { granted: account.granted, held: account.held, consumed: account.consumed, expired: account.expired };
    // Key order is fixed here, so the body (and its hash) is canonical.
    const body: Omit<Entry, "hash"> = {
      entryId: draft.entryId ?? newId("e"),
      seq: account.last_seq,
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
    run(this.sql, "UPDATE account SET head_hash = ?", hash);
    return { ...(JSON.parse(text) as Omit<Entry, "hash">), hash };
  }

  /**
   * Runs `body` once per idempotency key: a replay returns the stored first result; the
   * same key with other parameters is `CONFLICT`. Result and key are written in the same
   * transaction as the change, so a crash cannot separate them.
   */
  private idempotent<T>(key: string, method: string, params: unknown, nowMs: number, body: () => T): T {
    const fingerprint = JSON.stringify([method, params]);
    // Read before anything is written: a malformed RETENTION fails the call (INTERNAL) with no change.
    const windowMs = loadDataRetention(this.env).ledgerIdempotency;
    const stored = maybeOne<{ fingerprint: string; result: string }>(this.sql, "SELECT fingerprint, result FROM idempotency WHERE idempotency_key = ?", key);
    if (stored) {
      if (stored.fingerprint !== fingerprint) throw conflict(`idempotency key "${key}" was already used with different parameters`);
      return JSON.parse(stored.result) as T;
    }
    return this.transaction(() => {
      const result = body();
      run(
        this.sql,
        "INSERT INTO idempotency (idempotency_key, fingerprint, result, created_at_ms, expires_at_ms) VALUES (?, ?, ?, ?, ?)",
        key,
        fingerprint,
        JSON.stringify(result),
        nowMs,
        nowMs + windowMs,
      );
      return result;
    });
  }

  private transaction<T>(body: () => T): T {
    return this.ctx.storage.transactionSync(body);
  }

  private checkChain(): ChainReport {
    return this.scanEntries(undefined, Number.POSITIVE_INFINITY).chain;
  }

  /**
   * Reads entries after `from` (a verified checkpoint, or the genesis) in pages, at most
   * `budget` of them: re-hashes the chain, re-adds every entry's change and re-checks every
   * `balanceAfter`. The sums go on past a chain break, so the totals are still compared.
   */
  private scanEntries(from: AuditCheckpoint | undefined, budget: number) {
    const totals = from ? { ...from.totals } : noChange();
    const brokenBalanceAfter: number[] = [];
    let balanceAfter = from?.balanceAfter ?? 0;
    let afterSeq = from?.seq ?? 0;
    let head = from?.hash ?? GENESIS_HASH;
    let chain: ChainReport = { ok: true, checked: 0, headHash: head };
    let scanned = 0;
    while (scanned < budget) {
      const rows = all<EntryRow>(
        this.sql,
        "SELECT seq, body, prev_hash, hash FROM entries WHERE seq > ? ORDER BY seq LIMIT ?",
        afterSeq,
        Math.min(CHAIN_PAGE, budget - scanned),
      );
      if (rows.length === 0) break;
      if (chain.ok) {
        const page = verifyChain(rows.map((r) => ({ seq: r.seq, body: r.body, prevHash: r.prev_hash, hash: r.hash })), head, afterSeq + 1);
        chain = page.ok ? { ok: true, checked: chain.checked + page.checked, headHash: page.headHash } : { ...page, checked: chain.checked + page.checked };
      }
      for (const row of rows) {
        const entry = JSON.parse(row.body) as Entry;
        totals.granted += entry.change.granted;
        totals.held += entry.change.held;
        totals.consumed += entry.change.consumed;
        totals.expired += entry.change.expired;
        if (entry.balanceAfter !== balanceAfter + entry.change.granted - entry.change.held - entry.change.consumed - entry.change.expired) {
          brokenBalanceAfter.push(row.seq);
        }
        balanceAfter = entry.balanceAfter;
      }
      head = rows.at(-1)!.hash;
      afterSeq = rows.at(-1)!.seq;
      scanned += rows.length;
    }
    const reachedEnd = afterSeq === this.accountRow()!.last_seq;
    if (chain.ok && reachedEnd && this.accountRow()!.head_hash !== chain.headHash) {
      chain = { ok: false, checked: chain.checked, headHash: chain.headHash, reason: "the account's head hash is not the last entry's hash" };
    }
    return { chain, reachedEnd, brokenBalanceAfter, end: { seq: afterSeq, hash: head, totals, balanceAfter } satisfies AuditCheckpoint };
  }

  /**
   * Re-derives the totals from the entries and checks every invariant. Reports; never repairs.
   *
   * `full` starts from the first entry. `incremental` (the alarm's) starts from the last
   * checkpoint, the state after the last clean audit, and reads at most `budget` entries: a
   * long backlog is worked off over several runs, and `undefined` says "not done yet". The
   * checkpoint only moves after a clean audit, so a divergence is reported again until fixed.
   */
  protected runAudit(nowMs: number, mode: "full" | "incremental", budget = Number.POSITIVE_INFINITY): AuditReport | undefined {
    const account = this.accountRow()!;
    const from = mode === "full" ? undefined : this.auditCheckpoint();
    const scan = this.scanEntries(from, budget);
    if (!scan.reachedEnd && scan.chain.ok && scan.brokenBalanceAfter.length === 0) {
      this.saveAuditCheckpoint(scan.end);
      return undefined;
    }
    const grants = all<GrantRow & { allocated: number }>(
      this.sql,
      `SELECT g.*, COALESCE((SELECT SUM(a.amount) FROM hold_allocations a WHERE a.grant_id = g.grant_id), 0) AS allocated FROM grants g`,
    );
    const sums = one<{ open: number; allocations: number; unfunded: number }>(
      this.sql,
      `SELECT (SELECT COALESCE(SUM(amount), 0) FROM holds WHERE status = 'open') AS open,
              (SELECT COALESCE(SUM(amount), 0) FROM hold_allocations) AS allocations,
              (SELECT COALESCE(SUM(amount), 0) FROM hold_allocations WHERE grant_id IS NULL) AS unfunded`,
    );
    // Totals can only be compared once every entry has been read; a problem found on the way is reported at once.
    const violations = !scan.reachedEnd
      ? scan.brokenBalanceAfter.map((seq) => `entry ${seq}: balanceAfter does not follow from its change`)
      : checkInvariants({
          stored: {
            granted: account.granted,
            held: account.held,
            consumed: account.consumed,
            expired: account.expired,
            heldDebt: account.held_debt,
            consumedDebt: account.consumed_debt,
          },
          fromEntries: scan.end.totals,
          lastBalanceAfter: scan.end.balanceAfter,
          brokenBalanceAfter: scan.brokenBalanceAfter,
          overdraftLimit: account.overdraft_limit,
          grants: grants.map((g) => ({ grantId: g.grant_id, amount: g.amount, remaining: g.remaining, allocated: g.allocated, consumed: g.consumed, expired: g.expired })),
          openHolds: sums.open,
          allocations: sums.allocations,
          unfundedAllocations: sums.unfunded,
        });
    if (!scan.chain.ok) violations.push(`hash chain broken at entry ${scan.chain.brokenAtSeq ?? "head"}: ${scan.chain.reason}`);
    const report: AuditReport = {
      at: nowMs,
      ok: violations.length === 0,
      violations,
      mode,
      fromSeq: (from?.seq ?? 0) + 1,
      entries: account.last_seq,
      balance: toBalance(account),
      chain: scan.chain,
    };
    if (!report.ok) console.error(`credit ledger ${account.account_id}: self-audit found ${violations.length} violation(s): ${violations.join("; ")}`);
    this.transaction(() => {
      if (report.ok) this.saveAuditCheckpoint(scan.end);
      run(this.sql, "INSERT INTO audit_reports (at_ms, ok, body) VALUES (?, ?, ?)", nowMs, report.ok ? 1 : 0, JSON.stringify(report));
      run(this.sql, "DELETE FROM audit_reports WHERE rowid NOT IN (SELECT rowid FROM audit_reports ORDER BY at_ms DESC, rowid DESC LIMIT ?)", AUDIT_REPORTS_KEPT);
    });
    return report;
  }

  private auditCheckpoint(): AuditCheckpoint | undefined {
    const row = maybeOne<{ seq: number; hash: string; granted: number; held: number; consumed: number; expired: number; balance_after: number }>(
      this.sql,
      "SELECT * FROM audit_checkpoint WHERE id = 1",
    );
    return row && {
      seq: row.seq,
      hash: row.hash,
      totals: { granted: row.granted, held: row.held, consumed: row.consumed, expired: row.expired },
      balanceAfter: row.balance_after,
    };
  }

  private saveAuditCheckpoint(cp: AuditCheckpoint): void {
    run(
      this.sql,
      `INSERT OR REPLACE INTO audit_checkpoint (id, seq, hash, granted, held, consumed, expired, balance_after) VALUES (1, ?, ?, ?, ?, ?, ?, ?)`,
      cp.seq,
      cp.hash,
      cp.totals.granted,
      cp.totals.held,
      cp.totals.consumed,
      cp.totals.expired,
      cp.balanceAfter,
    );
  }

  // ---------------------------------------------------------------- internals: lookups

  /** An object serves exactly the account it is named after; a mismatch is a caller bug. */
  private assertAccountName(accountId: string): void {
    const name = this.ctx.id.name;
    if (name !== undefined && name !== accountId) throw invalidArgument(`account "${accountId}" does not belong to this object`);
  }

  private accountRow(): AccountRow | undefined {
    return maybeOne<AccountRow>(this.sql, "SELECT * FROM account WHERE id = 1");
  }

  private requireAccount(accountId: string): AccountRow {
    this.assertAccountName(accountId);
    const row = this.accountRow();
    if (row === undefined || row.account_id !== accountId) throw notFound(`no account "${accountId}"`);
    return row;
  }

  private currentBalance(): Balance {
    return toBalance(this.accountRow()!);
  }

  private denied(code: Denied["code"]): Denied {
    return { ok: false, code, balance: this.currentBalance() };
  }

  private requireHold(holdId: string): HoldRow {
    const row = maybeOne<HoldRow>(this.sql, "SELECT * FROM holds WHERE hold_id = ?", holdId);
    if (row === undefined) throw notFound(`no hold "${holdId}" in this account`);
    return row;
  }

  private priceBook(): PriceBook {
    const own = all<{ body: string }>(this.sql, "SELECT body FROM prices ORDER BY operation, model").map((r) => JSON.parse(r.body) as Price);
    return own.length > 0 ? { prices: own, source: "account" } : { prices: [...loadDefaultPrices(this.env.CREDIT_PRICES)], source: "default" };
  }

  private requirePrice(operation: string, model: string): Price {
    const price = findPrice(this.priceBook().prices, operation, model);
    if (price === undefined) throw notFound(`no price for operation "${operation}" and model "${model}"`);
    return price;
  }

  private carryOf(keyId: string, operation: string, model: string): number {
    return maybeOne<{ carry: number }>(this.sql, "SELECT carry FROM price_carries WHERE key_id = ? AND operation = ? AND model = ?", keyId, operation, model)?.carry ?? 0;
  }
}
