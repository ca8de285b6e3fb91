import type { Balance, Denied } from "../../rpc/credits";
import { invalidArgument, notFound } from "../platform/errors";
import { maybeOne, run } from "../platform/sql";
import { GENESIS_HASH } from "./chain";
import { type AccountRow, toBalance } from "./ledger-rows";

/**
 * The one-row `account` table of a CreditLedgerDO: who the account is, its overdraft limit
 * and the running totals every other part reads. Synchronous SQL only.
 */
export class LedgerAccount {
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
    return maybeOne<AccountRow>(this.sql, "SELECT * FROM account WHERE id = 1");
  }

  require(accountId: string): AccountRow {
    this.assertName(accountId);
    const row = this.row();
    if (row === undefined || row.account_id !== accountId) throw notFound(`no account "${accountId}"`);
    return row;
  }

  insert(accountId: string, name: string, overdraftLimit: number, nowMs: number): void {
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
