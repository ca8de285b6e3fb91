// Entry ids carry their seq (src/credits/entry-ids.ts): a new entry writes one row, found by
// primary key; ids that do not (older ledgers', given ones) are found by a partial index.
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { LEGACY_ENTRY_ID, newEntryId, seqOfEntryId } from "../../src/credits/entry-ids";
import { Journal, noChange } from "../../src/credits/journal";
import { LedgerAccount } from "../../src/credits/ledger-account";
import { hasErrorCode } from "../../src/platform/errors";

const sqlOf = (state: DurableObjectState) => state.storage.sql;

/** `sql` that keeps every cursor it opens, and the rows they wrote. */
function countingSql(sql: SqlStorage): { sql: SqlStorage; rowsWritten: () => number } {
  const cursors: SqlStorageCursor<Record<string, SqlStorageValue>>[] = [];
  const counting = {
    exec(query: string, ...bindings: unknown[]) {
      const cursor = sql.exec(query, ...bindings);
      cursors.push(cursor);
      return cursor;
    },
    Cursor: sql.Cursor,
    Statement: sql.Statement,
  };
  return { sql: counting as unknown as SqlStorage, rowsWritten: () => cursors.reduce((sum, cursor) => sum + cursor.rowsWritten, 0) };
}

async function debitedAccount(prefix: string) {
  const accountId = `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
  const ledger = env.CREDIT_LEDGER.getByName(accountId);
  await ledger.createAccount({ accountId, name: prefix });
  await ledger.grant({ accountId, amount: 100, reason: "g", idempotencyKey: "g" });
  const debited = await ledger.debit({ accountId, amount: 10, reason: "d", idempotencyKey: "d" });
  if (!debited.ok) throw new Error("debit failed");
  return { accountId, ledger, entry: debited.entry };
}

describe("entry ids", () => {
  it("carry the seq in the public id format, with 40 random bits", () => {
    const id = newEntryId(0x1234);
    expect(id).toMatch(/^e_0000001234[0-9a-f]{10}$/);
    expect(seqOfEntryId(id)).toBe(0x1234);
    expect(newEntryId(0x1234)).not.toBe(id);
    expect(seqOfEntryId("h_00000012340123456789")).toBeUndefined();
    expect(seqOfEntryId("e_0000001234")).toBeUndefined();
    // Past 10 hex digits of seq an id is wholly random: the legacy index takes it.
    expect(newEntryId(16 ** 10)).toMatch(/^e_[0-9a-f]{20}$/);
  });

  it("a new entry writes one row; an id that does not carry its seq also writes its index row", async () => {
    const { accountId, ledger, entry } = await debitedAccount("one-row");
    expect(entry.entryId.slice(2, 12)).toBe(entry.seq.toString(16).padStart(10, "0"));
    await runInDurableObject(ledger, (_instance: unknown, state: DurableObjectState) => {
      const draft = { kind: "debit" as const, amount: 0, change: noChange(), reason: "probe", idempotencyKey: null, draws: [] };
      const counted = countingSql(sqlOf(state));
      const journal = new Journal(counted.sql, new LedgerAccount(counted.sql, accountId));
      const before = counted.rowsWritten();
      const appended = journal.append(Date.now(), draft);
      expect(seqOfEntryId(appended.entryId)).toBe(appended.seq);
      expect(counted.rowsWritten() - before).toBe(1);

      const given = "e_ffffffffff0123456789";
      const middle = counted.rowsWritten();
      journal.append(Date.now(), { ...draft, entryId: given });
      expect(counted.rowsWritten() - middle).toBe(2);
      expect(journal.get(given)).toMatchObject({ entryId: given, seq: appended.seq + 1 });
      // A given id that is taken is refused before anything is written.
      const refused = (() => {
        try {
          journal.append(Date.now(), { ...draft, entryId: appended.entryId });
        } catch (error) {
          return error;
        }
      })();
      expect(hasErrorCode(refused, "INTERNAL")).toBe(true);
      expect(journal.find(appended.entryId)).toMatchObject({ seq: appended.seq });
    });
  });

  it("are looked up by primary key or by the legacy index, never by a scan", async () => {
    const { ledger } = await debitedAccount("plans");
    const plans = await runInDurableObject(ledger, (_instance: unknown, state: DurableObjectState) => {
      const plan = (query: string, ...bindings: unknown[]) =>
        sqlOf(state)
          .exec<{ detail: string }>(`EXPLAIN QUERY PLAN ${query}`, ...bindings)
          .toArray()
          .map((row) => row.detail);
      return {
        bySeq: plan("SELECT body FROM entries WHERE seq = ? AND entry_id = ?", 2, "e_00000000020123456789"),
        legacy: plan(`SELECT body FROM entries WHERE entry_id = ? AND ${LEGACY_ENTRY_ID}`, "e_ffffffffff0123456789"),
      };
    });
    expect(plans.bySeq).toEqual([expect.stringMatching(/^SEARCH entries USING INTEGER PRIMARY KEY \(rowid=\?\)$/)]);
    expect(plans.legacy).toEqual([expect.stringMatching(/^SEARCH entries USING INDEX entries_by_legacy_id \(entry_id=\?\)$/)]);
  });

  it("refunds by a new id; an id of the right shape that is not here is NOT_FOUND", async () => {
    const { accountId, ledger, entry } = await debitedAccount("refund-new");
    expect(await ledger.refund({ accountId, entryId: entry.entryId, amount: 3, reason: "r", idempotencyKey: "r1" })).toMatchObject({
      ok: true,
      entry: { refundOf: entry.entryId, amount: 3 },
    });
    // The right seq with other random bits (an id of another account), a seq not yet reached, a wholly random id.
    const otherBits = `${entry.entryId.slice(0, 12)}${entry.entryId[12] === "0" ? "1" : "0"}${entry.entryId.slice(13)}`;
    for (const [i, entryId] of [otherBits, "e_00000fffff0123456789", "e_0123456789abcdef0123"].entries()) {
      const refused = await ledger.refund({ accountId, entryId, reason: "r", idempotencyKey: `x${i}` }).catch((error: unknown) => error);
      expect(hasErrorCode(refused, "NOT_FOUND")).toBe(true);
    }
    expect((await ledger.audit({ accountId })).violations).toEqual([]);
  });
});
