import type { Env } from "../env";
import { applyMigrations, currentVersion, type Migration } from "../migrations";
import { all } from "../sql";
import { loadMetricsConfig } from "./config";
import { MINUTE_MS, floorTo } from "../buckets";
import { ISOLATE_COUNTS } from "./metrics-buffer";
import type { ObjectCall } from "./object-calls";

/** While another object's push is unanswered, a waiting object looks again this often. */
const IN_FLIGHT_POLL_MS = 50;
/** A failed push is retried after this long, doubling per failure up to RETRY_CAP_MS. */
const RETRY_BASE_MS = 1_000;
const RETRY_CAP_MS = 60_000;
/** An object reads its stored bytes at most this often, and reports them when they changed and the last report is this old… */
const SIZE_CHECK_MS = 60_000;
const SIZE_CHANGED_REPORT_MS = 10 * 60_000;
/** …or this old whatever they are (the rollup forgets an object silent for the day retention). */
const SIZE_REFRESH_MS = 60 * 60_000;

/**
 * One object's part in the isolate's counts (one buffer for every object and entrypoint of the
 * isolate, so one push carries all of them; nothing is written in the object itself): it adds
 * its calls, and keeps a timer while any of them is unpushed. A pending timer keeps the object from being evicted, so a graceful eviction
 * pushes first; the timer fires when the buffer window (METRICS_BUFFER_MS from the window's first
 * count) ends, and pushes everything in the buffer unless another object's timer already has.
 * A crash loses at most that window (the isolate's counts not yet pushed).
 */
export class ObjectMeter {
  readonly #ctx: DurableObjectState;
  readonly #env: Env;
  readonly #kind: string;
  /** The generation of this object's newest count; 0 before its first. */
  #last = 0;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #failures = 0;
  #bufferMs: number | undefined;
  #sizeCheckedAtMs = Number.NEGATIVE_INFINITY;
  #sizeReportedAtMs = Number.NEGATIVE_INFINITY;
  #sizeReported: number | null = null;

  /** Built when the object is constructed (woken): it reports its stored bytes then. */
  constructor(ctx: DurableObjectState, env: Env, kind: string) {
    this.#ctx = ctx;
    this.#env = env;
    this.#kind = kind;
    this.#checkSize();
    this.#arm(this.#delayToWindowEnd());
  }

  /**
   * Counts a finished call in memory (no row, no request); its rows read and written are read
   * from its cursors when the push takes them (`MetricsBuffer.trackRows`).
   */
  record(method: string, code: string, startMs: number, call: ObjectCall): void {
    const endMs = Date.now();
    this.#last = ISOLATE_COUNTS.add("object", this.#kind, { method, code, latencyMs: endMs - startMs, rowsRead: 0, rowsWritten: 0, endMs });
    const source = { minuteMs: floorTo(endMs, MINUTE_MS), kind: this.#kind, method, code, call };
    ISOLATE_COUNTS.trackRows(source);
    // Work the call left running (a group commit's next flush) writes in its scope later: counted too.
    call.onLateCursor = () => {
      ISOLATE_COUNTS.trackRows(source);
      this.#last = ISOLATE_COUNTS.generation;
      this.#arm(this.#delayToWindowEnd());
    };
    this.#checkSize();
    this.#arm(this.#delayToWindowEnd());
  }

  /** Adds counts the object found in its old tables (the upgrade from stored counts). */
  adopt(rows: readonly LegacyRow[]): void {
    for (const row of rows) {
      this.#last = ISOLATE_COUNTS.addRow({
        minuteMs: row.minute_ms,
        surface: "object",
        kind: this.#kind,
        method: row.method,
        code: row.code,
        bucket: row.bucket,
        calls: row.calls,
        rowsRead: row.rows_read,
        rowsWritten: row.rows_written,
      });
    }
    if (rows.length > 0) this.#arm(this.#delayToWindowEnd());
  }

  /** Pushes the isolate's counts now (a test's control). Resolves whether the shard took them. */
  flush(): Promise<boolean> {
    return ISOLATE_COUNTS.push(this.#env);
  }

  get #windowMs(): number {
    return (this.#bufferMs ??= loadMetricsConfig(this.#env).bufferMs);
  }

  #delayToWindowEnd(): number {
    const opened = ISOLATE_COUNTS.openedAtMs;
    return opened === null ? 0 : Math.max(0, opened + this.#windowMs - performance.now());
  }

  #arm(delayMs: number): void {
    if (this.#timer !== null) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#tick().catch((error: unknown) => console.error("metrics: an object's push timer failed", error));
    }, delayMs);
  }

  async #tick(): Promise<void> {
    if (ISOLATE_COUNTS.isPushed(this.#last)) return;
    if (this.#last === ISOLATE_COUNTS.generation) {
      const wait = this.#delayToWindowEnd();
      if (wait > 0) return this.#arm(wait);
    } else if (ISOLATE_COUNTS.inFlight(this.#last)) {
      return this.#arm(IN_FLIGHT_POLL_MS);
    }
    const pushed = await ISOLATE_COUNTS.push(this.#env);
    this.#failures = pushed ? 0 : this.#failures + 1;
    if (ISOLATE_COUNTS.isPushed(this.#last)) return;
    this.#arm(pushed ? this.#delayToWindowEnd() : Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** (this.#failures - 1)));
  }

  /** Reports the object's stored bytes when it wakes, then when they changed (at most every 10 minutes), and hourly. */
  #checkSize(): void {
    const now = performance.now();
    if (now - this.#sizeCheckedAtMs < SIZE_CHECK_MS) return;
    this.#sizeCheckedAtMs = now;
    const bytes = this.#ctx.storage.sql.databaseSize;
    const age = now - this.#sizeReportedAtMs;
    if (this.#sizeReported === null || (bytes !== this.#sizeReported && age >= SIZE_CHANGED_REPORT_MS) || age >= SIZE_REFRESH_MS) {
      ISOLATE_COUNTS.reportSize(this.#ctx.id.toString(), this.#kind, bytes);
      // The object waits for the push that carries it, as for its counts.
      this.#last = Math.max(this.#last, ISOLATE_COUNTS.generation);
      this.#sizeReported = bytes;
      this.#sizeReportedAtMs = now;
    }
  }
}

/** The task kind of the stored push that metrics used before they moved to memory; kept out of dumps. */
export const METRICS_PUSH_TASK = "metrics-push";

/**
 * The tables of those stored counts. Only an object created before the move has them: the
 * upgrade (`upgradeStoredMetrics`) hands their rows to the buffer and drops them. A new object
 * never creates them. Backups leave them out (counts are not state).
 */
export const METRICS_TABLES = ["_metrics", "_metrics_outbox", "_metrics_seq"] as const;

/** Step 1 is as released (append-only); only objects that applied it are upgraded by step 2. */
const METRICS_MIGRATIONS: readonly Migration[] = [
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
  {
    version: 2,
    name: "counts kept in memory: drop the stored counters and the push task",
    up(sql) {
      for (const table of METRICS_TABLES) sql.exec(`DROP TABLE IF EXISTS ${table}`);
      sql.exec("DELETE FROM _tasks WHERE kind = ?", METRICS_PUSH_TASK);
    },
  },
];

/** A row of the old counters or outbox. */
export interface LegacyRow {
  minute_ms: number;
  method: string;
  code: string;
  bucket: number;
  calls: number;
  rows_read: number;
  rows_written: number;
  [column: string]: SqlStorageValue;
}

/**
 * Upgrades an object that stored its counts (metrics step 1): returns the counts still waiting
 * there (counting and frozen alike) and drops the tables and the push task. The caller pushes
 * them from memory. A frozen batch the shard had stored just before a crash (its delete never
 * ran) is counted once more: only a crash in that instant, before the upgrade, can do that.
 */
export function upgradeStoredMetrics(storage: DurableObjectStorage): LegacyRow[] {
  const sql = storage.sql;
  if (currentVersion(sql, "metrics") !== 1) return [];
  const columns = "minute_ms, method, code, bucket, calls, rows_read, rows_written";
  const rows = [
    ...all<LegacyRow>(sql, `SELECT ${columns} FROM _metrics`),
    ...all<LegacyRow>(sql, `SELECT ${columns} FROM _metrics_outbox`),
  ];
  applyMigrations(storage, "metrics", METRICS_MIGRATIONS);
  return rows;
}
