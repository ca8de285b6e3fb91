// A commit or void keeps its idempotency record in the row of the hold it settles (schema step
// 11): the settle writes that row once, with the record, and no record of its own in the
// idempotency table. A key is still one key across the account: replays return the first
// answer, and reusing the key for anything else is CONFLICT, whichever place keeps it.
import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { CreditLedgerDO } from "../../src/credits/ledger-do";
import { codeOf } from "../fixtures/errors";
import { rowsWrittenBy } from "../fixtures/rows-written";

let counter = 0;

async function withHold(name: string, amount = 30) {
  const accountId = `settle-rec-${++counter}-${crypto.randomUUID().slice(0, 6)}`;
  const ledger = env.CREDIT_LEDGER.getByName(accountId);
  await ledger.createAccount({ accountId, name });
  await ledger.grant({ accountId, amount: 100, reason: "g", idempotencyKey: "g" });
  const hold = await ledger.reserve({ accountId, amount, ttlMs: 600_000, idempotencyKey: "h" });
  if (!hold.ok) throw new Error("reserve failed");
  return { accountId, ledger, holdId: hold.holdId };
}

const recordsInTable = (stub: DurableObjectStub, key: string) =>
  runInDurableObject(
    stub,
    (_instance: unknown, state: DurableObjectState) =>
      state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM idempotency WHERE idempotency_key = ?", key).one().n,
  );

describe("a settle's idempotency record in its hold's row", () => {
  it("a keyed commit writes the hold's row and its key's index entry, and no idempotency record", async () => {
    const { accountId, ledger, holdId } = await withHold("rows");
    const { result, rows } = await runInDurableObject(ledger, (instance: CreditLedgerDO, state: DurableObjectState) =>
      rowsWrittenBy(state, () => instance.commit({ accountId, holdId, amount: 12, idempotencyKey: "c" })),
    );
    expect(result).toMatchObject({ ok: true, entry: { kind: "commit", amount: 12 } });
    expect(rows.get("holds")).toBe(2);
    expect(rows.get("idempotency") ?? 0).toBe(0);
    expect(await recordsInTable(ledger, "c")).toBe(0);
  });

  it("replays the first answer unchanged, also after eviction; other parameters or another call with the key are CONFLICT", async () => {
    const { accountId, ledger, holdId } = await withHold("replay");
    const first = await ledger.commit({ accountId, holdId, amount: 12, capAtHold: true, idempotencyKey: "c" });
    await ledger.debit({ accountId, amount: 5, reason: "later", idempotencyKey: "d" });
    await evictDurableObject(ledger);
    expect(await ledger.commit({ accountId, holdId, amount: 12, capAtHold: true, idempotencyKey: "c" })).toEqual(first);
    expect(await codeOf(ledger.commit({ accountId, holdId, amount: 13, capAtHold: true, idempotencyKey: "c" }))).toBe("CONFLICT");
    expect(await codeOf(ledger.debit({ accountId, amount: 1, reason: "reuse", idempotencyKey: "c" }))).toBe("CONFLICT");
    expect(await codeOf(ledger.void({ accountId, holdId, idempotencyKey: "c" }))).toBe("CONFLICT");
    // A key the table keeps (the debit's) cannot settle a hold either.
    const other = await ledger.reserve({ accountId, amount: 10, ttlMs: 600_000, idempotencyKey: "h2" });
    if (!other.ok) throw new Error("reserve failed");
    expect(await codeOf(ledger.commit({ accountId, holdId: other.holdId, amount: 1, idempotencyKey: "d" }))).toBe("CONFLICT");
    expect(await ledger.hold({ accountId, holdId: other.holdId })).toMatchObject({ status: "open" });
    // Nothing above changed anything: one commit of 12, one debit of 5, one hold of 10 open.
    expect(await ledger.balance({ accountId })).toMatchObject({ available: 73, held: 10, consumed: 17 });
    expect((await ledger.audit({ accountId })).violations).toEqual([]);
  });

  it("a void keeps its record the same way; an answer that settles nothing goes to the table", async () => {
    const { accountId, ledger, holdId } = await withHold("void");
    const voided = await ledger.void({ accountId, holdId, idempotencyKey: "v" });
    expect(voided).toMatchObject({ ok: true, entry: { kind: "void" } });
    expect(await recordsInTable(ledger, "v")).toBe(0);
    expect(await ledger.void({ accountId, holdId, idempotencyKey: "v" })).toEqual(voided);
    // A second settle with a new key finds the hold closed: that answer is kept in the table and replays too.
    const late = await ledger.commit({ accountId, holdId, amount: 5, idempotencyKey: "late" });
    expect(late).toMatchObject({ ok: false, code: "HOLD_NOT_OPEN", status: "voided" });
    expect(await recordsInTable(ledger, "late")).toBe(1);
    expect(await ledger.commit({ accountId, holdId, amount: 5, idempotencyKey: "late" })).toEqual(late);
    expect(await ledger.balance({ accountId })).toMatchObject({ available: 100, held: 0 });
  });

  it("settles sent 20 times at once with one key are booked once and all get the first answer", async () => {
    const { accountId, ledger, holdId } = await withHold("concurrent");
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => ledger.commit({ accountId, holdId, amount: 7, idempotencyKey: "same" })),
    );
    expect(new Set(answers.map((answer) => JSON.stringify(answer))).size).toBe(1);
    expect(answers[0]).toMatchObject({ ok: true });
    expect(await ledger.balance({ accountId })).toMatchObject({ available: 93, held: 0, consumed: 7 });
  });

  it("travels with a backup: a restored ledger still replays its settles", async () => {
    const { accountId, ledger, holdId } = await withHold("restore");
    const first = await ledger.commit({ accountId, holdId, amount: 9, idempotencyKey: "c" });
    const dump = await ledger.exportTables();
    await runInDurableObject(ledger, (_instance: unknown, state: DurableObjectState) => state.storage.deleteAll());
    await evictDurableObject(ledger);
    await ledger.importTables(dump);
    expect(await ledger.commit({ accountId, holdId, amount: 9, idempotencyKey: "c" })).toEqual(first);
    expect(await codeOf(ledger.debit({ accountId, amount: 1, reason: "reuse", idempotencyKey: "c" }))).toBe("CONFLICT");
  });
});
