import type { Env } from "../env";
import { MINUTE_MS, floorTo } from "../buckets";
import type { Migration } from "../migrations";
import { all, maybeOne } from "../sql";
import type { CallOutcome } from "./instrument";
import { latencyBucket, type PushedMetricRow } from "./model";
import { metricsShardName } from "../names";

/** The task that pushes an object's closed minutes to its metrics shard. */
export const METRICS_PUSH_TASK = "metrics-push";
/** A window's minutes are pushed this long after it ends, so the last calls of its last minute are in. */
export const PUSH_DELAY_MS = 2_000;
/** Batches sent in one push call (the rollup's bound). */
const BATCHES_PER_CALL = 100;

/**
 * Every metered object's own counters: one row per (minute, method, outcome, latency bucket),
 * bumped by one upsert per call; and the outbox of closed minutes, frozen under a push id that
 * the rollup object stores once, so a retried push never counts twice.
 */
export const METRICS_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "call counters, outbox, push sequence",
    up(sql) {
      sql.exec(`CREATE TABLE _metrics (
        minute_ms INTEGER NOT NULL,
        method TEXT NOT NULL,
        code TEXT NOT NULL,
        bucket INTEGER NOT NULL,
        calls INTEGER NOT NULL,
        rows_read INTEGER NOT NULL,
        rows_written INTEGER NOT NULL,
        PRIMARY KEY (minute_ms, method, code, bucket)
      ) WITHOUT ROWID`);
      sql.exec(`CREATE TABLE _metrics_outbox (
        push_id INTEGER NOT NULL,
        minute_ms INTEGER NOT NULL,
        method TEXT NOT NULL,
        code TEXT NOT NULL,
        bucket INTEGER NOT NULL,
        calls INTEGER NOT NULL,
        rows_read INTEGER NOT NULL,
        rows_written INTEGER NOT NULL,
        PRIMARY KEY (push_id, minute_ms, method, code, bucket)
      ) WITHOUT ROWID`);
      sql.exec("CREATE TABLE _metrics_seq (id INTEGER PRIMARY KEY CHECK (id = 1), next_push_id INTEGER NOT NULL)");
    },
  },
];

/** The metrics tables, which backups leave out (counts are not state, and a restore must not re-count). */
export const METRICS_TABLES = ["_metrics", "_metrics_outbox", "_metrics_seq"] as const;

interface PendingRow {
  minute: number;
  method: string;
  code: string;
  bucket: number;
  calls: number;
  rowsRead: number;
  rowsWritten: number;
}

/**
 * An object's call counts, accumulated in memory and written at most `METRICS_BUFFER_MS`
 * later as one upsert per (minute, method, code, latency bucket): the rows a call writes no
 * longer include one for its own count. The object keeps a timer while counts wait; a pending
 * timer keeps the object from being evicted (compatibility date 2026-10-01 and later), so a
 * graceful eviction writes them first, and a crash loses at most that window.
 */
export class CallCounts {
  readonly #pending = new Map<string, PendingRow>();
  /** Adds one finished call. */
  add(outcome: CallOutcome): void {
    const minute = floorTo(outcome.endMs, MINUTE_MS);
    const bucket = latencyBucket(outcome.latencyMs);
    const key = `${minute}\u0000${outcome.method}\u0000${outcome.code}\u0000${bucket}`;
    const row = this.#pending.get(key);
    if (row === undefined) {
      this.#pending.set(key, {
        minute,
        method: outcome.method,
        code: outcome.code,
        bucket,
        calls: 1,
        rowsRead: outcome.rowsRead,
        rowsWritten: outcome.rowsWritten,
      });
    } else {
      row.calls += 1;
      row.rowsRead += outcome.rowsRead;
      row.rowsWritten += outcome.rowsWritten;
    }
  }

  /** Writes what is pending into `_metrics` in one transaction and forgets it. */
  write(storage: DurableObjectStorage): void {
    if (this.#pending.size === 0) return;
    const rows = [...this.#pending.values()];
    storage.transactionSync(() => {
      for (const row of rows) {
        storage.sql.exec(
          `INSERT INTO _metrics (minute_ms, method, code, bucket, calls, rows_read, rows_written) VALUES (?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (minute_ms, method, code, bucket) DO UPDATE SET calls = calls + excluded.calls,
             rows_read = rows_read + excluded.rows_read, rows_written = rows_written + excluded.rows_written`,
          row.minute,
          row.method,
          row.code,
          row.bucket,
          row.calls,
          row.rowsRead,
          row.rowsWritten,
        );
      }
    });
    this.#pending.clear();
  }
}

/** When the push of `minuteMs`'s window is due. */
export function pushDueMs(minuteMs: number, pushEveryMs: number): number {
  return floorTo(minuteMs, pushEveryMs) + pushEveryMs + PUSH_DELAY_MS;
}

type OutboxRow = {
  push_id: number;
  minute_ms: number;
  method: string;
  code: string;
  bucket: number;
  calls: number;
  rows_read: number;
  rows_written: number;
};

/**
 * Freezes every minute before `nowMs`'s into the outbox under a new push id, sends the whole
 * outbox to the object's shard, and empties it once the shard has answered. Returns the
 * earliest minute still counting (to schedule the next push), or `null`.
 *
 * A crash after the send and before the delete re-sends the same push ids, which the shard
 * has already stored: nothing counts twice.
 */
export async function pushClosedMinutes(
  storage: DurableObjectStorage,
  env: Env,
  source: { id: string; kind: string; shards: number },
  nowMs: number,
): Promise<number | null> {
  const sql = storage.sql;
  const closed = floorTo(nowMs, MINUTE_MS);
  storage.transactionSync(() => {
    if (maybeOne(sql, "SELECT 1 AS found FROM _metrics WHERE minute_ms < ? LIMIT 1", closed) === undefined) return;
    const pushId = maybeOne<{ next: number }>(sql, "SELECT next_push_id AS next FROM _metrics_seq WHERE id = 1")?.next ?? 1;
    sql.exec(
      `INSERT INTO _metrics_outbox (push_id, minute_ms, method, code, bucket, calls, rows_read, rows_written)
       SELECT ?, minute_ms, method, code, bucket, calls, rows_read, rows_written FROM _metrics WHERE minute_ms < ?`,
      pushId,
      closed,
    );
    sql.exec("DELETE FROM _metrics WHERE minute_ms < ?", closed);
    sql.exec(
      "INSERT INTO _metrics_seq (id, next_push_id) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET next_push_id = excluded.next_push_id",
      pushId + 1,
    );
  });
  const rows = all<OutboxRow>(sql, "SELECT * FROM _metrics_outbox ORDER BY push_id, minute_ms, method, code, bucket");
  const byBatch = new Map<number, PushedMetricRow[]>();
  for (const row of rows) {
    let list = byBatch.get(row.push_id);
    if (list === undefined) byBatch.set(row.push_id, (list = []));
    list.push({
      minuteMs: row.minute_ms,
      kind: source.kind,
      method: row.method,
      code: row.code,
      bucket: row.bucket,
      calls: row.calls,
      rowsRead: row.rows_read,
      rowsWritten: row.rows_written,
    });
  }
  const ids = [...byBatch.keys()];
  if (ids.length > 0) {
    const shard = env.METRICS.getByName(metricsShardName(source.id, source.shards));
    for (let i = 0; i < ids.length; i += BATCHES_PER_CALL) {
      const chunk = ids.slice(i, i + BATCHES_PER_CALL);
      await shard.push({
        source: source.id,
        surface: "object",
        storedBytes: { kind: source.kind, bytes: sql.databaseSize },
        batches: chunk.map((pushId) => ({ pushId, rows: byBatch.get(pushId)! })),
      });
      // Pushed, or refused as too old for the rollup: either way it is done with.
      sql.exec("DELETE FROM _metrics_outbox WHERE push_id >= ? AND push_id <= ?", chunk[0]!, chunk.at(-1)!);
    }
  }
  return maybeOne<{ first: number | null }>(sql, "SELECT MIN(minute_ms) AS first FROM _metrics")?.first ?? null;
}
