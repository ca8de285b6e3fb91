import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { errorCodeOf } from "../../../rpc/errors";
import type { Rule } from "../../../rpc/rate-limits";
import { MINUTE_MS } from "../../../src/platform/buckets";
import { METRICS_PUSH_TASK } from "../../../src/platform/metering/object-metrics";
import { CONTROL_BINDINGS } from "../../../src/operations/backup/control-objects";
import type { BackupManifest } from "../../../rpc/backup";
import { digestObject } from "../../fixtures/digest";
import {
  ADAPTIVE_LIMITS_NAME,
  AGGREGATOR_NAME,
  ALERTS_NAME,
  MAINTENANCE_NAME,
  PROTECTION_NAME,
  shardName,
} from "../../../src/platform/names";

const SHARDS = 16; // PATH_SHARDS in vitest.config.ts
const CONTROL = CONTROL_BINDINGS.length; // one instance each
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

const pathStubs = () => [
  env.AGGREGATOR.getByName(AGGREGATOR_NAME),
  ...Array.from({ length: SHARDS }, (_, s) => env.PATH_COLLECTOR.getByName(shardName(s))),
];

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
    await env.PATHS.recordMany({
      hits: [
        { ip: "192.0.2.1", method: "GET", path: "/backup/a", status: 200, latencyMs: 5 },
        { ip: "192.0.2.2", method: "POST", path: "/backup/b", status: 503 },
      ],
    });
    const later = Date.now() + 2 * MINUTE_MS;
    for (const collector of pathStubs().slice(1))
      await (collector as DurableObjectStub<import("../../fixtures/test-path-objects").TestPathCollectorDO>).runAlarmAt(later);
    await env.AGGREGATOR.getByName(AGGREGATOR_NAME).runAlarmAt(later + 5_000);

    const stubs = [env.CREDIT_LEDGER.getByName(accountId), env.RATE_LIMITER.getByName(subject), ...pathStubs()];
    const before = await Promise.all(stubs.map(contentOf));
    const balance = await env.CREDITS.balance({ accountId });
    const global = await env.PATHS.globalStats({ range: "1h" });

    const manifest = await env.ADMIN.backup({ to: "r2", accounts: [accountId], subjects: [subject] });
    expect(manifest.objects).toHaveLength(2 + 1 + SHARDS + CONTROL);
    expect(manifest.objects[0]).toMatchObject({
      binding: "CREDIT_LEDGER",
      name: accountId,
      rows: expect.objectContaining({ entries: 3, holds: 1, api_keys: 1 }),
    });
    expect((await env.ADMIN.listBackups()).backups.map((b) => b.backupId)).toContain(manifest.backupId);

    // Restoring over live data is refused, and changes nothing.
    expect(await codeOf(env.ADMIN.restore({ backupId: manifest.backupId }))).toBe("CONFLICT");
    expect(await Promise.all(stubs.map(contentOf))).toEqual(before);

    for (const stub of stubs) await wipe(stub);
    expect(await codeOf(env.CREDITS.balance({ accountId }))).toBe("NOT_FOUND");

    const report = await env.ADMIN.restore({ backupId: manifest.backupId });
    expect(report).toMatchObject({ ok: true, problems: [], objects: 2 + 1 + SHARDS + CONTROL });
    expect(await Promise.all(stubs.map(contentOf))).toEqual(before);
    expect(await env.CREDITS.balance({ accountId })).toEqual(balance);
    expect(await env.CREDITS.verifyKey({ key: key.key })).toMatchObject({ valid: true, keyId: key.keyId });
    expect(await env.CREDITS.hold({ accountId, holdId: hold.ok ? hold.holdId : "" })).toMatchObject({ status: "open", amount: 5 });
    expect((await env.LIMITS.peek({ subject, rules: RULES })).remaining).toBe(7);
    expect(await env.PATHS.globalStats({ range: "1h" })).toMatchObject({ totalRequests: global.totalRequests, errors: global.errors });
    // The restored hold's expiry is scheduled again.
    const tasks = await runInDurableObject(env.CREDIT_LEDGER.getByName(accountId), async (_i: unknown, state: DurableObjectState) =>
      state.storage.getAlarm(),
    );
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
    const parsed = JSON.parse(original) as BackupManifest;
    await env.BACKUPS!.put(key, JSON.stringify({ ...parsed, objects: [...parsed.objects, parsed.objects[0]] }));
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
    expect(schedule).toMatchObject({ everyMs: 6 * hour, accounts: [accountId], subjects: [], paths: false, control: true, runs: [] });
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
    // The scheduled backup covers the control objects, this one included.
    const ran = (await (await env.BACKUPS!.get(`backups/${after.runs[0]!.backupId}/manifest.json`))!.json()) as BackupManifest;
    expect(ran.objects.map((o) => `${o.binding}/${o.name}`)).toEqual([
      `CREDIT_LEDGER/${accountId}`,
      `PROTECTION/${PROTECTION_NAME}`,
      `ADAPTIVE_LIMITS/${ADAPTIVE_LIMITS_NAME}`,
      `MAINTENANCE/${MAINTENANCE_NAME}`,
      `ALERTS/${ALERTS_NAME}`,
    ]);
    expect(ran.objects.find((o) => o.binding === "MAINTENANCE")!.rows).toMatchObject({ backup_schedule: 1, _tasks: 1 });

    await maintenance.runAlarmAt(slot + 6 * hour);
    expect((await env.ADMIN.backupSchedule()).runs).toHaveLength(2);

    expect(await env.ADMIN.scheduleBackups({ everyMs: null })).toMatchObject({ everyMs: null, nextAt: null });
    await maintenance.runAlarmAt(slot + 12 * hour);
    expect((await env.ADMIN.listBackups()).backups.length).toBe(before + 2);
    expect((await maintenance.tasks()).map((t) => t.kind)).not.toContain("scheduled-backup");
  });
});

describe("control objects (src/operations/backup/control-objects.ts)", () => {
  const protection = () => env.PROTECTION.getByName(PROTECTION_NAME);
  const controller = () => env.ADAPTIVE_LIMITS.getByName(ADAPTIVE_LIMITS_NAME);
  const maintenance = () => env.MAINTENANCE.getByName(MAINTENANCE_NAME);
  const alerts = () => env.ALERTS.getByName(ALERTS_NAME);
  const controlStubs = () => [protection(), controller(), maintenance(), alerts()];
  const alarmOf = (stub: DurableObjectStub) =>
    runInDurableObject(stub, (_i: unknown, state: DurableObjectState) => state.storage.getAlarm());
  /** Every call is metered, so a called object may also have a metrics push pending: its due time, or null. */
  const metricsPushOf = (stub: DurableObjectStub) =>
    runInDurableObject(
      stub,
      (_i: unknown, state: DurableObjectState) =>
        state.storage.sql.exec<{ due_ms: number }>("SELECT due_ms FROM _tasks WHERE kind = ?", METRICS_PUSH_TASK).toArray()[0]?.due_ms ??
        null,
    );
  /** The alarm is armed for the earliest task: `dueMs`, unless a metrics push is due before it. */
  const expectAlarmFor = async (stub: DurableObjectStub, dueMs: number) => {
    const push = await metricsPushOf(stub);
    expect(await alarmOf(stub)).toBe(push === null ? dueMs : Math.min(dueMs, push));
  };
  /** The object's own tasks, the metrics push left out. */
  const ownTasksOf = (stub: DurableObjectStub) =>
    runInDurableObject(stub, (_i: unknown, state: DurableObjectState) =>
      state.storage.sql.exec("SELECT kind, due_ms FROM _tasks WHERE kind <> ?", METRICS_PUSH_TASK).toArray(),
    );
  const manifestOf = async (backupId: string) =>
    (await (await env.BACKUPS!.get(`backups/${backupId}/manifest.json`))!.json()) as BackupManifest;
  const hour = 3_600_000;
  // The controller's clock is pinned far ahead, so its evaluation is due long after the test.
  const FUTURE = Date.now() + 60 * 24 * hour;

  it("refuses bad control options and changes nothing", async () => {
    const before = await Promise.all(controlStubs().map(contentOf));
    expect(await codeOf(env.ADMIN.backup({ to: "r2", control: "yes" } as never))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(env.ADMIN.backup({ to: "r2", protection: 1 } as never))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(env.ADMIN.restore({ backupId: "b-1700000000000-0123abcd", control: null } as never))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(env.ADMIN.scheduleBackups({ everyMs: 6 * hour, control: [] } as never))).toBe("INVALID_ARGUMENT");
    expect(await Promise.all(controlStubs().map(contentOf))).toEqual(before);
  });

  it("`control: false` leaves them out (`protection: true` still adds that one), in a backup and in a schedule", async () => {
    const none = await env.ADMIN.backup({ to: "r2", paths: false, control: false });
    expect(none.objects).toEqual([]);
    const onlyProtection = await env.ADMIN.backup({ to: "r2", paths: false, control: false, protection: true });
    expect(onlyProtection.objects.map((o) => o.binding)).toEqual(["PROTECTION"]);
    const withoutProtection = await env.ADMIN.backup({ to: "r2", paths: false, protection: false });
    expect(withoutProtection.objects.map((o) => o.binding)).toEqual(["ADAPTIVE_LIMITS", "MAINTENANCE", "ALERTS"]);

    const schedule = await env.ADMIN.scheduleBackups({ everyMs: 6 * hour, paths: false, control: false });
    expect(schedule).toMatchObject({ control: false });
    await maintenance().runAlarmAt(schedule.nextAt!);
    // Runs are listed by slot, and the previous test's ran at later slots than this one.
    const run = (await env.ADMIN.backupSchedule()).runs.find((r) => r.slotMs === schedule.nextAt)!;
    expect((await manifestOf(run.backupId)).objects).toEqual([]);
    await env.ADMIN.scheduleBackups({ everyMs: null });
  });

  it("backs up the protection lists, the adaptive policies and the backup schedule; a restore into wiped objects brings back their tables, answers and alarms", async () => {
    const until = Date.now() + 5 * 24 * hour;
    await env.ADMIN.protection().allow({ cidr: "192.0.2.0/28", note: "control backup" });
    await env.ADMIN.protection().deny({ cidr: "198.51.100.64/26", untilMs: until, reason: "control backup" });
    await env.ADMIN.protection().setPolicy({ policy: { scanMinCount: 30 } });
    await controller().pinClock(FUTURE);
    await env.ADMIN.adaptive().setPolicy({
      name: "backup-storm",
      signal: { kind: "error_rate", windowMs: 60_000, minRequests: 20 },
      tightenAbove: 0.2,
      relaxBelow: 0.05,
      dwellMs: 120_000,
      evaluateEveryMs: 15_000,
      stages: [{ policy: "per-ip", factor: 0.1 }],
    });
    // Tightened as a storm would (test/operations/adaptive/adaptive-limits.test.ts drives a real one): level 1 since FUTURE.
    await runInDurableObject(controller(), (_i: unknown, state: DurableObjectState) => {
      state.storage.sql.exec("UPDATE adaptive_policies SET level = 1, last_change_at_ms = ? WHERE name = 'backup-storm'", FUTURE);
    });
    await evictDurableObject(controller());
    const schedule = await env.ADMIN.scheduleBackups({ everyMs: 24 * hour, accounts: ["backup-acct"], paths: false });
    await env.ADMIN.alerts().setRule({
      kind: "balance_below",
      ruleId: "backup-low",
      accountId: "backup-acct",
      level: 10,
      intervalMs: 24 * hour,
    });
    const rules = await env.ADMIN.alerts().rules();
    const alertTasks = await ownTasksOf(alerts());
    expect(alertTasks).toHaveLength(1);

    const before = await Promise.all(controlStubs().map(contentOf));
    const adjustments = await controller().adjustments();
    const adaptiveTasks = await controller().tasks();
    expect(adaptiveTasks).toEqual([expect.objectContaining({ id: "evaluate:backup-storm", dueMs: FUTURE + 15_000 })]);
    const lists = { allow: await env.ADMIN.protection().allowList(), deny: await env.ADMIN.protection().denyList() };

    const manifest = await env.ADMIN.backup({ to: "r2", paths: false });
    expect(manifest.objects.map((o) => `${o.binding}/${o.name}`)).toEqual([
      `PROTECTION/${PROTECTION_NAME}`,
      `ADAPTIVE_LIMITS/${ADAPTIVE_LIMITS_NAME}`,
      `MAINTENANCE/${MAINTENANCE_NAME}`,
      `ALERTS/${ALERTS_NAME}`,
    ]);
    expect(manifest.objects[3]!.rows).toMatchObject({ alert_rules: 1, _tasks: 1 });
    expect(manifest.objects[0]!.rows).toMatchObject({ allow_list: 1, deny_list: 1, policy_override: 1, _tasks: 1 });
    expect(manifest.objects[1]!.rows).toMatchObject({ adaptive_policies: 1, _tasks: 1 });
    expect(manifest.objects[2]!.rows).toMatchObject({ backup_schedule: 1, _tasks: 1 });

    for (const stub of controlStubs()) await wipe(stub);
    // An empty controller answers (and caches) no adjustments; the restore must not leave that cached.
    const emptyAnswer = await controller().adjustments();
    expect(emptyAnswer).not.toEqual(adjustments);
    expect((await env.ADMIN.backupSchedule()).everyMs).toBeNull();
    for (const stub of controlStubs()) expect(await ownTasksOf(stub)).toEqual([]);

    const report = await env.ADMIN.restore({ backupId: manifest.backupId });
    expect(report).toMatchObject({ ok: true, problems: [], objects: CONTROL });
    expect(await Promise.all(controlStubs().map(contentOf))).toEqual(before);
    expect(await controller().adjustments()).toEqual(adjustments);
    expect(adjustments).not.toEqual(emptyAnswer);
    for (const stub of controlStubs()) await evictDurableObject(stub);
    expect(await Promise.all(controlStubs().map(contentOf))).toEqual(before);
    expect(await controller().adjustments()).toEqual(adjustments);
    expect((await env.ADMIN.adaptive().state()).policies).toEqual([
      expect.objectContaining({ name: "backup-storm", level: 1, nextEvaluationAt: FUTURE + 15_000 }),
    ]);
    expect({ allow: await env.ADMIN.protection().allowList(), deny: await env.ADMIN.protection().denyList() }).toEqual(lists);
    expect((await env.ADMIN.protection().policy()).effective.scanMinCount).toBe(30);
    expect(await env.ADMIN.alerts().rules()).toEqual(rules);
    expect(await ownTasksOf(alerts())).toEqual(alertTasks);
    expect(await env.ADMIN.backupSchedule()).toMatchObject({
      everyMs: 24 * hour,
      accounts: ["backup-acct"],
      control: true,
      nextAt: schedule.nextAt,
    });
    // Alarms re-armed from the restored tasks: the denial's expiry, the recurring evaluation, the next scheduled backup.
    await expectAlarmFor(protection(), until);
    await expectAlarmFor(controller(), FUTURE + 15_000);
    await expectAlarmFor(maintenance(), schedule.nextAt!);
    // The restored evaluation task runs as before, and twice changes nothing more than once.
    await controller().failSignalReads(true);
    await controller().runAlarmAt(FUTURE + 15_000);
    const evaluated = await controller().snapshot();
    await controller().evaluateAt("backup-storm", FUTURE + 15_000);
    expect(await controller().snapshot()).toBe(evaluated);
    expect((await controller().tasks())[0]!.dueMs).toBe(FUTURE + 30_000);
    await controller().failSignalReads(false);
    // The restored denial expires by its alarm.
    await protection().runAlarmAt(until);
    expect((await env.ADMIN.protection().denyList()).entries).toEqual([]);
  });

  it("checks every object before writing any: one occupied object refuses the whole restore; `control: false` restores the rest", async () => {
    const accountId = "backup-control-conflict";
    await env.CREDITS.createAccount({ accountId, name: "Conflict" });
    await env.CREDITS.grant({ accountId, amount: 10, reason: "seed", idempotencyKey: "g1" });
    const ledger = env.CREDIT_LEDGER.getByName(accountId);
    const before = await contentOf(ledger);
    // The control objects hold the previous test's state, so the backup names them with data.
    const manifest = await env.ADMIN.backup({ to: "r2", accounts: [accountId], paths: false });
    expect(manifest.objects).toHaveLength(1 + CONTROL);
    await wipe(ledger);
    const empty = await contentOf(ledger);
    const controls = await Promise.all(controlStubs().map(contentOf));

    expect(await codeOf(env.ADMIN.restore({ backupId: manifest.backupId }))).toBe("CONFLICT");
    expect(await contentOf(ledger)).toBe(empty);
    expect(await Promise.all(controlStubs().map(contentOf))).toEqual(controls);

    const report = await env.ADMIN.restore({ backupId: manifest.backupId, control: false });
    expect(report).toMatchObject({ ok: true, problems: [], objects: 1 });
    expect(await contentOf(ledger)).toBe(before);
    expect(await Promise.all(controlStubs().map(contentOf))).toEqual(controls);
  });
});
