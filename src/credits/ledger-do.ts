import type {
  Account,
  AdmitRequestResult,
  AuditReport,
  Balance,
  ChainReport,
  ChargeResult,
  CommitManyResult,
  CommitOutcome,
  CommitResult,
  CreatedKey,
  CreditRefundResult,
  DebitResult,
  EntriesPage,
  Entry,
  Hold,
  KeyInfo,
  KeySpend,
  PriceBook,
  Quote,
  ReleaseAdmissionResult,
  ReserveResult,
  RolledKey,
  UsageReport,
  VerifyKeyResult,
  VoidResult,
} from "../../rpc/credits";
import { IdempotencyStore, type PendingRecord, type Transaction } from "../platform/idempotency";
import { currentCallScope } from "../platform/metering/object-calls";
import { TransactionBatches } from "../platform/transaction-batches";
import { WriteBackTransactions } from "../platform/write-back";
import { DEFAULT_DATA_RETENTION, loadDataRetention } from "../platform/retention";
import type { Env } from "../platform/env";
import { conflict, invalidArgument, toErrorValue } from "../platform/errors";
import { type ObjectHooks, type ObjectSpec, TollgateObject } from "../platform/tollgate-object";
import { evaluateRules } from "../rate-limits/algorithms/evaluate-rules";
import { LedgerAudit } from "./audit";
import { GatewayAdmission } from "./gateway-admission";
import { Grants } from "./grants";
import { Holds, SettledThrough } from "./holds";
import { Journal } from "./journal";
import { parseKey } from "./keys";
import { LedgerAccount } from "./ledger-account";
import { LedgerKeys } from "./ledger-keys";
import { LedgerPricing } from "./ledger-pricing";
import { toAccount, toBalance } from "./ledger-rows";
import { CREDIT_LEDGER_MIGRATIONS } from "./ledger-tables";
import {
  accountRefSchema,
  admitRequestSchema,
  auditReportsSchema,
  balanceSchema,
  chargeSchema,
  commitManySchema,
  commitSchema,
  createAccountSchema,
  createKeySchema,
  debitSchema,
  entriesSchema,
  grantSchema,
  holdRefSchema,
  keyRefSchema,
  quoteSchema,
  refundSchema,
  releaseAdmissionSchema,
  reserveSchema,
  rollKeySchema,
  setPricesSchema,
  usageQuerySchema,
  verifyKeySchema,
  voidSchema,
} from "./schemas";
import { Spending } from "./spending";
import { LedgerUpkeep } from "./upkeep";
import { UsageRollups } from "./usage-rollups";

/** How soon after a write its entries are rolled up into `usage_rollups` (every write of the moment shares one roll-up). */
export const USAGE_ROLLUP_DELAY_MS = 1_000;
/** Idempotency keys are honoured this long by default (a monthly billing cycle plus slack; `RETENTION.ledgerIdempotency`). */
export const IDEMPOTENCY_TTL_MS = DEFAULT_DATA_RETENTION.ledgerIdempotency;
export { PRUNE_BATCH } from "../platform/idempotency";
export { AUDIT_BATCH_ENTRIES, AUDIT_INTERVAL_MS } from "./upkeep";

/** What a test subclass may reach of the ledger beyond the base's controls; never reachable over RPC. */
export interface LedgerInternals {
  /** One self-audit run, as `audit` (`full`) or the alarm (`incremental`, with a budget of entries) runs it. */
  runAudit(nowMs: number, mode: "full" | "incremental", budget?: number): AuditReport | undefined;
}

/** The base's test hooks, plus the ledger's own internals, handed over synchronously during construction. */
export interface CreditLedgerHooks extends ObjectHooks {
  attachLedger?: (internals: LedgerInternals) => void;
}

/**
 * One account's credit ledger and API keys. Single-threaded, so every decision is exact:
 * each mutating call reads, decides and writes inside one synchronous `transactionSync`,
 * with no `await` before the write (which would let another call interleave).
 *
 * Every change is an immutable, hash-chained entry; the running totals, grants, holds and
 * key counters are derived state that the self-audit re-checks against the entries.
 * See docs/credits.md.
 *
 * This class is the RPC contract only: each method validates its input and hands the work to
 * the plain classes below, which only the object can reach.
 */
export class CreditLedgerDO extends TollgateObject {
  static readonly #spec: ObjectSpec<CreditLedgerDO> = {
    component: "credit-ledger",
    migrations: CREDIT_LEDGER_MIGRATIONS,
    tasks: (self) => self.#upkeep.tasks(),
    afterImport: (self) => {
      self.#journal.afterImport();
      self.#holds.afterImport();
      // Counters held in memory belonged to the storage the restore replaced.
      self.#keys.uncappedSpend.reset();
    },
  };

  readonly #transaction: Transaction;
  /** Group commit: the calls that write entries, run in batches sharing one transaction (see #write). */
  readonly #batches: TransactionBatches;
  readonly #account: LedgerAccount;
  readonly #journal: Journal;
  readonly #keys: LedgerKeys;
  readonly #usage: UsageRollups;
  readonly #spending: Spending;
  readonly #holds: Holds;
  readonly #pricing: LedgerPricing;
  readonly #admission: GatewayAdmission;
  readonly #idempotency: IdempotencyStore;
  readonly #audit: LedgerAudit;
  readonly #upkeep: LedgerUpkeep;
  #rollupTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(ctx: DurableObjectState, env: Env, hooks?: CreditLedgerHooks) {
    super(ctx, env, CreditLedgerDO.#spec, hooks);
    const sql = this.sql;
    const grants = new Grants(sql);
    this.#keys = new LedgerKeys(sql);
    this.#account = new LedgerAccount(sql, ctx.id.name);
    const settledThrough = new SettledThrough(() => this.#account.row()?.last_at_ms ?? 0);
    // The hot rows (grants, key spend and rule states) are written once per transaction, at its commit.
    const transactions = new WriteBackTransactions(
      (body) => ctx.storage.transactionSync(body),
      [
        grants.cache,
        this.#keys.spendCache,
        this.#keys.ruleStateCache,
        this.#keys.uncappedSpend,
        this.#account.memo,
        this.#keys.keyRows,
        settledThrough,
      ],
    );
    this.#transaction = (body) => {
      const result = transactions.run(body);
      // Uncapped keys' spend counters wait in memory for the next roll-up (a pending timer also keeps the object awake).
      if (this.#keys.uncappedSpend.pending()) this.#scheduleRollup();
      return result;
    };
    this.#batches = new TransactionBatches({ transaction: this.#transaction, durable: () => ctx.storage.sync(), scope: currentCallScope });
    this.#journal = new Journal(sql, this.#account);
    this.#usage = new UsageRollups(sql, this.#journal);
    this.#spending = new Spending(sql, this.#account, this.#journal, this.#keys, grants);
    this.#holds = new Holds(sql, this.#account, this.#journal, this.#keys, this.#spending, settledThrough);
    // `this.env` is read at each call, not now: a test may swap the variables of a live object.
    this.#pricing = new LedgerPricing(sql, this.#transaction, this.#spending, this.#holds, () => this.env.CREDIT_PRICES);
    this.#admission = new GatewayAdmission(this.#account, this.#keys, this.#journal, this.#spending, this.#holds);
    // Each keyed write's first result. Keys are inserted once: an expired record still answers until pruned.
    const idempotencyWindowMs = () => loadDataRetention(this.env).ledgerIdempotency;
    this.#idempotency = new IdempotencyStore(sql, {
      table: "idempotency",
      resultColumn: "result",
      windowMs: idempotencyWindowMs,
      replaysExpired: true,
      conflictMessage: (key) => `idempotency key "${key}" was already used with different parameters`,
      transaction: this.#transaction,
      // A commit or void keeps its record in the row of the hold it settles (Holds.close).
      keptElsewhere: (key) => this.#holds.recordOf(key),
    });
    this.#audit = new LedgerAudit(sql, this.#account, this.#transaction, () => this.#holds.openHoldsQuery());
    this.#upkeep = new LedgerUpkeep(
      sql,
      this.scheduler,
      this.#transaction,
      this.#account,
      this.#holds,
      this.#audit,
      this.#idempotency,
      idempotencyWindowMs,
    );
    hooks?.attachLedger?.({ runAudit: (nowMs, mode, budget) => this.#audit.run(nowMs, mode, budget) });
  }

  // ---------------------------------------------------------------- accounts

  /** Creates the account; calling again with the same name and limit returns it unchanged. */
  createAccount(input: unknown): Promise<Account> {
    return this.handle("createAccount", createAccountSchema, input, async (parsed) => {
      if (parsed.accountId === undefined) throw invalidArgument("accountId is required by the object (the service generates one)");
      this.#account.assertName(parsed.accountId);
      const overdraftLimit = parsed.overdraftLimit ?? 0;
      const existing = this.#account.row();
      if (existing) {
        if (existing.name !== parsed.name || existing.overdraft_limit !== overdraftLimit) {
          throw conflict(`account "${parsed.accountId}" already exists with a different name or overdraft limit`);
        }
        return toAccount(existing);
      }
      const nowMs = this.now();
      this.#account.insert(parsed.accountId, parsed.name, overdraftLimit, nowMs);
      await this.#upkeep.scheduleFirstAudit(nowMs);
      return toAccount(this.#account.row()!);
    });
  }

  account(input: unknown): Promise<Account> {
    return this.handle("account", accountRefSchema, input, async (parsed) => {
      return toAccount(this.#account.require(parsed.accountId));
    });
  }

  /** The balance now, or as it stood at `at` (after every entry at or before it). */
  balance(input: unknown): Promise<Balance> {
    return this.handle("balance", balanceSchema, input, async (parsed) => {
      const account = this.#account.require(parsed.accountId);
      if (parsed.at === undefined) return toBalance(account);
      return this.#journal.balanceAt(account, parsed.at);
    });
  }

  // ---------------------------------------------------------------- grants and debits

  grant(input: unknown): Promise<Entry> {
    return this.handle("grant", grantSchema, input, async (parsed) => {
      const nowMs = this.now();
      const { idempotencyKey, ...params } = parsed;
      const entry = await this.#batches.run(() =>
        this.#idempotency.run(idempotencyKey, ["grant", params], nowMs, () => {
          this.#spending.assertGrantable(this.#account.require(parsed.accountId), parsed, nowMs);
          this.#holds.settleDue(nowMs);
          return this.#spending.grant(parsed, idempotencyKey, nowMs);
        }),
      );
      await this.#afterWrite(nowMs);
      return entry;
    });
  }

  /** Takes `amount` now, from grants in burn-down order, then from the overdraft. Exact under concurrency. */
  debit(input: unknown): Promise<DebitResult> {
    return this.handle("debit", debitSchema, input, async (parsed) => {
      const nowMs = this.now();
      const { idempotencyKey, ...params } = parsed;
      return this.#write(idempotencyKey, "debit", params, parsed.accountId, nowMs, () =>
        this.#spending.consume(nowMs, {
          amount: parsed.amount,
          reason: parsed.reason,
          idempotencyKey,
          keyId: parsed.keyId,
          meta: parsed.meta,
        }),
      );
    });
  }

  // ---------------------------------------------------------------- holds

  /** Reserves `amount` until committed, voided, or released by alarm after `ttlMs`. */
  reserve(input: unknown): Promise<ReserveResult> {
    return this.handle("reserve", reserveSchema, input, async (parsed) => {
      const nowMs = this.now();
      const { idempotencyKey, ...params } = parsed;
      return this.#write(idempotencyKey, "reserve", params, parsed.accountId, nowMs, () =>
        this.#holds.place(parsed, idempotencyKey, nowMs),
      );
    });
  }

  /**
   * Captures `amount` of an open hold and releases the rest. Capturing more than was held
   * draws the excess from grants and, within the overdraft limit, beyond.
   */
  commit(input: unknown): Promise<CommitResult> {
    return this.handle("commit", commitSchema, input, async (parsed) => {
      const nowMs = this.now();
      const { idempotencyKey, ...params } = parsed;
      return this.#write(idempotencyKey, "commit", params, parsed.accountId, nowMs, (record) =>
        parsed.usage === undefined
          ? this.#holds.commit({ ...parsed, amount: parsed.amount! }, idempotencyKey, nowMs, record)
          : this.#pricing.commit({ ...parsed, usage: parsed.usage }, idempotencyKey, nowMs, record),
      );
    });
  }

  /**
   * Several commits of this account in one request: the gateway's settles that waited while an
   * earlier one was in flight (gateway/settle-batches.ts). Each runs as `commit` runs it (its own
   * idempotency key, its own savepoint), all in one transaction of the ledger's group commit, and
   * gets its own answer or error, in order; the input as a whole is validated first, so a
   * malformed one runs none.
   */
  commitMany(input: unknown): Promise<CommitManyResult> {
    return this.handle("commitMany", commitManySchema, input, async (parsed) => {
      const { accountId } = parsed;
      // Handed over together, so they share one transaction of the group commit (none runs alone first).
      const outcomes = await Promise.all(
        this.#batches.together(() =>
          parsed.commits.map((commit) =>
            this.commit({ accountId, ...commit }).then(
              (answer): CommitOutcome => ({ answer }),
              (error: unknown): CommitOutcome => ({ error: toErrorValue(error) }),
            ),
          ),
        ),
      );
      return { outcomes };
    });
  }

  /** Releases an open hold in full. Voiding a hold that is no longer open is answered, not thrown. */
  void(input: unknown): Promise<VoidResult> {
    return this.handle("void", voidSchema, input, async (parsed) => {
      const nowMs = this.now();
      const { idempotencyKey, ...params } = parsed;
      return this.#write(idempotencyKey, "void", params, parsed.accountId, nowMs, (record) =>
        this.#holds.void(parsed.holdId, parsed.reason ?? "void", idempotencyKey ?? null, nowMs, record),
      );
    });
  }

  hold(input: unknown): Promise<Hold> {
    return this.handle("hold", holdRefSchema, input, async (parsed) => {
      this.#account.require(parsed.accountId);
      return this.#holds.view(parsed.holdId);
    });
  }

  // ---------------------------------------------------------------- refunds and entries

  /** Gives back all or part of a debit or commit, to the grants it came from; never more than was taken. */
  refund(input: unknown): Promise<CreditRefundResult> {
    return this.handle("refund", refundSchema, input, async (parsed) => {
      const nowMs = this.now();
      const { idempotencyKey, ...params } = parsed;
      return this.#write(idempotencyKey, "refund", params, parsed.accountId, nowMs, () =>
        this.#spending.refund(parsed, idempotencyKey, nowMs),
      );
    });
  }

  /** Entries in chain order, `limit` at a time, optionally within `[since, until)`. */
  entries(input: unknown): Promise<EntriesPage> {
    return this.handle("entries", entriesSchema, input, async (parsed) => {
      this.#account.require(parsed.accountId);
      return this.#journal.page(parsed);
    });
  }

  // ---------------------------------------------------------------- API keys

  /** Creates a key; the returned `key` is the only time its secret exists outside the caller. */
  createKey(input: unknown): Promise<CreatedKey> {
    return this.handle("createKey", createKeySchema, input, async (parsed) => {
      const nowMs = this.now();
      this.#account.require(parsed.accountId);
      if (parsed.expiresAt !== undefined && parsed.expiresAt <= nowMs) throw invalidArgument("expiresAt must be in the future");
      // A rule whose algorithm the limiter does not offer is refused now, not at the first spend.
      if (parsed.rules !== undefined) evaluateRules(parsed.rules, new Map(), nowMs, 1, false);
      return this.#keys.insert(
        parsed.accountId,
        {
          name: parsed.name,
          scopes: parsed.scopes,
          rules: parsed.rules ?? [],
          spendCap: parsed.spendCap,
          expiresAt: parsed.expiresAt,
        },
        nowMs,
      );
    });
  }

  /** Checks a key: secret (in constant time), revocation, expiry, and a scope. Never throws for a bad key. */
  verifyKey(input: unknown): Promise<VerifyKeyResult> {
    return this.handle("verifyKey", verifyKeySchema, input, async (parsed): Promise<VerifyKeyResult> => {
      const key = parseKey(parsed.key);
      if (key === undefined) return { valid: false, code: "MALFORMED" };
      return this.#admission.verify(key, parsed.scope, this.now());
    });
  }

  /** Revokes a key; the very next verification (and spend) with it fails. Idempotent. */
  revokeKey(input: unknown): Promise<KeyInfo> {
    return this.handle("revokeKey", keyRefSchema, input, async (parsed) => {
      this.#account.require(parsed.accountId);
      return this.#keys.revoke(parsed.keyId, this.now());
    });
  }

  /**
   * Replaces a key with a new one of the same name, scopes, rules and caps (which keep
   * counting: the two share spend and rate state). The old key works for `graceMs` more.
   */
  rollKey(input: unknown): Promise<RolledKey> {
    return this.handle("rollKey", rollKeySchema, input, async (parsed) => {
      const nowMs = this.now();
      this.#account.require(parsed.accountId);
      return this.#transaction(() => this.#keys.roll(parsed.accountId, parsed.keyId, parsed.graceMs, nowMs));
    });
  }

  listKeys(input: unknown): Promise<{ keys: KeyInfo[] }> {
    return this.handle("listKeys", accountRefSchema, input, async (parsed) => {
      this.#account.require(parsed.accountId);
      return { keys: this.#keys.list() };
    });
  }

  /** What a key has spent in its caps' current day and month (read by `key_spend_share` alert rules). */
  keySpend(input: unknown): Promise<KeySpend> {
    return this.handle("keySpend", keyRefSchema, input, async (parsed) => {
      this.#account.require(parsed.accountId);
      return this.#keys.spendOf(this.#keys.require(parsed.keyId), this.now());
    });
  }

  // ---------------------------------------------------------------- the gateway's calls

  /**
   * The gateway hot path's one call into the account: verifies the key and scope, counts one
   * request against the key's rate rules, checks its spend caps, and holds or debits `amount`,
   * reading, deciding and writing in one transaction, so a single round trip does what
   * `verifyKey` + `reserve` would do in two. Every refusal is a value.
   */
  admitRequest(input: unknown): Promise<AdmitRequestResult> {
    return this.handle("admitRequest", admitRequestSchema, input, async (parsed): Promise<AdmitRequestResult> => {
      const key = parseKey(parsed.key);
      if (key === undefined) return { ok: false, code: "MALFORMED" };
      const nowMs = this.now();
      const verdict = this.#admission.verify(key, parsed.scope, nowMs);
      if (!verdict.valid) {
        // Only a key that exists (right secret) learns whose it is.
        return verdict.code === "NOT_FOUND"
          ? { ok: false, code: verdict.code }
          : { ok: false, code: verdict.code, accountId: key.accountId, keyId: key.keyId };
      }
      const { idempotencyKey, key: _secret, ...params } = parsed;
      // A priced request holds the worst case of its usage, at this account's prices and the key's carry.
      const amount =
        parsed.usage === undefined ? parsed.amount! : this.#pricing.quote({ usage: parsed.usage, keyId: verdict.keyId }).worstCase;
      const admit = () => this.#admission.admit({ ...parsed, amount }, verdict, nowMs);
      // Only a keyed request that writes an entry needs a replay record; a bare verification does not.
      const result = await this.#batches.run(() =>
        amount === 0 || idempotencyKey === undefined
          ? this.#transaction(admit)
          : this.#idempotency.run(idempotencyKey, ["admitRequest", { ...params, keyId: verdict.keyId }], nowMs, admit),
      );
      if (amount > 0) await this.#afterWrite(nowMs);
      return result;
    });
  }

  /**
   * Undoes an admitted request that another check (the per-IP limit) overruled: gives the
   * request back to the key's rate rules, voids its hold or refunds its debit, and takes the
   * amount off the key's spend counters, so the account is as if the request never came.
   */
  releaseAdmission(input: unknown): Promise<ReleaseAdmissionResult> {
    return this.handle("releaseAdmission", releaseAdmissionSchema, input, async (parsed) => {
      const nowMs = this.now();
      const { idempotencyKey, ...params } = parsed;
      return this.#write(idempotencyKey, "releaseAdmission", params, parsed.accountId, nowMs, () => this.#admission.release(parsed, nowMs));
    });
  }

  // ---------------------------------------------------------------- pricing and usage

  /** Replaces the account's price book; an empty list returns the account to the default. */
  setPrices(input: unknown): Promise<PriceBook> {
    return this.handle("setPrices", setPricesSchema, input, async (parsed) => {
      if (parsed.accountId === undefined) throw invalidArgument("accountId is required: the default price book comes from CREDIT_PRICES");
      this.#account.require(parsed.accountId);
      this.#pricing.replace(parsed.prices);
      return this.#pricing.book();
    });
  }

  prices(input: unknown): Promise<PriceBook> {
    return this.handle("prices", accountRefSchema, input, async (parsed) => {
      this.#account.require(parsed.accountId);
      return this.#pricing.book();
    });
  }

  /** What `charge` would take now, and the worst case to size a hold with. Changes nothing. */
  quote(input: unknown): Promise<Quote> {
    return this.handle("quote", quoteSchema, input, async (parsed) => {
      this.#account.require(parsed.accountId);
      return this.#pricing.quote(parsed);
    });
  }

  /** Prices `usage` and debits the whole credits, carrying the fraction to the next call of the same key and model. */
  charge(input: unknown): Promise<ChargeResult> {
    return this.handle("charge", chargeSchema, input, async (parsed) => {
      const nowMs = this.now();
      const { idempotencyKey, ...params } = parsed;
      return this.#write(idempotencyKey, "charge", params, parsed.accountId, nowMs, () =>
        this.#pricing.charge(parsed, idempotencyKey, nowMs),
      );
    });
  }

  /** Spend by day, key, model or operation over whole UTC days, from the daily rollups. */
  usage(input: unknown): Promise<UsageReport> {
    return this.handle("usage", usageQuerySchema, input, async (parsed) => {
      this.#account.require(parsed.accountId);
      // Exact: the entries not rolled up yet are, first (with the counters waiting for that roll-up).
      if (this.#usage.behind() || this.#keys.uncappedSpend.pending()) this.#transaction(() => this.#rollUp());
      return this.#usage.report(parsed.range, parsed.groupBy, this.now());
    });
  }

  // ---------------------------------------------------------------- audit (Admin)

  /** Re-hashes every entry in order; reports the first that does not verify. */
  verifyChain(input: unknown): Promise<ChainReport> {
    return this.handle("verifyChain", accountRefSchema, input, async (parsed) => {
      this.#account.require(parsed.accountId);
      return this.#audit.verifyChain();
    });
  }

  /** Runs the self-audit now, stores and returns its report. */
  audit(input: unknown): Promise<AuditReport> {
    return this.handle("audit", accountRefSchema, input, async (parsed) => {
      this.#account.require(parsed.accountId);
      return this.#audit.run(this.now(), "full")!;
    });
  }

  auditReports(input: unknown): Promise<{ reports: AuditReport[] }> {
    return this.handle("auditReports", auditReportsSchema, input, async (parsed) => {
      this.#account.require(parsed.accountId);
      return { reports: this.#audit.reports(parsed.limit ?? 20, parsed.divergent) };
    });
  }

  // ---------------------------------------------------------------- internals

  /**
   * A write that settles what is due first: once per idempotency key (or, without a key, in a
   * plain transaction), then arms the alarm for whatever the write made due.
   *
   * Writes go through group commit (platform/transaction-batches.ts): with no commit in flight the
   * body runs at once; while one becomes durable, later calls queue and then run together in one
   * transaction, each in its own savepoint, so the grants and key counters they share are written
   * once per batch (platform/write-back.ts). Each answer still leaves only after its entry is durable.
   */
  async #write<T extends object>(
    idempotencyKey: string | undefined,
    method: string,
    params: unknown,
    accountId: string,
    nowMs: number,
    body: (record?: PendingRecord) => T,
  ): Promise<T> {
    const settled = (record?: PendingRecord): T => {
      this.#account.require(accountId);
      this.#holds.settleDue(nowMs);
      return body(record);
    };
    const result = await this.#batches.run(() =>
      idempotencyKey === undefined
        ? this.#transaction(() => settled())
        : this.#idempotency.run(idempotencyKey, [method, params], nowMs, settled),
    );
    await this.#afterWrite(nowMs);
    return result;
  }

  /** Arms the alarm for whatever a write made due, and the roll-up of its entries shortly after. */
  async #afterWrite(nowMs: number): Promise<void> {
    await this.#upkeep.afterWrite(nowMs);
    this.#scheduleRollup();
  }

  /** Brings the usage rollups up to the last entry and writes the spend counters of keys without caps. */
  #rollUp(): void {
    this.#usage.catchUp();
    this.#keys.uncappedSpend.flush();
  }

  /**
   * One roll-up for every entry of the next moments (each touched rollup row is written once),
   * with the spend counters of keys without caps.
   */
  #scheduleRollup(): void {
    if (this.#rollupTimer !== undefined) return;
    this.#rollupTimer = setTimeout(() => {
      this.#rollupTimer = undefined;
      try {
        this.#transaction(() => this.#rollUp());
      } catch (error) {
        // The rollups are derived again from the entries; the counters stay pending for the next write's roll-up.
        console.error("credit ledger: rolling up usage failed", error);
      }
    }, USAGE_ROLLUP_DELAY_MS);
  }
}
