import type { BackedUpObject, BackupInput, BackupManifest, BackupSummary, RestoreInput, RestoreReport } from "../../../rpc/backup";
import { CONTROL_BINDINGS, controlTargets, isControlBinding } from "./control-objects";
import type { ObjectDump } from "../../platform/table-dump";
import { loadPathConfig } from "../../path-stats/config";
import type { Env } from "../../platform/env";
import * as v from "valibot";
import { conflict, invalidArgument, notFound, ServiceError } from "../../platform/errors";
import { backupInputSchema, DATA_BINDINGS, manifestSchema, restoreInputSchema } from "./schemas";
import { parseInput } from "../../platform/schemas";
import { AGGREGATOR_NAME, shardName } from "../../platform/names";

const PREFIX = "backups/";

type Binding = BackedUpObject["binding"];
interface Dumpable {
  exportTables(): Promise<ObjectDump>;
  importTables(input: unknown): Promise<{ rows: Record<string, number> }>;
  holdsData(): Promise<boolean>;
}

/** Only these bindings may appear in a manifest: a manifest never names a secret or another binding. */
const MANIFEST = manifestSchema<Binding>([...DATA_BINDINGS, ...CONTROL_BINDINGS]);

/**
 * Backups to the R2 bucket `BACKUPS`: one JSON dump per object plus a manifest with every
 * table's row count, under `backups/<backupId>/`. The objects are the named ledgers and
 * limiters, the path objects, and the control objects of src/operations/backup/control-objects.ts.
 * Restore checks that every target is empty, writes each dump into its object, then verifies:
 * row counts against the manifest, and every ledger's hash chain and totals by a full audit.
 * Admin only.
 */
export class BackupService {
  readonly #env: Env;

  constructor(env: Env) {
    this.#env = env;
  }

  // backup and restore validate here: each reads or writes many objects and the bucket, and must refuse before the first.
  async backup(input: BackupInput): Promise<BackupManifest> {
    const parsed = parseInput(backupInputSchema, input, "backup input");
    const { accounts = [], subjects = [], paths = true, control = true, protection } = parsed;
    const bucket = this.#bucket();
    const createdAt = Date.now();
    const suffix = [...crypto.getRandomValues(new Uint8Array(4))].map((b) => b.toString(16).padStart(2, "0")).join("");
    const backupId = `b-${createdAt}-${suffix}`;
    const targets: [Binding, string][] = [
      ...[...new Set(accounts)].map((name): [Binding, string] => ["CREDIT_LEDGER", name]),
      ...[...new Set(subjects)].map((name): [Binding, string] => ["RATE_LIMITER", name]),
    ];
    if (paths) {
      const { shards } = loadPathConfig(this.#env);
      targets.push(["AGGREGATOR", AGGREGATOR_NAME]);
      for (let shard = 0; shard < shards; shard += 1) targets.push(["PATH_COLLECTOR", shardName(shard)]);
    }
    // `protection` predates `control` and still decides for the protection object alone.
    targets.push(...controlTargets(this.#env).filter(([binding]) => (binding === "PROTECTION" ? (protection ?? control) : control)));
    const objects: BackedUpObject[] = [];
    for (const [binding, name] of targets) {
      const dump = await this.#stub(binding, name).exportTables();
      const key = `${PREFIX}${backupId}/${binding}/${encodeURIComponent(name)}.json`;
      await bucket.put(key, JSON.stringify(dump));
      objects.push({ binding, name, key, rows: Object.fromEntries(dump.tables.map((t) => [t.name, t.rows.length])) });
    }
    const manifest: BackupManifest = { backupId, createdAt, objects };
    // The manifest goes last: a backup without one is incomplete and is never listed or restored.
    await bucket.put(`${PREFIX}${backupId}/manifest.json`, JSON.stringify(manifest));
    return manifest;
  }

  async restore(input: RestoreInput): Promise<RestoreReport> {
    const { backupId, control = true } = parseInput(restoreInputSchema, input, "restore input");
    const bucket = this.#bucket();
    const stored = await this.#json<unknown>(bucket, `${PREFIX}${backupId}/manifest.json`);
    if (stored === undefined) throw notFound(`no complete backup ${backupId}`);
    // The bucket is outside tollgate: a manifest is validated before it names any object.
    const checked = v.safeParse(MANIFEST, stored);
    if (!checked.success || checked.output.backupId !== backupId) throw invalidArgument(`backup ${backupId} has a malformed manifest`);
    const named = new Set(checked.output.objects.map((object) => `${object.binding}/${object.name}`));
    if (named.size !== checked.output.objects.length) {
      throw invalidArgument(`backup ${backupId} has a malformed manifest (an object named twice)`);
    }
    const objects = checked.output.objects.filter((object) => control || !isControlBinding(object.binding));
    // Every object is checked before any is written: a conflict anywhere leaves everything as it was.
    const occupied: string[] = [];
    for (const object of objects) {
      if (await this.#stub(object.binding, object.name).holdsData()) occupied.push(`${object.binding}/${object.name}`);
    }
    if (occupied.length > 0) {
      const more = occupied.length > 10 ? ` and ${occupied.length - 10} more` : "";
      throw conflict(`restore only into empty objects; these hold data: ${occupied.slice(0, 10).join(", ")}${more}`);
    }
    const problems: string[] = [];
    let rows = 0;
    for (const object of objects) {
      const where = `${object.binding}/${object.name}`;
      if (!object.key.startsWith(`${PREFIX}${backupId}/`)) {
        problems.push(`${where}: dump outside the backup (${object.key})`);
        continue;
      }
      const dump = await this.#json<unknown>(bucket, object.key).catch(() => null);
      if (dump === undefined || dump === null) {
        problems.push(`${where}: dump ${dump === undefined ? "missing" : "is not JSON"}`);
        continue;
      }
      const written = await this.#stub(object.binding, object.name).importTables(dump);
      for (const [table, expected] of Object.entries(object.rows)) {
        const got = written.rows[table] ?? 0;
        rows += got;
        if (got !== expected) problems.push(`${where}: ${table} has ${got} rows, the manifest says ${expected}`);
      }
      if (object.binding === "CREDIT_LEDGER") {
        const audit = await this.#env.CREDIT_LEDGER.getByName(object.name).audit({ accountId: object.name });
        if (!audit.chain.ok) {
          problems.push(`${where}: hash chain broken at seq ${audit.chain.brokenAtSeq ?? "?"} (${audit.chain.reason ?? ""})`);
        }
        for (const violation of audit.violations) problems.push(`${where}: ${violation}`);
      }
    }
    return { backupId, ok: problems.length === 0, objects: objects.length, rows, problems };
  }

  async list(): Promise<{ backups: BackupSummary[] }> {
    const bucket = this.#bucket();
    const backups: BackupSummary[] = [];
    let cursor: string | undefined;
    do {
      const page = await bucket.list({ prefix: PREFIX, delimiter: "/", cursor });
      for (const prefix of page.delimitedPrefixes) {
        const checked = v.safeParse(MANIFEST, await this.#json<unknown>(bucket, `${prefix}manifest.json`).catch(() => undefined));
        const manifest = checked.success ? checked.output : undefined;
        if (manifest !== undefined) {
          backups.push({ backupId: manifest.backupId, createdAt: manifest.createdAt, objects: manifest.objects.length });
        }
      }
      cursor = page.truncated ? page.cursor : undefined;
    } while (cursor !== undefined);
    return { backups: backups.sort((a, b) => b.createdAt - a.createdAt) };
  }

  #bucket(): R2Bucket {
    const bucket = this.#env.BACKUPS;
    if (bucket === undefined) throw new ServiceError("INTERNAL", "no BACKUPS bucket is bound (see wrangler.toml)");
    return bucket;
  }

  async #json<T>(bucket: R2Bucket, key: string): Promise<T | undefined> {
    const object = await bucket.get(key);
    return object === null ? undefined : ((await object.json()) as T);
  }

  #stub(binding: Binding, name: string): Dumpable {
    return this.#env[binding].getByName(name) as unknown as Dumpable;
  }
}
