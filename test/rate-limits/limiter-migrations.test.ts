import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { RATE_LIMITER_MIGRATIONS } from "../../src/rate-limits/limiter-tables";
import { applyMigrations, currentVersion } from "../../src/platform/migrations";
import { all, run } from "../../src/platform/sql";

describe("RateLimiterDO schema", () => {
  it("upgrades an object with v1 state to v2, keeping its rule states and replays", async () => {
    // A scratch object's storage: bring it to v1 as released, write v1 rows, then deploy v2.
    const stub = env.MIGRATION_PROBE.getByName("rate-limiter-v1-upgrade");
    await runInDurableObject(stub, (_instance, state) => {
      const sql = state.storage.sql;
      expect(applyMigrations(state.storage, "rate-limiter", RATE_LIMITER_MIGRATIONS.slice(0, 1))).toBe(1);
      run(
        sql,
        `INSERT INTO rule_states (rule_name, algorithm, period_ms, window_start_ms, count, previous_count, expires_at_ms)
         VALUES ('minute', 'sliding_window', 60000, 1800000000000, 7, 3, 1800000120000)`,
      );
      run(sql, "INSERT INTO check_replays VALUES ('k', '{}', '{}', 1, 2)");

      expect(applyMigrations(state.storage, "rate-limiter", RATE_LIMITER_MIGRATIONS.slice(0, 2))).toBe(2);
      expect(currentVersion(sql, "rate-limiter")).toBe(2);
      expect(all(sql, "SELECT rule_name, count, previous_count, level, level_at_ms FROM rule_states")).toEqual([
        { rule_name: "minute", count: 7, previous_count: 3, level: 0, level_at_ms: 0 },
      ]);
      expect(all(sql, "SELECT idempotency_key FROM check_replays")).toEqual([{ idempotency_key: "k" }]);
      const tables = all<{ name: string }>(sql, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").map((t) => t.name);
      expect(tables).toEqual(expect.arrayContaining(["rule_log", "shadow_denials", "subject_block", "leases", "subject_override"]));
    });
  });
});
