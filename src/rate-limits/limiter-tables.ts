import type { Migration } from "../platform/migrations";
import { all } from "../platform/sql";
import { LEGACY_STATE_TABLES, type LegacyRows, legacyStateRow, upgradeDumpToSubjectState } from "./legacy-state";

/** RateLimiterDO's tables. Append-only: add a step, never edit one. */
export const RATE_LIMITER_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "rule states and check replays",
    up(sql) {
      sql.exec(`CREATE TABLE rule_states (
        rule_name TEXT PRIMARY KEY,
        algorithm TEXT NOT NULL,
        period_ms INTEGER NOT NULL,
        window_start_ms INTEGER NOT NULL,
        count INTEGER NOT NULL,
        previous_count INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL
      )`);
      sql.exec(`CREATE TABLE check_replays (
        idempotency_key TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        decision TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL
      )`);
      sql.exec("CREATE INDEX check_replays_by_expiry ON check_replays (expires_at_ms)");
    },
  },
  {
    version: 2,
    name: "level state, sliding logs, shadow counts, blocks, leases, overrides",
    up(sql) {
      // token_bucket: tokens left and the start of the refill cycle; gcra: debt (units x
      // periodMs) and when it was measured. Window algorithms leave them at 0.
      sql.exec("ALTER TABLE rule_states ADD COLUMN level INTEGER NOT NULL DEFAULT 0");
      sql.exec("ALTER TABLE rule_states ADD COLUMN level_at_ms INTEGER NOT NULL DEFAULT 0");
      // sliding_log: one row per admitted millisecond; the rule_states row keeps its expiry.
      sql.exec(`CREATE TABLE rule_log (
        rule_name TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        cost INTEGER NOT NULL,
        PRIMARY KEY (rule_name, at_ms)
      ) WITHOUT ROWID`);
      sql.exec(`CREATE TABLE shadow_denials (
        rule_name TEXT PRIMARY KEY,
        denied INTEGER NOT NULL,
        last_at_ms INTEGER NOT NULL
      )`);
      sql.exec(`CREATE TABLE subject_block (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        until_ms INTEGER NOT NULL,
        reason TEXT NOT NULL,
        rule_name TEXT
      )`);
      sql.exec(`CREATE TABLE leases (
        lease_id TEXT PRIMARY KEY,
        expires_at_ms INTEGER NOT NULL,
        acquired_at_ms INTEGER NOT NULL,
        idempotency_key TEXT UNIQUE
      )`);
      sql.exec("CREATE INDEX leases_by_expiry ON leases (expires_at_ms)");
      sql.exec(`CREATE TABLE subject_override (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        rules TEXT NOT NULL,
        set_at_ms INTEGER NOT NULL
      )`);
    },
  },
  {
    version: 3,
    name: "per-minute check counts",
    up(sql) {
      // Charged checks per minute, allowed and denied (read by denial_rate alert rules).
      sql.exec(`CREATE TABLE check_counts (
        minute_ms INTEGER PRIMARY KEY,
        allowed INTEGER NOT NULL,
        denied INTEGER NOT NULL
      )`);
    },
  },
  {
    version: 4,
    name: "one state row per subject",
    up(sql) {
      // The subject's whole state in one row, written once per flush (src/rate-limits/subject-state.ts):
      // rule states (the shared codec's JSON, sliding-log entries included), shadow counts, the block,
      // and the last hour's per-minute check counts (older minutes stay in check_counts).
      sql.exec(`CREATE TABLE subject_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        rules TEXT NOT NULL,
        shadow TEXT NOT NULL,
        block TEXT,
        check_counts TEXT NOT NULL
      )`);
      const rows = Object.fromEntries(LEGACY_STATE_TABLES.map((table) => [table, all(sql, `SELECT * FROM ${table}`)])) as LegacyRows;
      const row = legacyStateRow(rows);
      if (row !== null) {
        sql.exec(
          "INSERT INTO subject_state (id, rules, shadow, block, check_counts) VALUES (1, ?, ?, ?, ?)",
          row.rules,
          row.shadow,
          row.block,
          row.check_counts,
        );
      }
      for (const table of LEGACY_STATE_TABLES) sql.exec(`DROP TABLE ${table}`);
    },
    upgradeDump: upgradeDumpToSubjectState,
  },
];
