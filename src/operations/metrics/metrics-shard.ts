import { HOUR_MS, MINUTE_MS, floorTo } from "../../platform/buckets";
import { markRollupDirty } from "../../platform/rollup-compaction";
import { all, maybeOne } from "../../platform/sql";
import {
  addGroup,
  fromStoredRow,
  type GroupTuple,
  groupToTuple,
  latencyJson,
  mergeCounts,
  type RollupGroup,
  STORED_ROLLUP_COLUMNS,
  type StoredRollupRow,
  tupleToGroup,
} from "./rollup-groups";
import type { MetricsPush } from "./schemas";

/** Rows for minutes older than this are refused (their hour may already be final and its minutes gone). */
export const METRICS_ACCEPT_WINDOW_MS = 24 * HOUR_MS;
/** The journal is folded into the rollups once it holds this many writes (5 minutes at the default 5 s). */
export const JOURNAL_FOLD_ROWS = 60;
/** An object's stored size row is rewritten with the same bytes at most this often (its `at_ms` keeps it alive). */
const SIZE_REFRESH_MS = 24 * HOUR_MS;

/** The shard's storage as this module needs it: its (row-counting) SQL and its transactions. */
export interface ShardStore {
  sql: SqlStorage;
  transactionSync(closure: () => void): void;
}

interface Mark {
  pushId: number;
  atMs: number;
}

interface Size {
  kind: string;
  bytes: number;
  atMs: number;
}

/** One journal row: what the shard received between two writes. */
interface JournalBody {
  groups: GroupTuple[];
  marks: [string, number][];
  sizes: [string, string, number][];
}

/** What a push did. */
export interface Received {
  stored: number;
  duplicates: number;
  refusedRows: number;
  /** A minute of an hour already compacted was taken: that hour needs a rebuild. */
  late: boolean;
}

/**
 * What a metrics rollup shard has received and not yet folded into its rollups, in memory, and
 * its journal. A push changes memory only. At most METRICS_BUFFER_MS later one journal row holds
 * everything received since the last one (so a shard writes one row per interval, however many
 * pushes and methods it took); every JOURNAL_FOLD_ROWS writes, and before each compaction, the
 * journal is folded: one upsert per minute, method and outcome, one receipt per source, and the
 * journal emptied, in one transaction. Answers read memory and the rollups together.
 *
 * Exactness: a source's batches are numbered, and the shard stores a batch only above the highest
 * push id it holds for that source (`#marks`, journaled with the counts), so a retried push never
 * counts twice, and the marks and the counts are durable together. A crash loses what memory held
 * since the last journal row (at most the buffer window of pushes), marks included: those pushes
 * were answered, so their senders do not resend them.
 */
export class MetricsShardMemory {
  readonly #store: ShardStore;
  readonly #marks = new Map<string, Mark>();
  #unfolded = new Map<string, RollupGroup>();
  #unjournaled = new Map<string, RollupGroup>();
  #marksToFold = new Map<string, Mark>();
  #marksToJournal = new Map<string, number>();
  #sizesToFold = new Map<string, Size>();
  #sizesToJournal = new Map<string, Size>();
  #journalRows = 0;

  constructor(store: ShardStore) {
    this.#store = store;
    this.#load();
  }

  /** Whether something received is not in the journal yet. */
  get holdsUnjournaled(): boolean {
    return this.#unjournaled.size > 0 || this.#marksToJournal.size > 0 || this.#sizesToJournal.size > 0;
  }

  /** Whether the journal holds enough to fold. */
  get foldDue(): boolean {
    return this.#journalRows >= JOURNAL_FOLD_ROWS;
  }

  /** Counts received and not yet folded into the rollups (for answers). */
  unfolded(): Iterable<RollupGroup> {
    return this.#unfolded.values();
  }

  /** Takes a validated push into memory. */
  receive(push: MetricsPush, nowMs: number, hourWatermark: number): Received {
    const received: Received = { stored: 0, duplicates: 0, refusedRows: 0, late: false };
    for (const batch of push.batches) {
      if (batch.pushId <= (this.#marks.get(push.source)?.pushId ?? 0)) {
        received.duplicates += 1;
        continue;
      }
      const mark = { pushId: batch.pushId, atMs: nowMs };
      this.#marks.set(push.source, mark);
      this.#marksToFold.set(push.source, mark);
      this.#marksToJournal.set(push.source, batch.pushId);
      received.stored += 1;
      for (const row of batch.rows) {
        const minute = floorTo(row.minuteMs, MINUTE_MS);
        if (minute < nowMs - METRICS_ACCEPT_WINDOW_MS || minute > nowMs + 2 * MINUTE_MS) {
          received.refusedRows += 1;
          continue;
        }
        const group: RollupGroup = {
          bucketMs: minute,
          surface: row.surface ?? push.surface,
          kind: row.kind,
          method: row.method,
          code: row.code,
          calls: row.calls,
          rowsRead: row.rowsRead,
          rowsWritten: row.rowsWritten,
          latency: row.calls > 0 ? new Map([[row.bucket, row.calls]]) : new Map(),
        };
        addGroup(this.#unfolded, group);
        addGroup(this.#unjournaled, group);
        if (minute < hourWatermark) received.late = true;
      }
    }
    for (const size of push.sizes ?? []) {
      const entry = { kind: size.kind, bytes: size.bytes, atMs: nowMs };
      this.#sizesToFold.set(size.object, entry);
      this.#sizesToJournal.set(size.object, entry);
    }
    return received;
  }

  /** Writes one journal row with everything received since the last one. */
  writeJournal(nowMs: number): void {
    if (!this.holdsUnjournaled) return;
    const body: JournalBody = {
      groups: [...this.#unjournaled.values()].map(groupToTuple),
      marks: [...this.#marksToJournal],
      sizes: [...this.#sizesToJournal].map(([object, size]) => [object, size.kind, size.bytes]),
    };
    this.#store.sql.exec("INSERT INTO journal (at_ms, body) VALUES (?, ?)", nowMs, JSON.stringify(body));
    this.#journalRows += 1;
    this.#unjournaled = new Map();
    this.#marksToJournal = new Map();
    this.#sizesToJournal = new Map();
  }

  /**
   * Folds everything received (journaled or not) into the minute rollups, the receipts and the
   * sizes, and empties the journal, in one transaction. A minute below `hourWatermark` marks its
   * compacted hour dirty. Returns whether one did.
   */
  fold(hourWatermark: number): boolean {
    if (this.#unfolded.size === 0 && this.#marksToFold.size === 0 && this.#sizesToFold.size === 0 && this.#journalRows === 0) return false;
    const { sql } = this.#store;
    let late = false;
    this.#store.transactionSync(() => {
      for (const group of this.#unfolded.values()) {
        this.#upsertMinute(group);
        if (group.bucketMs < hourWatermark) {
          markRollupDirty(sql, "hour", floorTo(group.bucketMs, HOUR_MS));
          late = true;
        }
      }
      for (const [source, mark] of this.#marksToFold) {
        sql.exec(
          "INSERT INTO receipts (source, push_id, at_ms) VALUES (?, ?, ?) ON CONFLICT (source) DO UPDATE SET push_id = excluded.push_id, at_ms = excluded.at_ms",
          source,
          mark.pushId,
          mark.atMs,
        );
      }
      for (const [object, size] of this.#sizesToFold) {
        // An object woken again reports the same size: its row stands (refreshed once a day).
        const stored = maybeOne<{ bytes: number; at_ms: number }>(sql, "SELECT bytes, at_ms FROM sizes WHERE source = ?", object);
        if (stored !== undefined && stored.bytes === size.bytes && size.atMs - stored.at_ms < SIZE_REFRESH_MS) continue;
        sql.exec(
          "INSERT INTO sizes (source, kind, bytes, at_ms) VALUES (?, ?, ?, ?) ON CONFLICT (source) DO UPDATE SET kind = excluded.kind, bytes = excluded.bytes, at_ms = excluded.at_ms",
          object,
          size.kind,
          size.bytes,
          size.atMs,
        );
      }
      if (this.#journalRows > 0) sql.exec("DELETE FROM journal");
    });
    this.#unfolded = new Map();
    this.#unjournaled = new Map();
    this.#marksToFold = new Map();
    this.#marksToJournal = new Map();
    this.#sizesToFold = new Map();
    this.#sizesToJournal = new Map();
    this.#journalRows = 0;
    return late;
  }

  /** Stored bytes received and not yet folded, by object. */
  unfoldedSizes(): Iterable<[string, { kind: string; bytes: number }]> {
    return this.#sizesToFold.entries();
  }

  /** Forgets receipts older than `cutoffMs` (in memory: the caller deletes the stored ones). */
  forgetMarksBefore(cutoffMs: number): void {
    for (const [source, mark] of this.#marks) if (mark.atMs < cutoffMs && !this.#marksToFold.has(source)) this.#marks.delete(source);
  }

  #upsertMinute(group: RollupGroup): void {
    const { sql } = this.#store;
    const stored = maybeOne<StoredRollupRow>(
      sql,
      `SELECT ${STORED_ROLLUP_COLUMNS} FROM rollups
       WHERE granularity = 'minute' AND bucket_ms = ? AND surface = ? AND kind = ? AND method = ? AND code = ?`,
      group.bucketMs,
      group.surface,
      group.kind,
      group.method,
      group.code,
    );
    const row: RollupGroup = { ...group, latency: new Map(group.latency) };
    if (stored !== undefined) mergeCounts(row, fromStoredRow(stored));
    writeRollup(sql, "minute", row);
  }

  /** Memory as the receipts and the journal left it (a restarted shard). */
  #load(): void {
    const { sql } = this.#store;
    for (const row of all<{ source: string; push_id: number; at_ms: number }>(sql, "SELECT source, push_id, at_ms FROM receipts")) {
      this.#marks.set(row.source, { pushId: row.push_id, atMs: row.at_ms });
    }
    for (const row of all<{ at_ms: number; body: string }>(sql, "SELECT at_ms, body FROM journal ORDER BY seq")) {
      const body = JSON.parse(row.body) as JournalBody;
      for (const tuple of body.groups) addGroup(this.#unfolded, tupleToGroup(tuple));
      for (const [source, pushId] of body.marks) {
        const mark = { pushId, atMs: row.at_ms };
        if (pushId > (this.#marks.get(source)?.pushId ?? 0)) this.#marks.set(source, mark);
        this.#marksToFold.set(source, this.#marks.get(source)!);
      }
      for (const [object, kind, bytes] of body.sizes) this.#sizesToFold.set(object, { kind, bytes, atMs: row.at_ms });
      this.#journalRows += 1;
    }
  }
}

/** Writes `group` as the row of its bucket at `granularity`, replacing what the row held. */
export function writeRollup(sql: SqlStorage, granularity: "minute" | "hour" | "day", group: RollupGroup): void {
  sql.exec(
    `INSERT INTO rollups (granularity, bucket_ms, surface, kind, method, code, calls, rows_read, rows_written, latency)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (granularity, bucket_ms, surface, kind, method, code) DO UPDATE SET calls = excluded.calls,
       rows_read = excluded.rows_read, rows_written = excluded.rows_written, latency = excluded.latency`,
    granularity,
    group.bucketMs,
    group.surface,
    group.kind,
    group.method,
    group.code,
    group.calls,
    group.rowsRead,
    group.rowsWritten,
    latencyJson(group.latency),
  );
}
