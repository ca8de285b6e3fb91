import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { CreditLedgerDO } from "../../src/credits/ledger-do";
import { rowsWrittenBy } from "../fixtures/rows-written";

/** A fixed start far from any day boundary, so caps fall in one UTC day. */
const T0 = Date.UTC(2030, 0, 15, 12, 0, 0);

let counter = 0;

/** Lets the set-up's last commit settle, so the next call finds no write in flight and runs at once. */
const commitsSettled = () => new Promise((resolve) => setTimeout(resolve, 50));

/** A fresh account on the test object, its clock at T0, funded with `amount`. */
async function fundedAccount(name: string, amount: number) {
  const accountId = `gc-${++counter}`;
  const stub = env.TEST_CREDIT_LEDGER.getByName(accountId);
  await stub.setClock(T0);
  await stub.createAccount({ accountId, name });
  await stub.grant({ accountId, amount, reason: "top-up", idempotencyKey: "g1" });
  return { accountId, stub };
}

describe("CreditLedgerDO group commit", () => {
  it("runs 16 concurrent keyed debits in two commits: each is exact, the grant and the key's spend row are written once per commit", async () => {
    const { accountId, stub } = await fundedAccount("Group commit", 1_000);
    const { keyId } = await stub.createKey({ accountId, name: "k", scopes: ["*"], spendCap: { perDay: 20 } });
    await commitsSettled();
    const { result, rows } = await runInDurableObject(stub, (instance: CreditLedgerDO, state: DurableObjectState) =>
      rowsWrittenBy(state, () =>
        // Issued together: the first runs at once; the other 15 wait for its commit and share the next.
        Promise.allSettled(
          Array.from({ length: 16 }, (_, i) => instance.debit({ accountId, amount: 2, reason: "call", keyId, idempotencyKey: `d${i}` })),
        ),
      ),
    );
    const answers = result.map((outcome) => (outcome.status === "fulfilled" ? (outcome.value.ok ? "ok" : outcome.value.code) : "threw"));
    // The day cap of 20 admits exactly 10 debits of 2, in arrival order.
    expect(answers).toEqual([...Array(10).fill("ok"), ...Array(6).fill("SPEND_CAP_EXCEEDED")]);
    expect(rows.get("grants")).toBe(2);
    expect(rows.get("key_spend_now")).toBe(2);
    // One row per admitted debit: no index row.
    expect(rows.get("entries")).toBe(10);
    const balance = await stub.balance({ accountId });
    expect(balance).toMatchObject({ available: 980, consumed: 20 });
    expect((await stub.keySpend({ accountId, keyId })).day.spent).toBe(20);
    expect((await stub.audit({ accountId })).ok).toBe(true);
    // A replay of a debit that shared a batch returns its first answer and writes nothing.
    const replay = await stub.debit({ accountId, amount: 2, reason: "call", keyId, idempotencyKey: "d3" });
    expect(replay.ok && replay.balance.available).toBe(1_000 - 8);
  });

  it("fails a call that throws inside a batch alone: the calls before and after it are answered and booked exactly", async () => {
    const { accountId, stub } = await fundedAccount("Group commit", 10);
    const outcomes = await runInDurableObject(stub, (instance: CreditLedgerDO) =>
      Promise.allSettled([
        instance.debit({ accountId, amount: 1, reason: "first", idempotencyKey: "a" }),
        instance.debit({ accountId, amount: 4, reason: "second", idempotencyKey: "b" }),
        // A refund of an entry that does not exist throws NOT_FOUND inside the batch.
        instance.refund({ accountId, entryId: "e_00000000000000000000", reason: "bad", idempotencyKey: "c" }),
        instance.debit({ accountId, amount: 5, reason: "third", idempotencyKey: "d" }),
        instance.debit({ accountId, amount: 1, reason: "fourth", idempotencyKey: "e" }),
      ]),
    );
    expect(outcomes.map((o) => (o.status === "fulfilled" ? (o.value.ok ? "ok" : o.value.code) : "threw"))).toEqual([
      "ok",
      "ok",
      "threw",
      "ok",
      "INSUFFICIENT_CREDITS",
    ]);
    expect(await stub.balance({ accountId })).toMatchObject({ available: 0, consumed: 10 });
    expect((await stub.audit({ accountId })).ok).toBe(true);
  });

  it("keeps a key's spend counters exact through a crash when it has caps; without caps, a crash loses at most the last second of them (none after a usage report)", async () => {
    const funded = await fundedAccount("Crash", 1_000);
    const accountId = funded.accountId;
    let stub = funded.stub;
    const capped = (await stub.createKey({ accountId, name: "capped", scopes: ["*"], spendCap: { perDay: 500 } })).keyId;
    const uncapped = (await stub.createKey({ accountId, name: "uncapped", scopes: ["*"] })).keyId;
    const crash = async () => {
      await stub.abort().catch(() => {});
      stub = env.TEST_CREDIT_LEDGER.getByName(accountId);
    };
    const spent = async (keyId: string) => (await stub.keySpend({ accountId, keyId })).day.spent;

    await stub.debit({ accountId, amount: 3, reason: "call", keyId: capped, idempotencyKey: "c1" });
    await stub.debit({ accountId, amount: 4, reason: "call", keyId: uncapped, idempotencyKey: "u1" });
    expect(await spent(uncapped)).toBe(4);
    await crash();
    // The entries are durable either way; the uncapped key's counter of the last second is gone.
    expect(await stub.balance({ accountId })).toMatchObject({ consumed: 7 });
    expect(await spent(capped)).toBe(3);
    expect(await spent(uncapped)).toBe(0);

    await stub.debit({ accountId, amount: 5, reason: "call", keyId: uncapped, idempotencyKey: "u2" });
    // Past the roll-up's second, the counter is written.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    await crash();
    expect(await spent(uncapped)).toBe(5);

    // A usage report brings the counters up to date with the rollups, at once.
    await stub.debit({ accountId, amount: 6, reason: "call", keyId: uncapped, idempotencyKey: "u3" });
    await stub.usage({ accountId, range: "24h", groupBy: "key" });
    await crash();
    expect(await spent(uncapped)).toBe(11);
    expect((await stub.audit({ accountId })).ok).toBe(true);
  });

  it("counts the rows of a call that ran in a shared batch under its own method", async () => {
    const { accountId, stub } = await fundedAccount("Attribution", 1_000);
    const rowsOf = async (method: string) => {
      expect(await env.METRICS_PROBE.getByName("pusher").pushMetrics()).toBe(true);
      const report = await env.ADMIN.costReport({ range: "1h" });
      const rows = report.byMethod.filter(
        (row) => row.surface === "object" && row.kind.includes("CreditLedgerDO") && row.method === method,
      );
      return rows.reduce((total, row) => total + row.rowsWritten, 0);
    };
    const before = await rowsOf("grant");
    await commitsSettled();
    await runInDurableObject(stub, (instance: CreditLedgerDO) =>
      Promise.all([
        // The first runs at once; the grant and the debits after it wait for its commit and share the next.
        instance.debit({ accountId, amount: 1, reason: "first", idempotencyKey: "d0" }),
        instance.grant({ accountId, amount: 50, reason: "second", idempotencyKey: "g2" }),
        ...Array.from({ length: 4 }, (_, i) => instance.debit({ accountId, amount: 1, reason: "call", idempotencyKey: `d${i + 1}` })),
      ]),
    );
    // The grant's own rows (its grant row and primary key, its entry, its idempotency record) are the grant's,
    // not the first debit's, whose commit its batch waited for.
    expect((await rowsOf("grant")) - before).toBeGreaterThanOrEqual(4);
  });
});
