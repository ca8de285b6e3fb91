import type { Migration } from "../platform/migrations";
import { markRollupDirty } from "../platform/rollup-compaction";
import { all } from "../platform/sql";
import { asBytes, ByteReader, ByteWriter } from "../sketches/bytes";

/**
 * How long the aggregator gathers pushes before it writes them, all in one row per minute.
 * Collectors flush at random phases, so a shard's push rarely comes alone within this window;
 * each push is answered once its group is written (group commit: nothing acknowledged is
 * only in memory).
 */
export const PUSH_GROUP_MS = 500;
/** A grouped row holds at most about this many bytes of partials; a larger group takes more rows. */
const MAX_GROUP_BYTES = 1_000_000;

export const PUSHES_MIGRATION: Migration = {
  version: 2,
  name: "pushes stored in groups",
  up(sql) {
    // One row per group commit and minute: the pushes written together, each still keyed by
    // (shard, flush id) in `keys` (so a retried push replaces its own item) and in `items`.
    sql.exec(`CREATE TABLE pushes (
      bucket_ms INTEGER NOT NULL,
      group_id INTEGER NOT NULL,
      keys TEXT NOT NULL,
      items BLOB NOT NULL,
      received_at_ms INTEGER NOT NULL,
      PRIMARY KEY (bucket_ms, group_id)
    ) WITHOUT ROWID`);
  },
  // An older dump has no groups: its pushes are `shard_partials` rows, which are still read.
  upgradeDump: (tables) => tables,
};

/** One shard's partial for one minute, from one flush. */
export interface PushItem {
  shard: number;
  bucketMs: number;
  flushId: number;
  partial: Uint8Array;
}

const keyOf = (item: { shard: number; flushId: number }) => `${item.shard}:${item.flushId}`;

function encodeItems(items: readonly PushItem[]): Uint8Array {
  const writer = new ByteWriter().uint(items.length);
  for (const item of items) writer.uint(item.shard).uint(item.flushId).chunk(item.partial);
  return writer.finish();
}

function decodeItems(bucketMs: number, blob: ArrayBuffer | Uint8Array): PushItem[] {
  const reader = new ByteReader(asBytes(blob));
  return Array.from({ length: reader.uint() }, () => ({ shard: reader.uint(), bucketMs, flushId: reader.uint(), partial: reader.chunk() }));
}

/**
 * The aggregator's store of what collectors push. Pushes that arrive within PUSH_GROUP_MS are
 * written together: one `pushes` row per minute holding every shard's partial, instead of one
 * row per push. Each item keeps its (shard, minute, flush id) key: a push whose key is already
 * stored replaces that item (a retry after a lost acknowledgement, or an alarm that ran twice),
 * never adds to it. Rows an older version wrote to `shard_partials` (one per push) are read
 * and replaced the same way. Synchronous SQL, inside the caller's transaction.
 */
export class PushStore {
  readonly #sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.#sql = sql;
  }

  /** Writes a group of pushes (all of one commit), replacing any item stored under the same key. */
  write(items: readonly PushItem[], nowMs: number): void {
    const byBucket = new Map<number, Map<string, PushItem>>();
    for (const item of items) {
      let bucket = byBucket.get(item.bucketMs);
      if (bucket === undefined) byBucket.set(item.bucketMs, (bucket = new Map()));
      // The same key twice in one group: the later push replaces the earlier, as it would in storage.
      bucket.set(keyOf(item), item);
    }
    for (const [bucketMs, pending] of byBucket) {
      this.#replaceStored(bucketMs, pending, nowMs);
      this.#insert(bucketMs, [...pending.values()], nowMs);
      markRollupDirty(this.#sql, "minute", bucketMs);
    }
  }

  /** Every partial stored for a minute, whichever table holds it. */
  partialsOf(bucketMs: number): Uint8Array[] {
    const legacy = all<{ partial: ArrayBuffer }>(this.#sql, "SELECT partial FROM shard_partials WHERE bucket_ms = ?", bucketMs);
    const grouped = all<{ items: ArrayBuffer }>(this.#sql, "SELECT items FROM pushes WHERE bucket_ms = ?", bucketMs);
    return [
      ...legacy.map((row) => asBytes(row.partial)),
      ...grouped.flatMap((row) => decodeItems(bucketMs, row.items).map((item) => item.partial)),
    ];
  }

  /** Forgets every push for a minute before `bucketMs`. */
  pruneBefore(bucketMs: number): void {
    this.#sql.exec("DELETE FROM shard_partials WHERE bucket_ms < ?", bucketMs);
    this.#sql.exec("DELETE FROM pushes WHERE bucket_ms < ?", bucketMs);
  }

  /** Items already stored under a pending key are replaced where they are; those keys leave `pending`. */
  #replaceStored(bucketMs: number, pending: Map<string, PushItem>, nowMs: number): void {
    const legacy = all<{ shard: number; flush_id: number }>(
      this.#sql,
      "SELECT shard, flush_id FROM shard_partials WHERE bucket_ms = ?",
      bucketMs,
    );
    for (const row of legacy) {
      const item = pending.get(keyOf({ shard: row.shard, flushId: row.flush_id }));
      if (item === undefined) continue;
      this.#sql.exec(
        "UPDATE shard_partials SET partial = ?, received_at_ms = ? WHERE bucket_ms = ? AND shard = ? AND flush_id = ?",
        item.partial,
        nowMs,
        bucketMs,
        item.shard,
        item.flushId,
      );
      pending.delete(keyOf(item));
    }
    const rows = all<{ group_id: number; keys: string }>(this.#sql, "SELECT group_id, keys FROM pushes WHERE bucket_ms = ?", bucketMs);
    for (const row of rows) {
      const keys: string[] = JSON.parse(row.keys);
      if (!keys.some((key) => pending.has(key))) continue;
      const [stored] = all<{ items: ArrayBuffer }>(
        this.#sql,
        "SELECT items FROM pushes WHERE bucket_ms = ? AND group_id = ?",
        bucketMs,
        row.group_id,
      );
      const items = decodeItems(bucketMs, stored!.items).map((item) => {
        const replacement = pending.get(keyOf(item));
        pending.delete(keyOf(item));
        return replacement ?? item;
      });
      this.#sql.exec(
        "UPDATE pushes SET items = ?, received_at_ms = ? WHERE bucket_ms = ? AND group_id = ?",
        encodeItems(items),
        nowMs,
        bucketMs,
        row.group_id,
      );
    }
  }

  /** New items: one row, or a few when the group is large (a row must stay well under SQLite's 2 MB). */
  #insert(bucketMs: number, items: readonly PushItem[], nowMs: number): void {
    if (items.length === 0) return;
    let groupId = all<{ id: number | null }>(this.#sql, "SELECT MAX(group_id) AS id FROM pushes WHERE bucket_ms = ?", bucketMs)[0]?.id ?? 0;
    let chunk: PushItem[] = [];
    let bytes = 0;
    const flush = () => {
      if (chunk.length === 0) return;
      groupId += 1;
      this.#sql.exec(
        "INSERT INTO pushes (bucket_ms, group_id, keys, items, received_at_ms) VALUES (?, ?, ?, ?, ?)",
        bucketMs,
        groupId,
        JSON.stringify(chunk.map(keyOf)),
        encodeItems(chunk),
        nowMs,
      );
      chunk = [];
      bytes = 0;
    };
    for (const item of items) {
      if (bytes + item.partial.length > MAX_GROUP_BYTES) flush();
      chunk.push(item);
      bytes += item.partial.length;
    }
    flush();
  }
}

/**
 * Gathers what arrives within `delayMs` (0: within the same turn) and commits it in one go;
 * every caller of a group settles with its commit, so a push is answered only once written.
 */
export class GroupCommit<T> {
  readonly #commit: (items: T[]) => Promise<void>;
  readonly #delayMs: () => number;
  #pending: T[] = [];
  #committed: Promise<void> | null = null;

  constructor(commit: (items: T[]) => Promise<void>, delayMs: () => number) {
    this.#commit = commit;
    this.#delayMs = delayMs;
  }

  add(items: readonly T[]): Promise<void> {
    this.#pending.push(...items);
    if (this.#committed === null) {
      const delayMs = this.#delayMs();
      const gathered = delayMs <= 0 ? Promise.resolve() : new Promise<void>((resolve) => setTimeout(resolve, delayMs));
      this.#committed = gathered.then(() => {
        const group = this.#pending;
        this.#pending = [];
        this.#committed = null;
        return this.#commit(group);
      });
    }
    return this.#committed;
  }
}
