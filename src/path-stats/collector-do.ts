import type { ClientStats } from "../../rpc/path-stats";
import { loadPathConfig } from "./config";
import type { Env } from "../platform/env";
import { errorCodeOf, invalidArgument } from "../platform/errors";
import { DAY_MS, floorTo, resolveRange } from "../platform/buckets";
import { OTHER_TEMPLATE } from "./normalize";
import { pathKey } from "./partial";
import { shardOf } from "./shard";
import { clientQuerySchema, ingestHitsSchema, PATH_BOUNDS, pruneSchema } from "./schemas";
import type { Migration } from "../platform/migrations";
import { maybeOne, run } from "../platform/sql";
import { type ObjectHooks, type ObjectSpec, TollgateObject } from "../platform/tollgate-object";
import { observeHits, ProtectionView } from "./collector-anomalies";
import { BASELINE_COLUMNS_MIGRATION, BaselineCache, BASELINES_MIGRATION, pruneBaselines } from "./collector-baselines";
import { shardFromName } from "../platform/names";
import { ClientPaths } from "./collector-clients";
import { COLLECTOR_FLUSH_MS, CollectorBuffer } from "./collector-buffer";
import { PartialPusher } from "./collector-outbox";

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
  BASELINE_COLUMNS_MIGRATION,
];

/** What a test may do with a collector's memory (never reachable over RPC). */
export interface CollectorControls {
  /** Writes and pushes what the collector holds in memory now, as its timer would. */
  flush(): Promise<void>;
  /** How many hits the collector holds in memory. */
  buffered(): number;
  /** Forgets what the collector holds in memory, as a crash would. */
  drop(): void;
}

/** A collector's test hooks: the base's, the name the runtime gave the instance, and its memory. */
export interface PathCollectorHooks extends ObjectHooks {
  /** Default: `ctx.id.name` (an alarm may wake the instance without one). */
  runtimeName?: () => string | undefined;
  /** How long hits wait in memory before a flush (default COLLECTOR_FLUSH_MS), read at each first hit. */
  flushDelayMs?: () => number;
  /** Receives the collector's memory controls, synchronously, during construction. */
  attachBuffer?: (controls: CollectorControls) => void;
}

/**
 * One collector shard: every client whose id hashes to it (`hash(id) mod PATH_SHARDS`).
 *
 * `ingest` folds hits into memory: one partial per minute, one counter delta per (client,
 * method, path, day), and each client's anomaly baseline. Within COLLECTOR_FLUSH_MS of the
 * first hit held, a timer flushes: the counters are written in one transaction, each client's
 * baseline in one of its counters' rows (one row per counter per interval, not per call), and the partials are pushed straight to the
 * aggregator under a fresh flush id (no row at the collector), which keys them by (shard,
 * minute, flush id): a retried push replaces, a later flush adds. A pending timer keeps the
 * object resident, so an idle collector flushes before it can be evicted; a crash loses at
 * most that window (docs/path-stats.md). `clientStats` answers from the stored counters plus
 * those held in memory. Retention: `prune`, which the aggregator calls on every shard daily.
 */
export class PathCollectorDO extends TollgateObject {
  static readonly #spec: ObjectSpec<PathCollectorDO> = {
    component: "path-collector",
    migrations: MIGRATIONS,
    tasks: (self) => ({
      flush: (_payload, nowMs) => self.#pusher.flushOutbox(nowMs),
      // Scheduled by older versions; the aggregator's daily sweep calls `prune` now.
      "prune-clients": (_payload, nowMs) => self.#prune(nowMs).then(() => undefined),
    }),
    afterImport: (self) => {
      self.#templates = null;
    },
  };

  /** The (method, path) pairs holding a place under the template cap; null until first needed. */
  #templates: Set<string> | null = null;
  /** The shard, once known. */
  #shardIndex: number | undefined;
  #buffer = new CollectorBuffer();
  readonly #baselines: BaselineCache;
  #flushTimer: ReturnType<typeof setTimeout> | null = null;
  /** The flush under way, if any: flushes run one at a time. */
  #flushing: Promise<void> | null = null;
  readonly #protection: ProtectionView;
  readonly #clients: ClientPaths;
  readonly #pusher: PartialPusher;
  readonly #runtimeName: () => string | undefined;
  readonly #flushDelayMs: () => number;

  constructor(ctx: DurableObjectState, env: Env, hooks: PathCollectorHooks = {}) {
    super(ctx, env, PathCollectorDO.#spec, hooks);
    this.#protection = new ProtectionView(env);
    this.#clients = new ClientPaths(this.sql);
    this.#baselines = new BaselineCache(this.sql);
    this.#pusher = new PartialPusher({ sql: this.sql, storage: ctx.storage, env, scheduler: this.scheduler, shard: () => this.#shard() });
    this.#runtimeName = hooks.runtimeName ?? (() => ctx.id.name);
    this.#flushDelayMs = hooks.flushDelayMs ?? (() => COLLECTOR_FLUSH_MS);
    hooks.attachBuffer?.({
      flush: () => this.#flush(),
      buffered: () => this.#buffer.hits,
      drop: () => {
        this.#buffer = new CollectorBuffer();
        this.#baselines.forget();
        this.#templates = null;
      },
    });
  }

  /** Takes normalized hits in (the `PathStats` service normalizes and routes them here); they are held in memory. */
  ingest(input: unknown): Promise<{ accepted: number }> {
    return this.handle("ingest", ingestHitsSchema, input, async ({ hits, ips }) => {
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
      // The only await before the hits are taken in: everything from here to the buffer is synchronous.
      const protection = await this.#protection.get(nowMs);

      const templates = this.#loadTemplates();
      const capped = hits.map((hit) => {
        const key = pathKey(hit.method, hit.path);
        if (templates.has(key)) return hit;
        if (templates.size < config.maxTemplates) {
          templates.add(key);
          return hit;
        }
        return { ...hit, path: OTHER_TEMPLATE };
      });
      this.#buffer.add(capped);
      const found = observeHits(this.#baselines, capped, protection.policy);
      if (this.#buffer.full) this.#flushSoon(0);
      else this.#flushSoon(this.#flushDelayMs());
      if (found.length > 0) await this.#protection.actOn(found, ips, protection, nowMs);
      return { accepted: hits.length };
    });
  }

  /** One client's paths, from this shard's counters and those it holds in memory (resolved to whole UTC days). */
  clientStats(input: unknown): Promise<ClientStats> {
    return this.handle("clientStats", clientQuerySchema, input, async (parsed) => {
      const config = loadPathConfig(this.env);
      if (shardOf(parsed.client, config.shards) !== this.#shard()) throw invalidArgument("client belongs to another shard");
      const nowMs = this.now();
      const range = parsed.range === undefined ? { from: 0, to: Number.MAX_SAFE_INTEGER } : resolveRange(parsed.range, nowMs);
      return this.#clients.stats(parsed.client, range, this.#buffer.clients.values());
    });
  }

  /**
   * Forgets per-client counters older than the client retention, and idle baselines. The
   * aggregator calls it on every shard once a day (so an idle shard needs no alarm of its own);
   * safe to call at any time, any number of times.
   */
  prune(input: unknown = {}): Promise<{ clientPaths: number; baselines: number }> {
    return this.handle("prune", pruneSchema, input, async () => {
      return this.#prune(this.now());
    });
  }

  async #prune(nowMs: number): Promise<{ clientPaths: number; baselines: number }> {
    // What memory holds is written first, so nothing pruned is written back after.
    await this.#flush();
    const { retention } = loadPathConfig(this.env);
    const cutoff = floorTo(nowMs - retention.clients, DAY_MS);
    const clientPaths = run(this.sql, "DELETE FROM client_paths WHERE day_ms < ?", cutoff);
    const baselines = pruneBaselines(this.sql, nowMs);
    // Kept by older versions: a template held a place while any counter used it.
    run(
      this.sql,
      "DELETE FROM templates WHERE NOT EXISTS (SELECT 1 FROM client_paths AS c WHERE c.method = templates.method AND c.path = templates.path)",
    );
    if (clientPaths > 0) this.#templates = null;
    return { clientPaths, baselines };
  }

  /** Starts the flush timer unless one is pending (or flushes at once, `delayMs` 0). */
  #flushSoon(delayMs: number): void {
    if (delayMs <= 0) {
      if (this.#flushTimer !== null) clearTimeout(this.#flushTimer);
      this.#flushTimer = null;
      this.#flushFromTimer();
      return;
    }
    this.#flushTimer ??= setTimeout(() => {
      this.#flushTimer = null;
      this.#flushFromTimer();
    }, delayMs);
  }

  #flushFromTimer(): void {
    this.#flush()
      // Durable before the object may be evicted: an eviction waits for the timer, not for the write.
      .then(() => this.ctx.storage.sync())
      .catch((error: unknown) => console.error("collector: flush failed", errorCodeOf(error) ?? error));
  }

  /** Flushes what memory holds now; a flush under way finishes first (flushes never overlap). */
  #flush(): Promise<void> {
    const previous = this.#flushing ?? Promise.resolve();
    const next = previous.then(() => this.#flushOnce());
    this.#flushing = next;
    return next.finally(() => {
      if (this.#flushing === next) this.#flushing = null;
    });
  }

  /**
   * Takes the whole buffer, writes its counter deltas and the changed baselines in one
   * transaction, then pushes its partials (what cannot be pushed goes to the outbox).
   */
  async #flushOnce(): Promise<void> {
    const taken = this.#buffer;
    if (taken.hits === 0 && this.#baselines.dirty === 0) return;
    this.#buffer = new CollectorBuffer();
    this.ctx.storage.transactionSync(() => {
      this.#clients.write(taken.clients.values(), this.#baselines.take());
    });
    await this.#pusher.pushFromMemory(taken.partials, this.now());
  }

  #loadTemplates(): Set<string> {
    if (this.#templates === null) {
      // The counters in memory hold places too; `(other)` holds none.
      const keys = [...this.#clients.templateKeys(), ...this.#buffer.clients.templateKeys()];
      this.#templates = new Set(keys.filter((key) => !key.endsWith(` ${OTHER_TEMPLATE}`)));
    }
    return this.#templates;
  }

  /**
   * The shard this collector serves: from its name, or, when the runtime woke it without one
   * (an alarm after an eviction or restart: `ctx.id.name` is not always set there), from `meta`,
   * where a failed push (the only thing an alarm then has to send) wrote it, or else from any
   * client it counts.
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
}
