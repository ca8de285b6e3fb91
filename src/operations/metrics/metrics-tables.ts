import type { Migration } from "../../platform/migrations";

/**
 * The rollup shard's schema. Step 1 is as released (append-only). Step 2 keeps a method's
 * latency distribution in its one row (`latency`, JSON counts per bucket: rollup-groups.ts),
 * a source's receipts as its highest push id, and a journal: what the shard received since its
 * last fold, one row per write (metrics-shard.ts).
 */
export const METRICS_DO_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "receipts, rollups, sizes, dirty buckets",
    up(sql) {
      sql.exec(
        "CREATE TABLE receipts (source TEXT NOT NULL, push_id INTEGER NOT NULL, at_ms INTEGER NOT NULL, PRIMARY KEY (source, push_id)) WITHOUT ROWID",
      );
      sql.exec(`CREATE TABLE rollups (
        granularity TEXT NOT NULL,
        bucket_ms INTEGER NOT NULL,
        surface TEXT NOT NULL,
        kind TEXT NOT NULL,
        method TEXT NOT NULL,
        code TEXT NOT NULL,
        latency_bucket INTEGER NOT NULL,
        calls INTEGER NOT NULL,
        rows_read INTEGER NOT NULL,
        rows_written INTEGER NOT NULL,
        PRIMARY KEY (granularity, bucket_ms, surface, kind, method, code, latency_bucket)
      ) WITHOUT ROWID`);
      sql.exec(
        "CREATE TABLE sizes (source TEXT PRIMARY KEY, kind TEXT NOT NULL, bytes INTEGER NOT NULL, at_ms INTEGER NOT NULL) WITHOUT ROWID",
      );
      sql.exec(
        "CREATE TABLE dirty (granularity TEXT NOT NULL, bucket_ms INTEGER NOT NULL, PRIMARY KEY (granularity, bucket_ms)) WITHOUT ROWID",
      );
      sql.exec("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID");
    },
  },
  {
    version: 2,
    name: "one rollup row per method and outcome, receipts as the highest push id per source, a journal",
    up(sql) {
      sql.exec(`CREATE TABLE rollups_by_method (
        granularity TEXT NOT NULL,
        bucket_ms INTEGER NOT NULL,
        surface TEXT NOT NULL,
        kind TEXT NOT NULL,
        method TEXT NOT NULL,
        code TEXT NOT NULL,
        calls INTEGER NOT NULL,
        rows_read INTEGER NOT NULL,
        rows_written INTEGER NOT NULL,
        latency TEXT NOT NULL,
        PRIMARY KEY (granularity, bucket_ms, surface, kind, method, code)
      ) WITHOUT ROWID`);
      sql.exec(`INSERT INTO rollups_by_method (granularity, bucket_ms, surface, kind, method, code, calls, rows_read, rows_written, latency)
        SELECT granularity, bucket_ms, surface, kind, method, code, SUM(calls), SUM(rows_read), SUM(rows_written),
          json_group_object(CAST(latency_bucket AS TEXT), calls)
        FROM rollups GROUP BY granularity, bucket_ms, surface, kind, method, code`);
      sql.exec("DROP TABLE rollups");
      sql.exec("ALTER TABLE rollups_by_method RENAME TO rollups");
      // The old receipts name push ids of sources that no longer push (isolates and object
      // outboxes of the previous version): nothing will be retried against them.
      sql.exec("DROP TABLE receipts");
      sql.exec("CREATE TABLE receipts (source TEXT PRIMARY KEY, push_id INTEGER NOT NULL, at_ms INTEGER NOT NULL) WITHOUT ROWID");
      sql.exec("CREATE TABLE journal (seq INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, body TEXT NOT NULL)");
    },
  },
];
