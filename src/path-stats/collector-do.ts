import type { ClientStats } from "../../rpc/path-stats";
import { loadPathConfig } from "./config";
import type { Env } from "../platform/env";
import { invalidArgument } from "../platform/errors";
import { DAY_MS, MINUTE_MS, floorTo, resolveRange } from "../platform/buckets";
import { OTHER_TEMPLATE } from "./normalize";
import { Partial, pathKey } from "./partial";
import { shardOf } from "./shard";
import { asBytes } from "../sketches/bytes";
import { parseInput } from "../platform/schemas";
import { clientQuerySchema, ingestHitsSchema, MAX_PUSH_BATCH, PATH_BOUNDS } from "./schemas";
import type { Migration } from "../platform/migrations";
import { all, maybeOne, run } from "../platform/sql";
import { type ObjectHooks, type ObjectSpec, TollgateObject } from "../platform/tollgate-object";
import { BASELINES_MIGRATION, type Found, observeHits, ProtectionView, pruneBaselines } from "./collector-anomalies";
import { AGGREGATOR_NAME, shardFromName } from "../platform/names";
import { ClientPaths } from "./collector-clients";

/** A closed minute is flushed this long after it ends, so hits still in flight make it. */
export const FLUSH_DELAY_MS = 2_000;

/** The `meta` key of the collector's shard number. */
const SHARD_META_KEY = "shard";

const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "staged partials, outbox, client paths, templates",
    up(sql) {
      // One row per ingest call and minute: the call's hits already folded into a partial. No
      // index: the table holds only unflushed minutes, and an index would double its writes.
      // No AUTOINCREMENT either: it writes a sqlite_sequence row per insert, and a reused id is harmless.
      sql.exec(`CREATE TABLE staged (
        id INTEGER PRIMARY KEY,
        bucket_ms INTEGER NOT NULL,
        partial BLOB NOT NULL
      )`);
      // Closed minutes waiting for the aggregator to acknowledge them.
      sql.exec(`CREATE TABLE outbox (
        flush_id INTEGER NOT NULL,
        bucket_ms INTEGER NOT NULL,
        partial BLOB NOT NULL,
        PRIMARY KEY (flush_id, bucket_ms)
      ) WITHOUT ROWID`);
      sql.exec(`CREATE TABLE client_paths (
        client TEXT NOT NULL,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        day_ms INTEGER NOT NULL,
        requests INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        s1xx INTEGER NOT NULL, s2xx INTEGER NOT NULL, s3xx INTEGER NOT NULL,
        s4xx INTEGER NOT NULL, s5xx INTEGER NOT NULL, s_none INTEGER NOT NULL,
        first_seen_ms INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL,
        country TEXT,
        user_agent TEXT,
        PRIMARY KEY (client, method, path, day_ms)
      ) WITHOUT ROWID`);
      // No index on day_ms: only the daily prune scans by day, and reads cost far less than writes.
      sql.exec(`CREATE TABLE templates (
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        last_day_ms INTEGER NOT NULL,
        PRIMARY KEY (method, path)
      ) WITHOUT ROWID`);
      sql.exec("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID");
    },
  },
  BASELINES_MIGRATION,
];

/** A collector's test hooks: the base's, and the name the runtime gave the instance. */
export interface PathCollectorHooks extends ObjectHooks {
  /** Default: `ctx.id.name` (an alarm may wake the instance without one). */
  runtimeName?: () => string | undefined;
}

/**
 * One collector shard: every client whose id hashes to it (`hash(id) mod PATH_SHARDS`).
 *
 * `ingest` folds a call's hits into one partial per minute and stages it (one row per call
 * and minute, so nothing lives only in memory), and updates the per-client path counters
 * that `clientStats` reads. The alarm merges the staged partials of each closed minute into
 * one, gives it a flush id, and pushes it to the aggregator, which keys it by
 * (shard, minute, flush id): a retried push replaces, a later flush of late hits adds.
 */
export class PathCollectorDO extends TollgateObject {
  static readonly #spec: ObjectSpec<PathCollectorDO> = {
    component: "path-collector",
    migrations: MIGRATIONS,
    tasks: (self) => ({
      flush: (_payload, nowMs) => self.#flush(nowMs),
      "prune-clients": (_payload, nowMs) => self.#pruneClients(nowMs),
    }),
  };

  #templates: Set<string> | null = null;
  /** The shard, once known; and whether `meta` holds it (written with the first accepted hits). */
  #shardIndex: number | undefined;
  #shardStored = false;
  readonly #protection: ProtectionView;
  readonly #clients: ClientPaths;
  readonly #runtimeName: () => string | undefined;

  constructor(ctx: DurableObjectState, env: Env, hooks: PathCollectorHooks = {}) {
    super(ctx, env, PathCollectorDO.#spec, hooks);
    this.#protection = new ProtectionView(env);
    this.#clients = new ClientPaths(this.sql);
    this.#runtimeName = hooks.runtimeName ?? (() => ctx.id.name);
  }

  /** Records normalized hits (the `PathStats` service normalizes and routes them here). */
  async ingest(input: unknown): Promise<{ accepted: number }> {
    const { hits, ips } = parseInput(ingestHitsSchema, input, "ingest input");
    const config = loadPathConfig(this.env);
    const shard = this.#shard();
    const nowMs = this.now();
    hits.forEach((hit, i) => {
      if (shardOf(hit.client, config.shards) !== shard) throw invalidArgument(`hits.${i}.client belongs to another shard`);
      if (hit.at < nowMs - PATH_BOUNDS.maxAgeMs || hit.at > nowMs + PATH_BOUNDS.maxSkewMs) {
        throw invalidArgument(`hits.${i}.at is outside the accepted window (1 h back, 1 min ahead)`);
      }
    });
    if (ips !== undefined && ips.length !== hits.length) throw invalidArgument("ips must hold one address per hit");
    if (hits.length === 0) return { accepted: 0 };
    // The only await before the writes: everything from here to the transaction is synchronous.
    const protection = await this.#protection.get(nowMs);

    const templates = this.#loadTemplates();
    const partials = new Map<number, Partial>();
    const added = new Map<string, number>();
    const capped = hits.map((hit) => {
      const key = pathKey(hit.method, hit.path);
      if (templates.has(key) || added.has(key)) return hit;
      if (templates.size + added.size < config.maxTemplates) {
        added.set(key, floorTo(hit.at, DAY_MS));
        return hit;
      }
      return { ...hit, path: OTHER_TEMPLATE };
    });
    for (const hit of capped) {
      const bucket = floorTo(hit.at, MINUTE_MS);
      let partial = partials.get(bucket);
      if (partial === undefined) partials.set(bucket, (partial = new Partial()));
      partial.add(hit);
    }
    let found: Found[] = [];
    this.ctx.storage.transactionSync(() => {
      this.#rememberShard(shard);
      for (const [bucket, partial] of partials) {
        this.sql.exec("INSERT INTO staged (bucket_ms, partial) VALUES (?, ?)", bucket, partial.serialize());
      }
      this.#clients.count(capped);
      found = observeHits(this.sql, capped, protection.policy);
      for (const [key, day] of added) {
        const space = key.indexOf(" ");
        run(
          this.sql,
          "INSERT OR IGNORE INTO templates (method, path, last_day_ms) VALUES (?, ?, ?)",
          key.slice(0, space),
          key.slice(space + 1),
          day,
        );
      }
    });
    this.#shardStored = true;
    for (const key of added.keys()) templates.add(key);
    const earliest = Math.min(...partials.keys());
    await this.scheduler.schedule("flush", earliest + MINUTE_MS + FLUSH_DELAY_MS, null, "flush", "earliest");
    await this.scheduler.schedule("prune-clients", nowMs + DAY_MS, null, "prune-clients", "earliest");
    if (found.length > 0) await this.#protection.actOn(found, ips, protection, nowMs);
    return { accepted: hits.length };
  }

  /** One client's paths, from this shard's counters (resolved to whole UTC days). */
  async clientStats(input: unknown): Promise<ClientStats> {
    const parsed = parseInput(clientQuerySchema, input, "clientStats input");
    const config = loadPathConfig(this.env);
    if (shardOf(parsed.client, config.shards) !== this.#shard()) throw invalidArgument("client belongs to another shard");
    const nowMs = this.now();
    const range = parsed.range === undefined ? { from: 0, to: Number.MAX_SAFE_INTEGER } : resolveRange(parsed.range, nowMs);
    return this.#clients.stats(parsed.client, range);
  }

  /**
   * Seals every closed minute into the outbox (one flush id per run), then pushes the
   * outbox in batches. Idempotent: a second run finds nothing staged, and re-pushing an
   * outbox row replaces it at the aggregator.
   */
  async #flush(nowMs: number): Promise<void> {
    this.#seal(nowMs);
    const shard = this.#shard();
    const aggregator = this.env.AGGREGATOR.getByName(AGGREGATOR_NAME);
    const pending = all<{ flush_id: number; bucket_ms: number; partial: ArrayBuffer }>(
      this.sql,
      "SELECT flush_id, bucket_ms, partial FROM outbox ORDER BY flush_id, bucket_ms",
    );
    for (let i = 0; i < pending.length; i += MAX_PUSH_BATCH) {
      const batch = pending.slice(i, i + MAX_PUSH_BATCH);
      // A failure here (aggregator unreachable) leaves the batch in the outbox and fails the
      // task, so the scheduler retries it with backoff.
      const result = await aggregator.pushMany({
        shard,
        items: batch.map((row) => ({ bucketMs: row.bucket_ms, flushId: row.flush_id, partial: asBytes(row.partial) })),
      });
      this.ctx.storage.transactionSync(() => {
        for (const row of batch) run(this.sql, "DELETE FROM outbox WHERE flush_id = ? AND bucket_ms = ?", row.flush_id, row.bucket_ms);
        if (result.refused.length > 0) this.#bumpMeta("dropped_partials", result.refused.length);
      });
      for (const refusal of result.refused) {
        // The aggregator will never take it (too old): count what was lost, and say so.
        console.error(`shard ${shard}: aggregator refused minute ${refusal.bucketMs}: ${refusal.reason}`);
      }
    }
    // "replace", not "earliest": this run's own task row is due in the past and is deleted
    // when the run completes unless this reschedule bumps its revision.
    const next = maybeOne<{ bucket: number | null }>(this.sql, "SELECT MIN(bucket_ms) AS bucket FROM staged")?.bucket;
    if (next != null) await this.scheduler.schedule("flush", next + MINUTE_MS + FLUSH_DELAY_MS, null, "flush", "replace");
  }

  /** Forgets per-client counters (and templates) older than the client retention. */
  async #pruneClients(nowMs: number): Promise<void> {
    const { retention } = loadPathConfig(this.env);
    const cutoff = floorTo(nowMs - retention.clients, DAY_MS);
    run(this.sql, "DELETE FROM client_paths WHERE day_ms < ?", cutoff);
    pruneBaselines(this.sql, nowMs);
    // A template holds a place under the cap while any client counter still uses it.
    const freed = run(
      this.sql,
      `DELETE FROM templates WHERE NOT EXISTS
         (SELECT 1 FROM client_paths AS c WHERE c.method = templates.method AND c.path = templates.path)`,
    );
    if (freed > 0) this.#templates = null;
    const any = maybeOne<{ n: number }>(
      this.sql,
      "SELECT (SELECT COUNT(*) FROM client_paths) + (SELECT COUNT(*) FROM client_baselines) AS n",
    )!.n;
    if (any > 0) await this.scheduler.schedule("prune-clients", nowMs + DAY_MS, null, "prune-clients", "replace");
  }

  #seal(nowMs: number): void {
    this.ctx.storage.transactionSync(() => {
      const rows = all<{ id: number; bucket_ms: number; partial: ArrayBuffer }>(
        this.sql,
        "SELECT id, bucket_ms, partial FROM staged WHERE bucket_ms + ? <= ? ORDER BY id",
        MINUTE_MS,
        nowMs,
      );
      if (rows.length === 0) return;
      const merged = new Map<number, Partial>();
      for (const row of rows) {
        const partial = Partial.deserialize(asBytes(row.partial));
        const existing = merged.get(row.bucket_ms);
        if (existing === undefined) merged.set(row.bucket_ms, partial);
        else existing.merge(partial);
      }
      const flushId = this.#bumpMeta("flush_id", 1);
      for (const [bucket, partial] of merged) {
        run(this.sql, "INSERT INTO outbox (flush_id, bucket_ms, partial) VALUES (?, ?, ?)", flushId, bucket, partial.serialize());
      }
      for (const row of rows) run(this.sql, "DELETE FROM staged WHERE id = ?", row.id);
    });
  }

  #loadTemplates(): Set<string> {
    if (this.#templates === null) {
      this.#templates = new Set(
        all<{ method: string; path: string }>(this.sql, "SELECT method, path FROM templates").map((row) => pathKey(row.method, row.path)),
      );
    }
    return this.#templates;
  }

  /** Adds `by` to a counter in `meta` and returns the new value. */
  #bumpMeta(key: string, by: number): number {
    run(this.sql, "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = value + excluded.value", key, by);
    return maybeOne<{ value: number }>(this.sql, "SELECT value FROM meta WHERE key = ?", key)!.value;
  }

  /**
   * The shard this collector serves: from its name, or, when the runtime woke it without one
   * (an alarm after an eviction or restart: `ctx.id.name` is not always set there), from `meta`,
   * where its first accepted hits wrote it, or else from any client it counts (collectors
   * written before `meta` held the shard).
   */
  #shard(): number {
    if (this.#shardIndex !== undefined) return this.#shardIndex;
    const shard = shardFromName(this.#runtimeName()) ?? this.#storedShard();
    if (shard === null) throw invalidArgument("this object is not a collector shard (name it shard:<n>)");
    this.#shardIndex = shard;
    return shard;
  }

  #storedShard(): number | null {
    const stored = maybeOne<{ value: number }>(this.sql, "SELECT value FROM meta WHERE key = ?", SHARD_META_KEY);
    if (stored !== undefined) return stored.value;
    const counted = maybeOne<{ client: string }>(this.sql, "SELECT client FROM client_paths LIMIT 1");
    return counted === undefined ? null : shardOf(counted.client, loadPathConfig(this.env).shards);
  }

  /** Writes the shard into `meta` once, with the first accepted hits, for alarms that wake it nameless. */
  #rememberShard(shard: number): void {
    if (!this.#shardStored) this.sql.exec("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", SHARD_META_KEY, shard);
  }
}
