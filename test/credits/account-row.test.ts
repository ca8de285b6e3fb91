// The account row as the ledger reads it (src/credits/ledger-account.ts): inside a transaction a
// write hands the reads after it the row it made, and that row is exactly what a query returns.
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { Journal, noChange } from "../../src/credits/journal";
import { LedgerAccount } from "../../src/credits/ledger-account";
import { WriteBackTransactions } from "../../src/platform/write-back";

/** `sql` that counts the account queries it runs (the join of `account` with the last entry). */
function countingAccountReads(sql: SqlStorage): { sql: SqlStorage; reads: () => number } {
  let reads = 0;
  const counting = {
    exec(query: string, ...bindings: unknown[]) {
      if (query.includes("FROM account a LEFT JOIN")) reads++;
      return sql.exec(query, ...bindings);
    },
    Cursor: sql.Cursor,
    Statement: sql.Statement,
  };
  return { sql: counting as unknown as SqlStorage, reads: () => reads };
}

async function fundedAccount(prefix: string) {
  const accountId = `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
  const ledger = env.CREDIT_LEDGER.getByName(accountId);
  await ledger.createAccount({ accountId, name: prefix, overdraftLimit: 50 });
  await ledger.grant({ accountId, amount: 100, reason: "g", idempotencyKey: "g" });
  return { accountId, ledger };
}

describe("the account row", () => {
  it("after an entry or a debt moves, is what a fresh query reads, with no query of its own", async () => {
    const { accountId, ledger } = await fundedAccount("row-after-write");
    await runInDurableObject(ledger, (_instance: unknown, state: DurableObjectState) => {
      const counted = countingAccountReads(state.storage.sql);
      const account = new LedgerAccount(counted.sql, accountId);
      const journal = new Journal(counted.sql, account);
      const transactions = new WriteBackTransactions((body) => state.storage.transactionSync(body), [account.memo]);
      const fresh = () => new LedgerAccount(state.storage.sql, accountId).row();
      transactions.run(() => {
        const change = { ...noChange(), consumed: 7 };
        journal.append(Date.now(), { kind: "debit", amount: 7, change, reason: "probe", idempotencyKey: null, draws: [] });
        journal.append(Date.now() + 5, {
          kind: "debit",
          amount: 3,
          change: { ...noChange(), held: 3 },
          reason: "probe",
          idempotencyKey: null,
          draws: [],
        });
        account.addDebt(2, 1);
        const readsBefore = counted.reads();
        expect(account.row()).toEqual(fresh());
        expect(counted.reads()).toBe(readsBefore);
      });
      // Outside a transaction nothing is kept: every read queries, and reads what is stored.
      const readsBefore = counted.reads();
      expect(account.row()).toEqual(fresh());
      expect(counted.reads()).toBe(readsBefore + 1);
    });
  });

  it("a rolled-back write leaves no row behind in memory", async () => {
    const { accountId, ledger } = await fundedAccount("row-rollback");
    await runInDurableObject(ledger, (_instance: unknown, state: DurableObjectState) => {
      const account = new LedgerAccount(state.storage.sql, accountId);
      const journal = new Journal(state.storage.sql, account);
      const transactions = new WriteBackTransactions((body) => state.storage.transactionSync(body), [account.memo]);
      const before = account.row();
      transactions.run(() => {
        expect(() =>
          transactions.run(() => {
            journal.append(Date.now(), {
              kind: "debit",
              amount: 5,
              change: { ...noChange(), consumed: 5 },
              reason: "x",
              idempotencyKey: null,
              draws: [],
            });
            throw new Error("rolled back");
          }),
        ).toThrow("rolled back");
        expect(account.row()).toEqual(before);
      });
      expect(account.row()).toEqual(before);
    });
  });

  it("exists without a query once seen outside a transaction, and not on the word of an open one", async () => {
    const accountId = `exists-${crypto.randomUUID().slice(0, 8)}`;
    const ledger = env.CREDIT_LEDGER.getByName(accountId);
    await runInDurableObject(ledger, (_instance: unknown, state: DurableObjectState) => {
      const counted = countingAccountReads(state.storage.sql);
      const account = new LedgerAccount(counted.sql, accountId);
      const transactions = new WriteBackTransactions((body) => state.storage.transactionSync(body), [account.memo]);
      expect(account.exists()).toBe(false);
      // Created inside a transaction that rolls back: seen there, but never taken as known.
      expect(() =>
        transactions.run(() => {
          account.insert(accountId, "x", 0, Date.now());
          expect(account.exists()).toBe(true);
          throw new Error("rolled back");
        }),
      ).toThrow("rolled back");
      expect(account.exists()).toBe(false);
      transactions.run(() => account.insert(accountId, "x", 0, Date.now()));
      expect(account.exists()).toBe(true);
      const reads = counted.reads();
      expect(account.exists()).toBe(true);
      expect(counted.reads()).toBe(reads);
    });
  });
});
