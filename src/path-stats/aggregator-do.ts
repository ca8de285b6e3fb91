import type {
  AnsweredRange,
  ExportRow,
  GlobalStats,
  PathDetail,
  TimeSeries,
  TopClients,
  TopPaths,
  TopPathsInput,
} from "../../rpc/path-stats";
import { loadPathConfig } from "./config";
import type { Env } from "../platform/env";
import { invalidArgument } from "../platform/errors";
import { DAY_MS, HOUR_MS, MINUTE_MS, floorTo } from "../platform/buckets";
import { normalizeMethod, normalizePath, OTHER_TEMPLATE } from "./normalize";
import { Partial } from "./partial";
import {
  exportPageSchema,
  globalStatsSchema,
  pathDetailSchema,
  pushManySchema,
  pushSchema,
  timeSeriesSchema,
  topClientsSchema,
  topPathsSchema,
} from "./schemas";
import type { Migration } from "../platform/migrations";
import { rollupWatermark } from "../platform/rollup-compaction";
import { type ObjectHooks, type ObjectSpec, TollgateObject } from "../platform/tollgate-object";
import { ACCEPT_WINDOW_MS, CLOSE_GRACE_MS, minuteClosesAt, RollupCompaction } from "./aggregator-compaction";
import { RollupQueries } from "./aggregator-queries";
import { sweepCollectors } from "./collector-sweep";
import { GroupCommit, PUSH_GROUP_MS, type PushItem, PUSHES_MIGRATION, PushStore } from "./aggregator-pushes";

export { ACCEPT_WINDOW_MS, CLOSE_GRACE_MS, MINUTE_CLOSE_GRACE_MS } from "./aggregator-compaction";
export { PUSH_GROUP_MS } from "./aggregator-pushes";
export { TIME_SERIES_MAX_POINTS } from "./aggregator-queries";
/**
 * A pushed minute is compacted once it has closed (MINUTE_CLOSE_GRACE_MS after its end), and
 * never sooner than this after the push, batching the pushes that arrive together.
 */
export const COMPACT_DELAY_MS = 2_000;
/** The collectors' daily retention sweep runs this long after midnight UTC, after the day's close. */
export const SWEEP_AFTER_MIDNIGHT_MS = 10 * MINUTE_MS;

const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "shard partials, rollups, dirty buckets, templates",
    up(sql) {
      // Keyed minute first: a minute's rebuild and retention both read by minute, so the key
      // serves them and no secondary index doubles each write.
      sql.exec(`CREATE TABLE shard_partials (
        bucket_ms INTEGER NOT NULL,
        shard INTEGER NOT NULL,
        flush_id INTEGER NOT NULL,
        partial BLOB NOT NULL,
        received_at_ms INTEGER NOT NULL,
        PRIMARY KEY (bucket_ms, shard, flush_id)
      ) WITHOUT ROWID`);
      // method = path = '' is the bucket's total, which also carries the top clients.
      sql.exec(`CREATE TABLE rollups (
        granularity TEXT NOT NULL,
        bucket_ms INTEGER NOT NULL,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        aggregate BLOB NOT NULL,
        top_clients TEXT,
        PRIMARY KEY (granularity, bucket_ms, method, path)
      ) WITHOUT ROWID`);
      sql.exec(
        "CREATE TABLE dirty (granularity TEXT NOT NULL, bucket_ms INTEGER NOT NULL, PRIMARY KEY (granularity, bucket_ms)) WITHOUT ROWID",
      );
      sql.exec(`CREATE TABLE templates (
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        last_seen_ms INTEGER NOT NULL,
        PRIMARY KEY (method, path)
      ) WITHOUT ROWID`);
      sql.exec("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID");
    },
  },
  PUSHES_MIGRATION,
];

/** An aggregator's test hooks: the base's, and how long pushes are gathered before a commit. */
export interface AggregatorHooks extends ObjectHooks {
  /** Default PUSH_GROUP_MS; 0 commits each turn's pushes at once. Read when a group starts. */
  pushGroupMs?: () => number;
}

type Refused = { bucketMs: number; flushId: number; reason: string };

/**
 * The one aggregator of a deployment (named "global"). It stores what collectors push,
 * keyed by (shard, minute, flush id) so a retried push replaces, the pushes of each
 * PUSH_GROUP_MS written together (aggregator-pushes.ts), and compacts by alarm:
 * shard partials → minute rollups → hour rollups → day rollups, merging sketches (never
 * summing unique counts; aggregator-compaction.ts). Every query reads rollups only, choosing
 * days, hours and minutes to cover its range with the fewest buckets: its cost grows with the
 * buckets and paths in the range, never with the number of clients, and it never calls a
 * collector (aggregator-queries.ts).
 */
export class AggregatorDO extends TollgateObject {
  static readonly #spec: ObjectSpec<AggregatorDO> = {
    component: "aggregator",
    migrations: MIGRATIONS,
    tasks: (self) => ({
      compact: (_payload, nowMs) => self.#compact(nowMs),
      "sweep-collectors": (_payload, nowMs) => self.#sweepCollectors(nowMs),
    }),
    afterImport: (self) => self.#compaction.forgetTemplates(),
  };

  readonly #compaction: RollupCompaction;
  readonly #queries: RollupQueries;
  readonly #pushes: PushStore;
  readonly #group: GroupCommit<PushItem>;

  constructor(ctx: DurableObjectState, env: Env, hooks: AggregatorHooks = {}) {
    super(ctx, env, AggregatorDO.#spec, hooks);
    this.#pushes = new PushStore(this.sql);
    // The rollup tables as the shared compaction sees them (see platform/rollup-compaction).
    this.#compaction = new RollupCompaction(
      { sql: this.sql, transactionSync: (closure) => ctx.storage.transactionSync(closure) },
      this.#pushes,
    );
    this.#queries = new RollupQueries(this.sql, env);
    this.#group = new GroupCommit((items) => this.#commit(items), hooks.pushGroupMs ?? (() => PUSH_GROUP_MS));
  }

  /** Takes one shard's minute. Replaces an earlier push of the same (shard, minute, flush). */
  push(input: unknown): Promise<{ stored: boolean }> {
    return this.handle("push", pushSchema, input, async (parsed) => {
      const nowMs = this.now();
      const refusal = this.#refusal(parsed.bucketMs, parsed.partial, nowMs);
      if (refusal !== null) throw invalidArgument(refusal);
      await this.#group.add([parsed]);
      return { stored: true };
    });
  }

  /**
   * Takes several closed minutes of one shard in one call (how collectors push). A minute
   * outside the acceptance window is refused as a value, so the collector can drop it while
   * the rest are stored; a corrupt partial is a caller bug and fails the whole call.
   */
  pushMany(input: unknown): Promise<{ stored: number; refused: Refused[] }> {
    return this.handle("pushMany", pushManySchema, input, async (parsed) => {
      const nowMs = this.now();
      const refused: Refused[] = [];
      const accepted = parsed.items.filter((item) => {
        const reason = this.#refusal(item.bucketMs, item.partial, nowMs);
        if (reason === null) return true;
        if (reason.startsWith("partial")) throw invalidArgument(reason);
        refused.push({ bucketMs: item.bucketMs, flushId: item.flushId, reason });
        return false;
      });
      if (accepted.length > 0) await this.#group.add(accepted.map((item) => ({ shard: parsed.shard, ...item })));
      return { stored: accepted.length, refused };
    });
  }

  globalStats(input: unknown): Promise<GlobalStats> {
    return this.handle("globalStats", globalStatsSchema, input, async (parsed) => {
      return this.#queries.globalStats(parsed.range, this.now());
    });
  }

  /** The global totals per step; its points sum to `globalStats`' `totalRequests` over the same range. */
  timeSeries(input: unknown): Promise<TimeSeries> {
    return this.handle("timeSeries", timeSeriesSchema, input, async (parsed) => {
      return this.#queries.timeSeries(parsed.range, this.now());
    });
  }

  topPaths(input: unknown): Promise<TopPaths> {
    return this.handle("topPaths", topPathsSchema, input, async (parsed) => {
      return this.#queries.topPaths(parsed as TopPathsInput, this.now());
    });
  }

  topClients(input: unknown): Promise<TopClients> {
    return this.handle("topClients", topClientsSchema, input, async (parsed) => {
      return this.#queries.topClients(parsed.range, parsed.limit, this.now());
    });
  }

  pathDetail(input: unknown): Promise<PathDetail> {
    return this.handle("pathDetail", pathDetailSchema, input, async (parsed) => {
      const config = loadPathConfig(this.env);
      const path = parsed.path === OTHER_TEMPLATE ? OTHER_TEMPLATE : normalizePath(parsed.path, config.routes);
      if (path === null) throw invalidArgument('path must start with "/"');
      const method = parsed.method === undefined ? undefined : normalizeMethod(parsed.method)!;
      return this.#queries.pathDetail(path, method, parsed.range, this.now());
    });
  }

  /** One page of an export, after `cursor` (the `PathStats` service strings pages into a stream). */
  exportPage(input: unknown): Promise<{ rows: ExportRow[]; cursor?: string; range: AnsweredRange }> {
    return this.handle("exportPage", exportPageSchema, input, async (parsed) => {
      return this.#queries.exportPage(parsed, this.now());
    });
  }

  /** Why a pushed minute cannot be taken, or `null` when it can. */
  #refusal(bucketMs: number, partial: Uint8Array, nowMs: number): string | null {
    try {
      Partial.deserialize(partial);
    } catch (error) {
      return `partial is not a valid partial: ${(error as Error).message}`;
    }
    if (bucketMs % MINUTE_MS !== 0) return "bucketMs must be the start of a minute";
    if (bucketMs < nowMs - ACCEPT_WINDOW_MS || bucketMs > nowMs + 2 * MINUTE_MS) {
      return "bucketMs is outside the aggregator's 24-hour acceptance window";
    }
    return null;
  }

  /**
   * Writes a group of pushes in one transaction, then asks for compaction when the earliest
   * pushed minute closes (the scheduler writes the task only when that is earlier than what
   * it holds). Every push of the group is answered after this, so after the write.
   */
  async #commit(items: PushItem[]): Promise<void> {
    const nowMs = this.now();
    this.ctx.storage.transactionSync(() => this.#pushes.write(items, nowMs));
    const due = Math.max(nowMs + COMPACT_DELAY_MS, minuteClosesAt(Math.min(...items.map((item) => item.bucketMs))));
    await this.scheduler.schedule("compact", due, null, "compact", "earliest");
  }

  /**
   * The compaction task: idempotent (every rebuild replaces its bucket), then rescheduled. A
   * run that closes a day also makes sure the collectors' daily sweep is scheduled (it is
   * recurring: written once, when the first day closes, since no counter expires sooner).
   */
  async #compact(nowMs: number): Promise<void> {
    const closedDays = rollupWatermark(this.sql, "day");
    const openMinuteCloses = this.#compaction.compact(loadPathConfig(this.env), nowMs);
    // Recurring: the next hour closes then, or a minute left open closes sooner. "replace"
    // because this run's own row is due in the past and would be deleted on completion if the
    // reschedule did not bump it.
    const nextHour = floorTo(nowMs, HOUR_MS) + HOUR_MS + CLOSE_GRACE_MS;
    await this.scheduler.schedule("compact", Math.min(nextHour, openMinuteCloses ?? nextHour), null, "compact", "replace");
    if (rollupWatermark(this.sql, "day") > closedDays) {
      await this.scheduler.schedule("sweep-collectors", nextSweepMs(nowMs), null, "sweep-collectors", "earliest");
    }
  }

  /** Once a day, every collector shard forgets what is past its retention (`PathCollectorDO.prune`). */
  async #sweepCollectors(nowMs: number): Promise<void> {
    await sweepCollectors(this.env, loadPathConfig(this.env).shards);
    await this.scheduler.schedule("sweep-collectors", nextSweepMs(nowMs), null, "sweep-collectors", "replace");
  }
}

/** The next sweep: the first SWEEP_AFTER_MIDNIGHT_MS after a midnight UTC still to come. */
function nextSweepMs(nowMs: number): number {
  const today = floorTo(nowMs, DAY_MS) + SWEEP_AFTER_MIDNIGHT_MS;
  return today > nowMs ? today : today + DAY_MS;
}
