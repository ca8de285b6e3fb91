import type { Migration } from "../storage/migrations";

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
];
