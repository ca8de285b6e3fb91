import { describe, expect, it } from "vitest";
import { TransactionBatches } from "../../src/platform/transaction-batches";
import { TransactionMemo, WriteBackRows, WriteBackTransactions } from "../../src/platform/write-back";

type Counter = { id: string; value: number };

/**
 * A table of counters in memory with the storage's transaction rules: a transaction (nested ones
 * too) that throws leaves the table as it was. `writes` counts the rows written, as Cloudflare does.
 */
function harness() {
  const table = new Map<string, number>([
    ["a", 0],
    ["b", 0],
  ]);
  const store = { table, writes: 0, failWrites: false, durable: [] as { resolve: () => void; reject: (error: Error) => void }[] };
  const storage = <T>(body: () => T): T => {
    const before = new Map(table);
    try {
      return body();
    } catch (error) {
      table.clear();
      for (const [key, value] of before) table.set(key, value);
      throw error;
    }
  };
  const rows = new WriteBackRows<Counter>({
    load: (id) => (table.has(id) ? { id, value: table.get(id)! } : undefined),
    store: (id, row) => {
      if (store.failWrites) throw new Error("disk full");
      store.writes += 1;
      table.set(id, row.value);
    },
  });
  const transactions = new WriteBackTransactions(storage, [rows]);
  const transaction = <T>(body: () => T) => transactions.run(body);
  const add = (id: string, n: number) => rows.set(id, { id, value: rows.get(id)!.value + n });
  /** Adds `n` and returns the value it reads back, as a body that decides from what it sees. */
  const addAndRead = (id: string, n: number) => {
    add(id, n);
    return rows.get(id)!.value;
  };
  const batches = new TransactionBatches({
    transaction,
    durable: () => new Promise<void>((resolve, reject) => store.durable.push({ resolve, reject })),
  });
  /** Makes the commit in flight durable (or fails it), then lets the next batch run. */
  const settleWrite = async (fail = false) => {
    const write = store.durable.shift()!;
    if (fail) write.reject(new Error("commit lost"));
    else write.resolve();
    await new Promise((resolve) => setTimeout(resolve, 0));
  };
  return { store, rows, transaction, add, addAndRead, batches, settleWrite };
}

describe("WriteBackRows in WriteBackTransactions", () => {
  it("writes a row changed many times in one transaction once, at commit, and reads see every change before it", () => {
    const { store, transaction, add, rows } = harness();
    const seen = transaction(() => {
      for (let i = 0; i < 10; i++) add("a", 1);
      add("b", 5);
      return rows.get("a")!.value;
    });
    expect(seen).toBe(10);
    expect(store.table.get("a")).toBe(10);
    expect(store.table.get("b")).toBe(5);
    expect(store.writes).toBe(2);
  });

  it("writes nothing for rows only read, and reads storage directly outside a transaction", () => {
    const { store, transaction, rows } = harness();
    transaction(() => rows.get("a"));
    expect(store.writes).toBe(0);
    store.table.set("a", 7);
    // Nothing cached outside: a change under the cache is seen at once.
    expect(rows.get("a")!.value).toBe(7);
    expect(() => rows.set("a", { id: "a", value: 1 })).toThrow(/outside a transaction/);
  });

  it("rolls memory back with a nested transaction that throws, and keeps what the outer one did", () => {
    const { store, transaction, add } = harness();
    transaction(() => {
      add("a", 1);
      expect(() =>
        transaction(() => {
          add("a", 100);
          add("b", 100);
          throw new Error("refused");
        }),
      ).toThrow("refused");
      add("a", 1);
    });
    expect(store.table.get("a")).toBe(2);
    expect(store.table.get("b")).toBe(0);
    expect(store.writes).toBe(1);
  });

  it("writes nothing and caches nothing when the outermost transaction throws", () => {
    const { store, transaction, add, rows } = harness();
    expect(() =>
      transaction(() => {
        add("a", 3);
        throw new Error("boom");
      }),
    ).toThrow("boom");
    expect(store.table.get("a")).toBe(0);
    expect(store.writes).toBe(0);
    expect(transaction(() => rows.get("a")!.value)).toBe(0);
  });

  it("overlays cached rows on a query read from storage, by their current values", () => {
    const { transaction, add, rows, store } = harness();
    store.table.set("c", 0);
    const positive = transaction(() => {
      add("a", 1);
      add("c", 2);
      const fromStorage = [...store.table].filter(([, value]) => value > 0).map(([id, value]) => ({ id, value }));
      return rows
        .overlay(
          fromStorage,
          (row) => row.id,
          (row) => row.value > 0,
        )
        .map((row) => `${row.id}=${row.value}`);
    });
    expect(positive.sort()).toEqual(["a=1", "c=2"]);
  });
});

describe("TransactionBatches", () => {
  it("runs a lone call at once, and the calls made while its commit is in flight in one transaction with one write per row", async () => {
    const { store, batches, add, settleWrite } = harness();
    const first = batches.run(() => add("a", 1));
    expect(store.table.get("a")).toBe(1);
    expect(store.writes).toBe(1);
    await first;
    const later = Array.from({ length: 16 }, () => batches.run(() => add("a", 1)));
    expect(store.table.get("a")).toBe(1);
    await settleWrite();
    await Promise.all(later);
    expect(store.table.get("a")).toBe(17);
    expect(store.writes).toBe(2);
  });

  it("runs the calls handed over together in one transaction, even with no commit in flight", async () => {
    const { store, batches, add } = harness();
    const calls = batches.together(() => Array.from({ length: 5 }, () => batches.run(() => add("a", 1))));
    // Nothing ran while they were handed over; all five ran in one transaction when `together` ended.
    expect(store.table.get("a")).toBe(5);
    expect(store.writes).toBe(1);
    await Promise.all(calls);
  });

  it("answers each call of a batch with its own result, in arrival order, and rejects only the one that threw", async () => {
    const { store, batches, add, addAndRead, settleWrite } = harness();
    await batches.run(() => add("b", 1));
    const calls = [
      batches.run(() => addAndRead("a", 1)),
      batches.run(() => {
        add("a", 10);
        throw new Error("over the limit");
      }),
      batches.run(() => addAndRead("a", 1)),
    ];
    const settledCalls = Promise.allSettled(calls);
    await settleWrite();
    const outcomes = await settledCalls;
    expect(outcomes.map((o) => (o.status === "fulfilled" ? o.value : (o.reason as Error).message))).toEqual([1, "over the limit", 2]);
    expect(store.table.get("a")).toBe(2);
  });

  it("rejects every call of a batch whose commit fails, changes nothing, and runs the next call afresh", async () => {
    const { store, batches, add, addAndRead, settleWrite } = harness();
    await batches.run(() => add("b", 1));
    const calls = [batches.run(() => add("a", 1)), batches.run(() => add("a", 1))];
    store.failWrites = true;
    const settledCalls = Promise.allSettled(calls);
    await settleWrite();
    const outcomes = await settledCalls;
    expect(outcomes.map((o) => o.status)).toEqual(["rejected", "rejected"]);
    expect(store.table.get("a")).toBe(0);
    store.failWrites = false;
    await settleWrite();
    expect(await batches.run(() => addAndRead("a", 1))).toBe(1);
  });

  it("rejects the calls queued behind a commit that fails to become durable, without running them", async () => {
    const { store, batches, add, settleWrite } = harness();
    await batches.run(() => add("a", 1));
    const queued = batches.run(() => add("a", 1)).catch((error: Error) => error.message);
    await settleWrite(true);
    expect(await queued).toBe("commit lost");
    expect(store.table.get("a")).toBe(1);
    // The next call runs again at once.
    await batches.run(() => add("a", 1));
    expect(store.table.get("a")).toBe(2);
  });
});

describe("TransactionMemo", () => {
  it("reads once per transaction until forgotten, never keeps a value outside one, and forgets on a rolled-back level", () => {
    const memo = new TransactionMemo<number>();
    const transactions = new WriteBackTransactions((body) => body(), [memo]);
    let loads = 0;
    const read = () => memo.get("k", () => ++loads);
    expect(read()).toBe(1);
    expect(read()).toBe(2);
    transactions.run(() => {
      expect(read()).toBe(3);
      expect(read()).toBe(3);
      memo.forget();
      expect(read()).toBe(4);
      expect(() =>
        transactions.run(() => {
          throw new Error("rolled back");
        }),
      ).toThrow("rolled back");
      expect(read()).toBe(5);
    });
    expect(read()).toBe(6);
  });

  it("keeps what a write set only inside a transaction, and says when one is open", () => {
    const memo = new TransactionMemo<number>();
    const transactions = new WriteBackTransactions((body) => body(), [memo]);
    let loads = 0;
    const read = () => memo.get("k", () => ++loads);
    memo.set("k", 100);
    expect(memo.inTransaction).toBe(false);
    expect(read()).toBe(1);
    transactions.run(() => {
      expect(memo.inTransaction).toBe(true);
      memo.set("k", 100);
      expect(read()).toBe(100);
      expect(() =>
        transactions.run(() => {
          memo.set("k", 200);
          throw new Error("rolled back");
        }),
      ).toThrow("rolled back");
      expect(read()).toBe(2);
    });
    expect(memo.inTransaction).toBe(false);
    expect(read()).toBe(3);
  });
});
