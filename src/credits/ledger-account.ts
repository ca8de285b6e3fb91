import type { Balance, Denied } from "../../rpc/credits";
import { invalidArgument, notFound } from "../platform/errors";
import { maybeOne, run } from "../platform/sql";
import { TransactionMemo } from "../platform/write-back";
import { GENESIS_HASH } from "./chain";
import { type AccountRow, toBalance } from "./ledger-rows";

/**
 * The account as every other part reads it: who it is and its overdraft limit (the one-row
 * `account` table), and the running totals, the last `seq` and the chain's head, which are
 * the last entry's. An entry is the one row a change must write, so the totals are read from
 * it rather than written twice: `account`'s own total, `last_seq` and `head_hash` columns are
 * no longer kept (they hold what they held when migration 3 ran). The overdraft's debts
 * (`held_debt`, `consumed_debt`) stay on `account`: no entry carries them, and they change
 * only when a spend goes into the overdraft or repays it. Synchronous SQL only.
 */
export class LedgerAccount {
  /**
   * Inside a transaction, the row as last read or written, so the many reads of one call run
   * one query: a write of the account or the entries hands over the row it made (`wrote`), or
   * forgets it (the object's transactions own the memo).
   */
  readonly memo = new TransactionMemo<AccountRow | undefined>();

  /**
   * Set once the account is seen outside a transaction: an account is never deleted, and no
   * rollback can undo a row that was there before the transaction began.
   */
  #seen = false;

  /**
   * @param objectName the Durable Object's name, which must be the account id (`undefined`
   *   for an object addressed by id, which is then not checked).
   */
  constructor(
    private readonly sql: SqlStorage,
    private readonly objectName: string | undefined,
  ) {}

  /** An object serves exactly the account it is named after; a mismatch is a caller bug. */
  assertName(accountId: string): void {
    if (this.objectName !== undefined && this.objectName !== accountId) {
      throw invalidArgument(`account "${accountId}" does not belong to this object`);
    }
  }

  row(): AccountRow | undefined {
    return this.memo.get("account", () => this.#read());
  }

  /** Whether the account exists; after the first yes, without a query (key verification asks on every call). */
  exists(): boolean {
    if (this.#seen) return true;
    const found = this.row() !== undefined;
    if (found && !this.memo.inTransaction) this.#seen = true;
    return found;
  }

  /** The account or the entries changed: the next read queries again. */
  forget(): void {
    this.memo.forget();
  }

  /**
   * The row as a write of this transaction just left it (an entry appended, the debts moved),
   * computed by that write, so the reads after it need not query again.
   */
  wrote(row: AccountRow): void {
    this.memo.set("account", row);
  }

  #read(): AccountRow | undefined {
    return maybeOne<AccountRow>(
      this.sql,
      `SELECT a.id, a.account_id, a.name, a.overdraft_limit, a.created_at_ms, a.held_debt, a.consumed_debt,
         COALESCE(e.granted_after, 0) AS granted, COALESCE(e.held_after, 0) AS held, COALESCE(e.consumed_after, 0) AS consumed,
         COALESCE(e.expired_after, 0) AS expired, COALESCE(e.seq, 0) AS last_seq, COALESCE(e.hash, ?) AS head_hash,
         COALESCE(e.at_ms, 0) AS last_at_ms
       FROM account a LEFT JOIN (SELECT * FROM entries ORDER BY seq DESC LIMIT 1) e ON 1 = 1 WHERE a.id = 1`,
      GENESIS_HASH,
    );
  }

  /** Moves the overdraft's debts; writes nothing when neither changes. */
  addDebt(held: number, consumed: number): void {
    if (held === 0 && consumed === 0) return;
    // Inside a transaction the row after the update is known without a query; outside, nothing is kept.
    const before = this.memo.inTransaction ? this.row() : undefined;
    this.forget();
    run(this.sql, "UPDATE account SET held_debt = held_debt + ?, consumed_debt = consumed_debt + ?", held, consumed);
    if (before !== undefined) {
      this.wrote({ ...before, held_debt: before.held_debt + held, consumed_debt: before.consumed_debt + consumed });
    }
  }

  require(accountId: string): AccountRow {
    this.assertName(accountId);
    const row = this.row();
    if (row === undefined || row.account_id !== accountId) throw notFound(`no account "${accountId}"`);
    return row;
  }

  insert(accountId: string, name: string, overdraftLimit: number, nowMs: number): void {
    this.forget();
    run(
      this.sql,
      "INSERT INTO account (id, account_id, name, overdraft_limit, created_at_ms, head_hash) VALUES (1, ?, ?, ?, ?, ?)",
      accountId,
      name,
      overdraftLimit,
      nowMs,
      GENESIS_HASH,
    );
  }

  /** The balance now (the account must exist). */
  balance(): Balance {
    return toBalance(this.row()!);
  }

  /** A refusal to spend, with the balance that explains it. */
  denied(code: Denied["code"]): Denied {
    return { ok: false, code, balance: this.balance() };
  }
}
