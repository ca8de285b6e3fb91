import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { RATE_LIMITER_MIGRATIONS } from "../../src/rate-limits/limiter-tables";
import { applyMigrations, currentVersion } from "../../src/platform/migrations";
import { all, run } from "../../src/platform/sql";
import { SubjectState, type SubjectStateRow } from "../../src/rate-limits/subject-state";
import type { Rule } from "../../rpc/rate-limits";
import { codeOf } from "../fixtures/errors";

describe("RateLimiterDO schema (versions 1 to 3)", () => {
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

const YEAR = 366 * 24 * 3_600_000;
const FAR = 4_100_000_000_000;

/** The legacy (version 3) state of one subject: a rule of every algorithm, a sliding log, a shadow count and a block. */
const LEGACY_RULES = [
  ["fixed", "fixed_window", 4_000_000_000_000, 2, 0, 0, 0],
  ["sliding", "sliding_window", 4_000_000_000_000, 3, 1, 0, 0],
  ["log", "sliding_log", 0, 0, 0, 0, 0],
  ["bucket", "token_bucket", 0, 0, 0, 6, 1_700_000_000_000],
  ["gcra", "gcra", 0, 0, 0, 5 * YEAR, 1_700_000_000_000],
] as const;

describe("RateLimiterDO schema: one state row (version 4)", () => {
  it("converts a version 3 object's state tables into the state row and drops them", async () => {
    const stub = env.MIGRATION_PROBE.getByName("rate-limiter-v3-upgrade");
    await runInDurableObject(stub, (_instance, state) => {
      const sql = state.storage.sql;
      expect(applyMigrations(state.storage, "rate-limiter", RATE_LIMITER_MIGRATIONS.slice(0, 3))).toBe(3);
      for (const [name, algorithm, windowStart, count, previous, level, levelAt] of LEGACY_RULES) {
        run(
          sql,
          `INSERT INTO rule_states (rule_name, algorithm, period_ms, window_start_ms, count, previous_count, level, level_at_ms, expires_at_ms)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          name,
          algorithm,
          YEAR,
          windowStart,
          count,
          previous,
          level,
          levelAt,
          FAR,
        );
      }
      run(sql, "INSERT INTO rule_log (rule_name, at_ms, cost) VALUES ('log', 1700000000002, 2), ('log', 1700000000001, 1)");
      run(sql, "INSERT INTO shadow_denials (rule_name, denied, last_at_ms) VALUES ('trial', 4, 1700000000000)");
      run(sql, "INSERT INTO subject_block (id, until_ms, reason, rule_name) VALUES (1, ?, 'abuse', 'fixed')", FAR);
      run(sql, "INSERT INTO check_counts (minute_ms, allowed, denied) VALUES (1699999980000, 7, 2)");

      expect(applyMigrations(state.storage, "rate-limiter", RATE_LIMITER_MIGRATIONS)).toBe(4);
      const [row] = all<SubjectStateRow>(sql, "SELECT rules, shadow, block, check_counts FROM subject_state");
      const converted = SubjectState.fromRow(row!);
      expect(Object.fromEntries(converted.rules)).toEqual({
        fixed: {
          state: { algorithm: "fixed_window", periodMs: YEAR, windowStartMs: 4_000_000_000_000, count: 2, previousCount: 0 },
          expiresAtMs: FAR,
        },
        sliding: {
          state: { algorithm: "sliding_window", periodMs: YEAR, windowStartMs: 4_000_000_000_000, count: 3, previousCount: 1 },
          expiresAtMs: FAR,
        },
        log: {
          state: {
            algorithm: "sliding_log",
            periodMs: YEAR,
            entries: [
              { atMs: 1_700_000_000_001, cost: 1 },
              { atMs: 1_700_000_000_002, cost: 2 },
            ],
          },
          expiresAtMs: FAR,
        },
        bucket: { state: { algorithm: "token_bucket", periodMs: YEAR, level: 6, atMs: 1_700_000_000_000 }, expiresAtMs: FAR },
        gcra: { state: { algorithm: "gcra", periodMs: YEAR, level: 5 * YEAR, atMs: 1_700_000_000_000 }, expiresAtMs: FAR },
      });
      expect(Object.fromEntries(converted.shadow)).toEqual({ trial: { denied: 4, lastAtMs: 1_700_000_000_000 } });
      expect(converted.block).toEqual({ untilMs: FAR, reason: "abuse", rule: "fixed" });
      // Older check counts stay in their table; the row holds only the minutes counted since.
      expect(converted.minutes.size).toBe(0);
      expect(all(sql, "SELECT minute_ms, allowed, denied FROM check_counts")).toEqual([
        { minute_ms: 1_699_999_980_000, allowed: 7, denied: 2 },
      ]);
      const tables = all<{ name: string }>(sql, "SELECT name FROM sqlite_master WHERE type = 'table'").map((t) => t.name);
      expect(tables).toContain("subject_state");
      for (const gone of ["rule_states", "rule_log", "shadow_denials", "subject_block"]) expect(tables).not.toContain(gone);
    });
  });

  it("writes no state row for a version 3 object without state", async () => {
    const stub = env.MIGRATION_PROBE.getByName("rate-limiter-v3-empty");
    await runInDurableObject(stub, (_instance, state) => {
      applyMigrations(state.storage, "rate-limiter", RATE_LIMITER_MIGRATIONS.slice(0, 3));
      applyMigrations(state.storage, "rate-limiter", RATE_LIMITER_MIGRATIONS);
      expect(all(state.storage.sql, "SELECT id FROM subject_state")).toEqual([]);
    });
  });

  it("restores a backup dump taken at version 3 into a version 4 limiter, which then enforces the old counts", async () => {
    const rules: Rule[] = [
      { name: "fixed", algorithm: "fixed_window", limit: 3, periodMs: YEAR },
      { name: "log", algorithm: "sliding_log", limit: 5, periodMs: YEAR },
    ];
    // A dump as a version 3 limiter exported it, from one that answered a check.
    const source = env.TEST_RATE_LIMITER.getByName("dump-v3:source");
    await source.check({ subject: "dump-v3:source", rules, idempotencyKey: "k" });
    const current = await source.exportTables();
    const now = Date.now();
    const windowStart = now - (now % YEAR);
    const legacy = {
      ...current,
      versions: { ...current.versions, "rate-limiter": 3 },
      tables: [
        ...current.tables.filter((table) => table.name !== "subject_state"),
        {
          name: "rule_states",
          columns: [
            "rule_name",
            "algorithm",
            "period_ms",
            "window_start_ms",
            "count",
            "previous_count",
            "expires_at_ms",
            "level",
            "level_at_ms",
          ],
          rows: [
            ["fixed", "fixed_window", YEAR, windowStart, 2, 0, windowStart + YEAR, 0, 0],
            ["log", "sliding_log", YEAR, 0, 0, 0, now + YEAR, 0, 0],
          ],
        },
        { name: "rule_log", columns: ["rule_name", "at_ms", "cost"], rows: [["log", now - 10, 4]] },
        { name: "shadow_denials", columns: ["rule_name", "denied", "last_at_ms"], rows: [] },
        { name: "subject_block", columns: ["id", "until_ms", "reason", "rule_name"], rows: [] },
      ],
    };

    const subject = "dump-v3:target";
    const target = env.TEST_RATE_LIMITER.getByName(subject);
    const imported = await target.importTables(legacy);
    // What a backup's manifest counted per table, converted tables included.
    expect(imported.rows).toMatchObject({ rule_states: 2, rule_log: 1, check_replays: 1, subject_state: 1 });
    expect((await target.peek({ subject, rules })).rules.map((r) => r.remaining)).toEqual([1, 1]);
    // The replay record came along too.
    expect((await target.check({ subject, rules, idempotencyKey: "k" })).remaining).toBe(2);
    expect(await target.check({ subject, rules })).toMatchObject({ allowed: true, remaining: 0 });
    expect(await target.check({ subject, rules })).toMatchObject({ allowed: false });
  });

  it("refuses a version 3 dump whose state rows do not convert, and stays empty", async () => {
    const subject = "dump-v3:bad";
    const target = env.TEST_RATE_LIMITER.getByName(subject);
    const dump = {
      format: 1 as const,
      versions: { "rate-limiter": 3, scheduler: 1 },
      tables: [{ name: "rule_states", columns: ["rule_name", "algorithm"], rows: [["r", "leaky_bucket"]] }],
    };
    expect(await codeOf(target.importTables(dump))).toBe("INVALID_ARGUMENT");
    expect(await target.holdsData()).toBe(false);
  });
});
