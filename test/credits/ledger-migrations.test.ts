import { codeOf } from "../fixtures/errors";
// The ledger's schema steps on data written before them: a backup taken at version 1 (with a
// `consumptions` table, hold allocations as rows, a spend row per key and period, rollups
// without tokens, and entry ids that do not carry their seq) restores into today's schema, and
// what it says about refunds, holds and caps still holds.
import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { CREDIT_LEDGER_MIGRATIONS } from "../../src/credits/ledger-tables";
import { applyMigrations, type DumpTable } from "../../src/platform/migrations";
import type { TestCreditLedgerDO } from "../fixtures/test-credit-ledger-do";
import { withLegacyEntryIds } from "../fixtures/legacy-entry-ids";

const TOKEN_COLUMNS = ["input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens"];

/** Today's dump of `tables`, rewritten as version 1 stored it. */
function asVersionOne(tables: DumpTable[], consumptions: DumpTable["rows"]): DumpTable[] {
  const holds = tables.find((table) => table.name === "holds")!;
  const column = holds.columns.indexOf("allocations");
  // Version 1 kept an open hold's allocations as rows of their own.
  const allocations: DumpTable = {
    name: "hold_allocations",
    columns: ["hold_id", "ord", "grant_id", "amount"],
    rows: holds.rows.flatMap((row) =>
      row[column] === null
        ? []
        : (JSON.parse(String(row[column])) as { grantId: string | null; amount: number }[]).map((part, ord) => [
            row[holds.columns.indexOf("hold_id")]!,
            ord,
            part.grantId,
            part.amount,
          ]),
    ),
  };
  const withoutColumn = (table: DumpTable) => ({
    ...table,
    columns: table.columns.filter((_, i) => i !== column),
    rows: table.rows.map((row) => row.filter((_, i) => i !== column)),
  });
  // Version 1 rolled usage up with each entry: it had no roll-up checkpoint.
  return [...tables.filter((table) => table.name !== "rollup_checkpoint"), allocations].map((table) => {
    if (table.name === "holds") return withoutColumn(table);
    if (table.name === "key_spend_now") {
      // A row per family and period, past periods included.
      const rows = table.rows.flatMap(([family, day, dayAmount, month, monthAmount]) => [
        [family!, "d:2020-01-01", 999],
        [family!, `d:${day}`, dayAmount!],
        [family!, `m:${month}`, monthAmount!],
      ]);
      return { name: "key_spend", columns: ["family_id", "period", "amount"], rows };
    }
    if (table.name === "refunded_parts") {
      return { name: "consumptions", columns: ["entry_id", "ord", "grant_id", "amount", "refunded"], rows: consumptions };
    }
    if (table.name !== "usage_rollups") return table;
    const keep = table.columns.map((column, i) => [column, i] as const).filter(([column]) => !TOKEN_COLUMNS.includes(column));
    return { name: table.name, columns: keep.map(([column]) => column), rows: table.rows.map((row) => keep.map(([, i]) => row[i]!)) };
  });
}

describe("CreditLedgerDO schema steps", () => {
  it("restores a version-1 backup: refunded consumptions become refunded parts, the rest stays refundable", async () => {
    const accountId = `migrate-${crypto.randomUUID().slice(0, 8)}`;
    const ledger = env.CREDIT_LEDGER.getByName(accountId);
    await ledger.createAccount({ accountId, name: "Migrate" });
    const granted = await ledger.grant({ accountId, amount: 100, reason: "g", idempotencyKey: "g" });
    const debited = await ledger.debit({ accountId, amount: 10, reason: "d", idempotencyKey: "d" });
    if (!debited.ok) throw new Error("debit failed");
    const debitId = debited.entry.entryId;
    expect(await ledger.refund({ accountId, entryId: debitId, amount: 4, reason: "r", idempotencyKey: "r1" })).toMatchObject({ ok: true });
    const open = await ledger.reserve({ accountId, amount: 20, ttlMs: 60_000, reason: "h", idempotencyKey: "h" });
    const settled = await ledger.reserve({ accountId, amount: 5, ttlMs: 60_000, reason: "h2", idempotencyKey: "h2" });
    if (!open.ok || !settled.ok) throw new Error("reserve failed");
    await ledger.void({ accountId, holdId: settled.holdId });
    const key = await ledger.createKey({ accountId, name: "capped", scopes: ["*"], spendCap: { perDay: 30 } });
    expect(await ledger.debit({ accountId, keyId: key.keyId, amount: 12, reason: "k", idempotencyKey: "k1" })).toMatchObject({ ok: true });

    // A report rolls every entry up first, so the dump's rollups are complete, as version 1's always were.
    await ledger.usage({ accountId, range: "24h", groupBy: "day" });
    const dump = await ledger.exportTables();
    expect(dump.versions["credit-ledger"]).toBeGreaterThanOrEqual(3);
    expect(dump.tables.find((table) => table.name === "refunded_parts")!.rows).toEqual([[debitId, 0, 4]]);
    // Version 1's entry ids were wholly random; it kept every part of every debit, refunded or not, in `consumptions`.
    const legacy = withLegacyEntryIds(dump.tables);
    const entryId = legacy.legacyId(debitId);
    const old = {
      ...dump,
      versions: { ...dump.versions, "credit-ledger": 1 },
      tables: asVersionOne(legacy.tables, [[entryId, 0, granted.grantId!, 10, 4]]),
    };

    await runInDurableObject(ledger, (_instance: unknown, state: DurableObjectState) => state.storage.deleteAll());
    await evictDurableObject(ledger);
    const restored = await ledger.importTables(old);
    expect(restored.rows).toMatchObject({ consumptions: 1, refunded_parts: 1, hold_allocations: 1, holds: 2, key_spend: 3 });
    // The key's spend of today came through (the stale day did not), and its cap still holds.
    expect((await ledger.keySpend({ accountId, keyId: key.keyId })).day).toMatchObject({ spent: 12, cap: 30 });
    const over = await ledger.debit({ accountId, keyId: key.keyId, amount: 19, reason: "k", idempotencyKey: "k2" });
    expect(over).toMatchObject({ ok: false, code: "SPEND_CAP_EXCEEDED" });
    expect(await ledger.debit({ accountId, keyId: key.keyId, amount: 18, reason: "k", idempotencyKey: "k3" })).toMatchObject({ ok: true });
    expect((await ledger.keySpend({ accountId, keyId: key.keyId })).day).toMatchObject({ spent: 30, cap: 30 });
    expect((await ledger.exportTables()).tables.find((table) => table.name === "refunded_parts")!.rows).toEqual([[entryId, 0, 4]]);

    const rest = await ledger.refund({ accountId, entryId, reason: "the rest", idempotencyKey: "r2" });
    expect(rest).toMatchObject({ ok: true, entry: { amount: 6 } });
    expect(await ledger.refund({ accountId, entryId, amount: 1, reason: "too much", idempotencyKey: "r3" })).toMatchObject({
      ok: false,
      code: "REFUND_EXCEEDS_TAKEN",
      refundable: 0,
    });
    expect(await ledger.balance({ accountId })).toMatchObject({ available: 50, held: 20, consumed: 30 });
    // The open hold's allocation came through: committing it takes the credit from its grant.
    expect(await ledger.commit({ accountId, holdId: open.holdId, amount: 15, idempotencyKey: "c" })).toMatchObject({ ok: true });
    expect(await ledger.balance({ accountId })).toMatchObject({ available: 55, held: 0, consumed: 45 });
    expect((await ledger.audit({ accountId })).violations).toEqual([]);
    expect(await ledger.verifyChain({ accountId })).toMatchObject({ ok: true });
    const usage = await ledger.usage({ accountId, range: "24h", groupBy: "operation" });
    const tokens = { inputTokens: 0, outputTokens: 0, cachedTokens: 0, cacheWriteTokens: 0 };
    expect(usage.items).toEqual([
      { group: "debit", amount: 30, count: 3, ...tokens },
      { group: "hold", amount: 15, count: 1, ...tokens },
    ]);
  });
});

describe("entry times", () => {
  const T0 = Date.UTC(2031, 0, 1);
  const indexes = (stub: DurableObjectStub) =>
    runInDurableObject(stub, (_instance: unknown, state: DurableObjectState) =>
      state.storage.sql
        .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'entries'")
        .toArray()
        .map((row) => row.name),
    );

  it("never go backwards, so times are found by bisection with no index over them", async () => {
    const accountId = `times-${crypto.randomUUID().slice(0, 8)}`;
    const ledger = env.TEST_CREDIT_LEDGER.getByName(accountId);
    await ledger.setClock(T0);
    await ledger.createAccount({ accountId, name: "Times" });
    for (const [i, at] of [T0 + 1_000, T0 + 2_000, T0 + 2_000, T0 + 5_000].entries()) {
      await ledger.setClock(at);
      await ledger.grant({ accountId, amount: 10, reason: `g${i}`, idempotencyKey: `g${i}` });
    }
    // A clock set back: the entry is stamped with the last entry's time, not before it.
    await ledger.setClock(T0 + 3_000);
    const late = await ledger.grant({ accountId, amount: 10, reason: "late", idempotencyKey: "late" });
    expect(late.at).toBe(T0 + 5_000);
    expect(await indexes(ledger)).not.toContain("entries_by_time");

    expect(await ledger.balance({ accountId, at: T0 + 999 })).toMatchObject({ granted: 0 });
    expect(await ledger.balance({ accountId, at: T0 + 2_000 })).toMatchObject({ granted: 30 });
    expect(await ledger.balance({ accountId, at: T0 + 4_999 })).toMatchObject({ granted: 30 });
    expect(await ledger.balance({ accountId, at: T0 + 5_000 })).toMatchObject({ granted: 50 });
    const seqs = async (query: { since?: number; until?: number; cursor?: string; limit?: number }) =>
      (await ledger.entries({ accountId, ...query })).items.map((entry) => entry.seq);
    expect(await seqs({ since: T0 + 2_000, until: T0 + 5_000 })).toEqual([2, 3]);
    expect(await seqs({ since: T0 + 1_001 })).toEqual([2, 3, 4, 5]);
    expect(await seqs({ until: T0 + 1_001 })).toEqual([1]);
    expect(await seqs({ since: T0 + 6_000 })).toEqual([]);
    expect(await seqs({ since: T0 + 1_000, cursor: "2", limit: 2 })).toEqual([3, 4]);
  });

  it("keeps the index for restored entries whose times went backwards", async () => {
    const source = env.TEST_CREDIT_LEDGER.getByName("times-source");
    await source.setClock(T0);
    await source.createAccount({ accountId: "times-source", name: "Source" });
    for (const i of [1, 2, 3]) {
      await source.setClock(T0 + i * 1_000);
      await source.grant({ accountId: "times-source", amount: 10, reason: `g${i}`, idempotencyKey: `g${i}` });
    }
    const dump = await source.exportTables();
    // As a ledger from before migration 7 could hold them: entry 2 older than entry 1.
    const entries = dump.tables.find((table) => table.name === "entries")!;
    const at = entries.columns.indexOf("at_ms");
    entries.rows[1]![at] = T0 + 500;
    const target = env.TEST_CREDIT_LEDGER.getByName("times-source");
    await runInDurableObject(target, (_instance: unknown, state: DurableObjectState) => state.storage.deleteAll());
    await evictDurableObject(target);
    await target.importTables(dump);
    expect(await indexes(target)).toContain("entries_by_time");
    expect((await target.entries({ accountId: "times-source", since: T0 + 400, until: T0 + 600 })).items.map((e) => e.seq)).toEqual([2]);
  });
});

describe("entry ids from before migration 8", () => {
  /** A ledger with a debit partly refunded, a committed hold and a grant; its dump with wholly random entry ids, at version 7. */
  async function legacyDump(accountId: string) {
    const source = env.CREDIT_LEDGER.getByName(accountId);
    await source.createAccount({ accountId, name: "Legacy" });
    await source.grant({ accountId, amount: 100, reason: "g", idempotencyKey: "g" });
    const debited = await source.debit({ accountId, amount: 10, reason: "d", idempotencyKey: "d" });
    const hold = await source.reserve({ accountId, amount: 20, ttlMs: 60_000, reason: "h", idempotencyKey: "h" });
    if (!debited.ok || !hold.ok) throw new Error("setup failed");
    await source.commit({ accountId, holdId: hold.holdId, amount: 15, idempotencyKey: "c" });
    await source.refund({ accountId, entryId: debited.entry.entryId, amount: 4, reason: "r", idempotencyKey: "r1" });
    const dump = await source.exportTables();
    const legacy = withLegacyEntryIds(dump.tables);
    const entries = legacy.tables.find((table) => table.name === "entries")!;
    const ids = entries.rows.map((row) => String(row[entries.columns.indexOf("entry_id")]));
    await runInDurableObject(source, (_instance: unknown, state: DurableObjectState) => state.storage.deleteAll());
    await evictDurableObject(source);
    const old = { ...dump, versions: { ...dump.versions, "credit-ledger": 7 }, tables: legacy.tables };
    return { ledger: source, old, ids, debitId: legacy.legacyId(debited.entry.entryId) };
  }

  const entriesIndexes = (stub: DurableObjectStub) =>
    runInDurableObject(stub, (_instance: unknown, state: DurableObjectState) =>
      state.storage.sql
        .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'entries' ORDER BY name")
        .toArray()
        .map((row) => row.name),
    );

  const withoutRowid = (stub: DurableObjectStub) =>
    runInDurableObject(stub, (_instance: unknown, state: DurableObjectState) =>
      state.storage.sql
        .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE '%WITHOUT ROWID' ORDER BY name")
        .toArray()
        .map((row) => row.name)
        .filter((name) => name === "holds" || name === "idempotency"),
    );

  /** Every entry is still there, every id still resolves, and new entries carry their seq. */
  async function expectIntact(ledger: DurableObjectStub<TestCreditLedgerDO>, accountId: string, ids: string[], debitId: string) {
    const entries = (await ledger.entries({ accountId, limit: 100 })).items;
    expect(entries.map((entry) => entry.entryId)).toEqual(ids);
    expect(await ledger.verifyChain({ accountId })).toMatchObject({ ok: true, checked: ids.length });
    expect((await ledger.audit({ accountId })).violations).toEqual([]);
    expect(await ledger.refund({ accountId, entryId: debitId, reason: "the rest", idempotencyKey: "r2" })).toMatchObject({
      ok: true,
      entry: { amount: 6, refundOf: debitId },
    });
    const refundOfRefund = await ledger
      .refund({ accountId, entryId: ids.at(-1)!, reason: "x", idempotencyKey: "r3" })
      .catch((e: unknown) => e);
    expect(refundOfRefund).toMatchObject({ message: expect.stringContaining("INVALID_ARGUMENT") });
    // Migration 9 moved the idempotency records and holds into tables clustered on their keys: keys still replay.
    expect(await ledger.debit({ accountId, amount: 10, reason: "d", idempotencyKey: "d" })).toMatchObject({
      ok: true,
      entry: { entryId: debitId },
    });
    expect(await codeOf(ledger.debit({ accountId, amount: 11, reason: "d", idempotencyKey: "d" }))).toBe("CONFLICT");
    expect(await withoutRowid(ledger)).toEqual(["holds", "idempotency"]);
    const debited = await ledger.debit({ accountId, amount: 5, reason: "new", idempotencyKey: "d2" });
    if (!debited.ok) throw new Error("debit failed");
    expect(debited.entry.entryId.slice(2, 12)).toBe(debited.entry.seq.toString(16).padStart(10, "0"));
    expect(await ledger.refund({ accountId, entryId: debited.entry.entryId, reason: "r", idempotencyKey: "r4" })).toMatchObject({
      ok: true,
    });
    expect(await ledger.balance({ accountId })).toMatchObject({ available: 85, consumed: 15 });
    expect((await ledger.audit({ accountId })).violations).toEqual([]);
    expect(await ledger.verifyChain({ accountId })).toMatchObject({ ok: true, checked: ids.length + 3 });
  }

  it("restore from a version-7 backup: the partial index takes their ids", async () => {
    const accountId = `legacy-dump-${crypto.randomUUID().slice(0, 8)}`;
    const { ledger, old, ids, debitId } = await legacyDump(accountId);
    const restored = await ledger.importTables(old);
    expect(restored.rows).toMatchObject({ entries: ids.length });
    expect(await entriesIndexes(ledger)).toEqual(["entries_by_legacy_id"]);
    await expectIntact(ledger, accountId, ids, debitId);
  });

  it("stay in a stored ledger migration 8 rebuilds, with its index over time if it had one", async () => {
    const accountId = `legacy-stored-${crypto.randomUUID().slice(0, 8)}`;
    const { ledger, old, ids, debitId } = await legacyDump(accountId);
    // The ledger as version 7 stored it: its schema by steps 1–7, its rows, an index over time kept by step 7.
    await runInDurableObject(ledger, (_instance: unknown, state: DurableObjectState) => {
      applyMigrations(state.storage, "credit-ledger", CREDIT_LEDGER_MIGRATIONS.slice(0, 7));
      for (const table of old.tables.filter((t) => t.name !== "_tasks")) {
        const insert = `INSERT INTO "${table.name}" (${table.columns.join(", ")}) VALUES (${table.columns.map(() => "?").join(", ")})`;
        for (const row of table.rows) state.storage.sql.exec(insert, ...row);
      }
      state.storage.sql.exec("CREATE INDEX entries_by_time ON entries (at_ms, seq)");
    });
    await evictDurableObject(ledger);
    expect(await entriesIndexes(ledger)).toEqual(["entries_by_legacy_id", "entries_by_time"]);
    await expectIntact(ledger, accountId, ids, debitId);
  });
});
