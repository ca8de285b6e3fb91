import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { errorCodeOf } from "../rpc/errors";
import type { Rule } from "../rpc/rate-limits";
import { MINUTE_MS } from "../src/paths/buckets";
import { shardName } from "../src/paths/shard";
import { AGGREGATOR_NAME } from "../src/objects/path-collector-do";
import { digestObject } from "./fixtures/digest";

const SHARDS = 16; // PATH_SHARDS in vitest.config.ts
const YEAR = 366 * 24 * 3_600_000;
const RULES: Rule[] = [{ name: "year", algorithm: "fixed_window", limit: 10, periodMs: YEAR }];

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (error) {
    return errorCodeOf(error);
  }
  throw new Error("expected the call to throw");
}

/**
 * The digest of an object's tables without `_migrations` (a wiped object re-applies them at a
 * new time) and, for ledgers, without the audit's own bookkeeping (restore audits, which adds
 * a report).
 */
async function contentOf(stub: DurableObjectStub): Promise<string> {
  const tables = JSON.parse(await digestObject(stub)) as [string, unknown][];
  return JSON.stringify(tables.filter(([name]) => !["_migrations", "audit_reports", "audit_checkpoint"].includes(name)));
}

/** Deletes everything an object stores; the next call meets a fresh, empty object. */
async function wipe(stub: DurableObjectStub): Promise<void> {
  await runInDurableObject(stub, (_instance: unknown, state: DurableObjectState) => state.storage.deleteAll());
  await evictDurableObject(stub);
}

const pathStubs = () => [env.AGGREGATOR.getByName(AGGREGATOR_NAME), ...Array.from({ length: SHARDS }, (_, s) => env.PATH_COLLECTOR.getByName(shardName(s)))];

describe("backup and restore through R2", () => {
  it("backs up ledgers, limiters and path objects, restores them into wiped objects, and the tables and answers are the same", async () => {
    const accountId = "backup-acct";
    await env.CREDITS.createAccount({ accountId, name: "Backup", overdraftLimit: 2 });
    await env.CREDITS.grant({ accountId, amount: 100, reason: "seed", idempotencyKey: "g1", expiresAt: Date.now() + YEAR });
    const key = await env.CREDITS.createKey({ accountId, name: "k", scopes: ["*"] });
    await env.CREDITS.debit({ accountId, amount: 7, reason: "use", idempotencyKey: "d1", keyId: key.keyId });
    const hold = await env.CREDITS.reserve({ accountId, amount: 5, ttlMs: 20 * 24 * 3_600_000, idempotencyKey: "r1" });
    expect(hold.ok).toBe(true);
    const subject = "backup:subject";
    for (let i = 0; i < 3; i++) await env.LIMITS.check({ subject, rules: RULES });
    await env.PATHS.recordMany({ hits: [{ ip: "192.0.2.1", method: "GET", path: "/backup/a", status: 200, latencyMs: 5 }, { ip: "192.0.2.2", method: "POST", path: "/backup/b", status: 503 }] });
    const later = Date.now() + 2 * MINUTE_MS;
    for (const collector of pathStubs().slice(1)) await (collector as DurableObjectStub<import("./fixtures/test-path-objects").TestPathCollectorDO>).runAlarmAt(later);
    await env.AGGREGATOR.getByName(AGGREGATOR_NAME).runAlarmAt(later + 5_000);

    const stubs = [env.CREDIT_LEDGER.getByName(accountId), env.RATE_LIMITER.getByName(subject), ...pathStubs()];
    const before = await Promise.all(stubs.map(contentOf));
    const balance = await env.CREDITS.balance({ accountId });
    const global = await env.PATHS.globalStats({ range: "1h" });

    const manifest = await env.ADMIN.backup({ to: "r2", accounts: [accountId], subjects: [subject] });
    expect(manifest.objects).toHaveLength(2 + 1 + SHARDS);
    expect(manifest.objects[0]).toMatchObject({ binding: "CREDIT_LEDGER", name: accountId, rows: expect.objectContaining({ entries: 3, holds: 1, api_keys: 1 }) });
    expect((await env.ADMIN.listBackups()).backups.map((b) => b.backupId)).toContain(manifest.backupId);

    // Restoring over live data is refused, and changes nothing.
    expect(await codeOf(env.ADMIN.restore({ backupId: manifest.backupId }))).toBe("CONFLICT");
    expect(await Promise.all(stubs.map(contentOf))).toEqual(before);

    for (const stub of stubs) await wipe(stub);
    expect(await codeOf(env.CREDITS.balance({ accountId }))).toBe("NOT_FOUND");

    const report = await env.ADMIN.restore({ backupId: manifest.backupId });
    expect(report).toMatchObject({ ok: true, problems: [], objects: 2 + 1 + SHARDS });
    expect(await Promise.all(stubs.map(contentOf))).toEqual(before);
    expect(await env.CREDITS.balance({ accountId })).toEqual(balance);
    expect(await env.CREDITS.verifyKey({ key: key.key })).toMatchObject({ valid: true, keyId: key.keyId });
    expect(await env.CREDITS.hold({ accountId, holdId: hold.ok ? hold.holdId : "" })).toMatchObject({ status: "open", amount: 5 });
    expect((await env.LIMITS.peek({ subject, rules: RULES })).remaining).toBe(7);
    expect(await env.PATHS.globalStats({ range: "1h" })).toMatchObject({ totalRequests: global.totalRequests, errors: global.errors });
    // The restored hold's expiry is scheduled again.
    const tasks = await runInDurableObject(env.CREDIT_LEDGER.getByName(accountId), async (_i: unknown, state: DurableObjectState) => state.storage.getAlarm());
    expect(tasks).not.toBeNull();
  });

  it("reports a tampered ledger dump as a broken hash chain", async () => {
    const accountId = "backup-tamper";
    await env.CREDITS.createAccount({ accountId, name: "Tamper" });
    await env.CREDITS.grant({ accountId, amount: 50, reason: "seed", idempotencyKey: "g1" });
    await env.CREDITS.debit({ accountId, amount: 3, reason: "honest", idempotencyKey: "d1" });
    const manifest = await env.ADMIN.backup({ to: "r2", accounts: [accountId], paths: false });
    const key = manifest.objects[0]!.key;
    const dump = await (await env.BACKUPS!.get(key))!.text();
    expect(dump).toContain("honest");
    await env.BACKUPS!.put(key, dump.replace("honest", "forged"));
    await wipe(env.CREDIT_LEDGER.getByName(accountId));
    const report = await env.ADMIN.restore({ backupId: manifest.backupId });
    expect(report.ok).toBe(false);
    expect(report.problems.join("\n")).toContain("hash chain broken");
  });

  it("refuses a manifest edited to name something else, and reports unreadable dumps", async () => {
    const accountId = "backup-manifest";
    await env.CREDITS.createAccount({ accountId, name: "Manifest" });
    const manifest = await env.ADMIN.backup({ to: "r2", accounts: [accountId], paths: false });
    const key = `backups/${manifest.backupId}/manifest.json`;
    const original = await (await env.BACKUPS!.get(key))!.text();
    await env.BACKUPS!.put(key, original.replace('"CREDIT_LEDGER"', '"TOLLGATE_ADMIN_TOKEN"'));
    expect(await codeOf(env.ADMIN.restore({ backupId: manifest.backupId }))).toBe("INVALID_ARGUMENT");
    await env.BACKUPS!.put(key, original);
    await env.BACKUPS!.put(manifest.objects[0]!.key, "{ not json");
    await wipe(env.CREDIT_LEDGER.getByName(accountId));
    const report = await env.ADMIN.restore({ backupId: manifest.backupId });
    expect(report).toMatchObject({ ok: false, problems: [`CREDIT_LEDGER/${accountId}: dump is not JSON`] });
    expect(await codeOf(env.ADMIN.restore({ backupId: "b-1700000000000-00000000" }))).toBe("NOT_FOUND");
  });

  it("validates a dump in the object itself: bad dumps are refused and the object stays empty", async () => {
    const stub = env.CREDIT_LEDGER.getByName("backup-import-validation");
    const good = await env.CREDIT_LEDGER.getByName("backup-acct").exportTables();
    const empty = await contentOf(stub);
    const table = good.tables.find((t) => t.name === "entries")!;
    const bad: unknown[] = [
      null,
      { ...good, format: 2 },
      { ...good, extra: 1 },
      { ...good, versions: { ...good.versions, credit_ledger: 999 } },
      { ...good, tables: [{ ...table, name: "nope" }] },
      { ...good, tables: [{ ...table, name: "sqlite_master" }] },
      { ...good, tables: [{ ...table, name: "entries; DROP TABLE entries" }] },
      { ...good, tables: [{ ...table, columns: [...table.columns.slice(1), "evil"] }] },
      { ...good, tables: [{ ...table, rows: [table.rows[0]!.slice(1)] }] },
      { ...good, tables: [{ ...table, rows: [table.rows[0], table.rows[0]] }] }, // duplicate primary key
      { ...good, tables: [table, table] },
      { ...good, tables: [{ ...table, rows: [table.rows[0]!.map(() => ({ b64: "!!" }))] }] },
      { ...good, tables: [{ ...table, rows: [table.rows[0]!.map(() => Number.NaN)] }] },
    ];
    for (const dump of bad) {
      expect(["INVALID_ARGUMENT", "CONFLICT"], JSON.stringify(dump).slice(0, 120)).toContain(await codeOf(stub.importTables(dump)));
      expect(await contentOf(stub)).toBe(empty);
    }
  });
});

describe("scheduled backups", () => {
  it("backs up by alarm once per slot (a doubled or early alarm adds nothing), survives eviction, and stops on request", async () => {
    const accountId = "backup-scheduled";
    await env.CREDITS.createAccount({ accountId, name: "Scheduled" });
    const maintenance = env.MAINTENANCE.getByName("maintenance");
    const hour = 3_600_000;
    const schedule = await env.ADMIN.scheduleBackups({ everyMs: 6 * hour, accounts: [accountId], paths: false });
    expect(schedule).toMatchObject({ everyMs: 6 * hour, accounts: [accountId], subjects: [], paths: false, runs: [] });
    const slot = schedule.nextAt!;
    expect(await codeOf(env.ADMIN.scheduleBackups({ everyMs: 1_000 }))).toBe("INVALID_ARGUMENT");

    const before = (await env.ADMIN.listBackups()).backups.length;
    await maintenance.runAlarmAt(slot - 1_000); // early: nothing due
    expect((await env.ADMIN.listBackups()).backups.length).toBe(before);
    await maintenance.runAlarmAt(slot);
    await maintenance.runAlarmAt(slot);
    await evictDurableObject(maintenance);
    await maintenance.runAlarmAt(slot + 1_000);
    const after = await env.ADMIN.backupSchedule();
    expect(after.runs).toHaveLength(1);
    expect(after.nextAt).toBe(slot + 6 * hour);
    const backups = (await env.ADMIN.listBackups()).backups;
    expect(backups.length).toBe(before + 1);
    expect(backups.map((b) => b.backupId)).toContain(after.runs[0]!.backupId);

    await maintenance.runAlarmAt(slot + 6 * hour);
    expect((await env.ADMIN.backupSchedule()).runs).toHaveLength(2);

    expect(await env.ADMIN.scheduleBackups({ everyMs: null })).toMatchObject({ everyMs: null, nextAt: null });
    await maintenance.runAlarmAt(slot + 12 * hour);
    expect((await env.ADMIN.listBackups()).backups.length).toBe(before + 2);
    expect((await maintenance.tasks()).map((t) => t.kind)).not.toContain("scheduled-backup");
  });
});
