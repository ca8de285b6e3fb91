import type { Env } from "../platform/env";
import { MINUTE_MS } from "../platform/buckets";
import { AGGREGATOR_NAME } from "../platform/names";
import { all, maybeOne, run } from "../platform/sql";
import type { TaskScheduler } from "../platform/task-scheduler";
import { asBytes } from "../sketches/bytes";
import { Partial } from "./partial";
import { MAX_PUSH_BATCH } from "./schemas";

/** A closed minute staged by an older version is sealed this long after it ends. */
export const FLUSH_DELAY_MS = 2_000;
/** A push that failed is retried this long after, by the collector's alarm (then with the scheduler's backoff). */
export const PUSH_RETRY_MS = 5_000;
/** Flush ids drawn at random start here: above any id the old per-collector counter gave out. */
const RANDOM_FLUSH_ID_FLOOR = 2 ** 32;

/** One minute of one flush, as the aggregator takes it. */
export interface PushItem {
  bucketMs: number;
  flushId: number;
  partial: Uint8Array;
}

/** What the pusher needs of its collector. */
export interface PusherContext {
  sql: SqlStorage;
  storage: DurableObjectStorage;
  env: Env;
  scheduler: TaskScheduler;
  /** The collector's shard (throws when it cannot tell). */
  shard(): number;
}

/**
 * A fresh flush id. The aggregator keys what it stores by (shard, minute, flush id), so an id
 * must never repeat within a shard's minute: 2⁵² random values make a repeat within the few
 * flushes of one minute odds of about 10⁻¹⁴. Random rather than a stored counter, so a flush
 * writes no counter row; a retried push reuses its id (kept in the outbox) and replaces.
 */
export function freshFlushId(): number {
  const [high, low] = crypto.getRandomValues(new Uint32Array(2));
  return RANDOM_FLUSH_ID_FLOOR + (high! & 0xfffff) * 2 ** 32 + low!;
}

/**
 * Sends a collector's partials to the aggregator. The normal path pushes straight from memory
 * (no row written at the collector). When a push fails, its minutes go to the `outbox` table
 * and the collector's alarm retries them (`flush` task) with backoff, keeping their flush ids,
 * so a push whose acknowledgement was lost replaces itself at the aggregator.
 *
 * The `flush` task also seals what an older version staged (`staged`, one row per call) into
 * the outbox, as that version did.
 */
export class PartialPusher {
  readonly #ctx: PusherContext;

  constructor(ctx: PusherContext) {
    this.#ctx = ctx;
  }

  /** Pushes one flush's partials; what cannot be pushed now is kept in the outbox for the alarm. */
  async pushFromMemory(partials: ReadonlyMap<number, Partial>, nowMs: number): Promise<void> {
    if (partials.size === 0) return;
    const flushId = freshFlushId();
    const items = [...partials].map(([bucketMs, partial]) => ({ bucketMs, flushId, partial: partial.serialize() }));
    const shard = this.#ctx.shard();
    for (let i = 0; i < items.length; i += MAX_PUSH_BATCH) {
      const batch = items.slice(i, i + MAX_PUSH_BATCH);
      try {
        await this.#push(shard, batch, false);
      } catch (error) {
        console.error(`shard ${shard}: pushing ${items.length - i} minutes failed; kept for the alarm`, error);
        await this.#keep(shard, items.slice(i), nowMs + PUSH_RETRY_MS);
        return;
      }
    }
  }

  /** The `flush` task: seals old staged rows, then pushes the outbox. Idempotent. */
  async flushOutbox(nowMs: number): Promise<void> {
    this.#seal(nowMs);
    const { sql } = this.#ctx;
    const pending = all<{ flush_id: number; bucket_ms: number; partial: ArrayBuffer }>(
      sql,
      "SELECT flush_id, bucket_ms, partial FROM outbox ORDER BY flush_id, bucket_ms",
    );
    const shard = pending.length === 0 ? 0 : this.#ctx.shard();
    for (let i = 0; i < pending.length; i += MAX_PUSH_BATCH) {
      // A failure here (aggregator unreachable) leaves the batch in the outbox and fails the
      // task, so the scheduler retries it with backoff.
      await this.#push(
        shard,
        pending
          .slice(i, i + MAX_PUSH_BATCH)
          .map((row) => ({ bucketMs: row.bucket_ms, flushId: row.flush_id, partial: asBytes(row.partial) })),
        true,
      );
    }
    // "replace", not "earliest": this run's own task row is due in the past and is deleted
    // when the run completes unless this reschedule bumps its revision.
    const next = maybeOne<{ bucket: number | null }>(sql, "SELECT MIN(bucket_ms) AS bucket FROM staged")?.bucket;
    if (next != null) await this.#ctx.scheduler.schedule("flush", next + MINUTE_MS + FLUSH_DELAY_MS, null, "flush", "replace");
  }

  /** Pushes one batch; what it stored leaves the outbox, what it refused (too old) is counted and logged. */
  async #push(shard: number, batch: PushItem[], inOutbox: boolean): Promise<void> {
    const { sql, storage, env } = this.#ctx;
    const result = await env.AGGREGATOR.getByName(AGGREGATOR_NAME).pushMany({ shard, items: batch });
    if (inOutbox || result.refused.length > 0) {
      storage.transactionSync(() => {
        if (inOutbox)
          for (const item of batch) sql.exec("DELETE FROM outbox WHERE flush_id = ? AND bucket_ms = ?", item.flushId, item.bucketMs);
        if (result.refused.length > 0) bumpMeta(sql, "dropped_partials", result.refused.length);
      });
    }
    for (const refusal of result.refused) {
      // The aggregator will never take it (too old): count what was lost, and say so.
      console.error(`shard ${shard}: aggregator refused minute ${refusal.bucketMs}: ${refusal.reason}`);
    }
  }

  /** Keeps unpushed minutes in the outbox (with the shard, for an alarm that wakes the collector nameless). */
  async #keep(shard: number, items: PushItem[], retryAtMs: number): Promise<void> {
    const { sql, storage, scheduler } = this.#ctx;
    storage.transactionSync(() => {
      sql.exec("INSERT OR IGNORE INTO meta (key, value) VALUES ('shard', ?)", shard);
      for (const item of items) {
        sql.exec(
          "INSERT OR REPLACE INTO outbox (flush_id, bucket_ms, partial) VALUES (?, ?, ?)",
          item.flushId,
          item.bucketMs,
          item.partial,
        );
      }
    });
    await scheduler.schedule("flush", retryAtMs, null, "flush", "earliest");
  }

  /** Seals every closed staged minute into the outbox under one flush id (rows an older version staged). */
  #seal(nowMs: number): void {
    const { sql, storage } = this.#ctx;
    storage.transactionSync(() => {
      const rows = all<{ id: number; bucket_ms: number; partial: ArrayBuffer }>(
        sql,
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
      const flushId = bumpMeta(sql, "flush_id", 1);
      for (const [bucket, partial] of merged) {
        run(sql, "INSERT INTO outbox (flush_id, bucket_ms, partial) VALUES (?, ?, ?)", flushId, bucket, partial.serialize());
      }
      for (const row of rows) run(sql, "DELETE FROM staged WHERE id = ?", row.id);
    });
  }
}

/** Adds `by` to a counter in `meta` and returns the new value. */
function bumpMeta(sql: SqlStorage, key: string, by: number): number {
  run(sql, "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = value + excluded.value", key, by);
  return maybeOne<{ value: number }>(sql, "SELECT value FROM meta WHERE key = ?", key)!.value;
}
