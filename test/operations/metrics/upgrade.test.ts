import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { MINUTE_MS, floorTo } from "../../../src/platform/buckets";
import { latencyBucket, ZERO_BUCKET } from "../../../src/platform/metering/model";

/**
 * Stored data from before counts moved to memory keeps working: an object's stored counts are
 * pushed from memory and its metrics tables dropped, and a rollup shard's per-bucket rows become
 * one row per method and outcome (docs/metrics.md).
 */

const exec = (state: DurableObjectState, query: string, ...bindings: unknown[]) => state.storage.sql.exec(query, ...bindings).toArray();

describe("metrics stored by the previous version", () => {
  it("an object hands its stored counts (counting and frozen) to the push, and drops their tables and task", async () => {
    const probe = env.METRICS_PROBE.getByName("legacy-object");
    await probe.ok();
    const minute = floorTo(Date.now(), MINUTE_MS);
    await runInDurableObject(probe, (_instance: unknown, state: DurableObjectState) => {
      // The tables and rows as metrics step 1 left them.
      exec(
        state,
        `CREATE TABLE _metrics (minute_ms INTEGER NOT NULL, method TEXT NOT NULL, code TEXT NOT NULL, bucket INTEGER NOT NULL,
          calls INTEGER NOT NULL, rows_read INTEGER NOT NULL, rows_written INTEGER NOT NULL, PRIMARY KEY (minute_ms, method, code, bucket)) WITHOUT ROWID`,
      );
      exec(
        state,
        `CREATE TABLE _metrics_outbox (push_id INTEGER NOT NULL, minute_ms INTEGER NOT NULL, method TEXT NOT NULL, code TEXT NOT NULL,
          bucket INTEGER NOT NULL, calls INTEGER NOT NULL, rows_read INTEGER NOT NULL, rows_written INTEGER NOT NULL,
          PRIMARY KEY (push_id, minute_ms, method, code, bucket)) WITHOUT ROWID`,
      );
      exec(state, "CREATE TABLE _metrics_seq (id INTEGER PRIMARY KEY CHECK (id = 1), next_push_id INTEGER NOT NULL)");
      exec(state, "INSERT INTO _migrations (component, version, name, applied_at_ms) VALUES ('metrics', 1, 'old', 0)");
      exec(state, "INSERT INTO _metrics VALUES (?, 'legacyCounting', 'ok', ?, 3, 4, 5)", minute, ZERO_BUCKET);
      exec(state, "INSERT INTO _metrics_outbox VALUES (1, ?, 'legacyFrozen', 'CONFLICT', ?, 2, 0, 1)", minute, ZERO_BUCKET);
      exec(state, "INSERT INTO _metrics_seq VALUES (1, 2)");
      exec(
        state,
        "INSERT INTO _tasks (id, kind, due_ms, payload) VALUES ('metrics-push', 'metrics-push', ?, 'null')",
        minute + 5 * MINUTE_MS,
      );
    });
    await evictDurableObject(probe);
    // The next call constructs the object again: it upgrades, then pushes what it found.
    await probe.ok();
    await probe.pushMetrics();
    const report = await env.ADMIN.metrics({ range: "1h" });
    const methods = report.objects.find((kind) => kind.kind === "MetricsProbeDO")!.methods;
    const legacy = methods.filter((method) => method.method.startsWith("legacy"));
    expect(legacy.map((method) => [method.method, method.outcomes, method.rowsRead, method.rowsWritten])).toEqual([
      ["legacyCounting", { ok: 3 }, 4, 5],
      ["legacyFrozen", { CONFLICT: 2 }, 0, 1],
    ]);
    expect(await probe.tables()).not.toContain("_metrics");
    expect((await probe.tables()).filter((table) => table.startsWith("_metrics_"))).toEqual([]);
    expect(await probe.tasks()).toEqual([]);
  });

  it("a rollup shard's rows per latency bucket become one row per method and outcome, nothing lost", async () => {
    const shard = env.METRICS.getByName("legacy-shard");
    const minute = floorTo(Date.now(), MINUTE_MS);
    const range = { from: minute - 10 * MINUTE_MS, to: minute + MINUTE_MS };
    await shard.query({ range });
    const fast = latencyBucket(2);
    const slow = latencyBucket(40);
    await runInDurableObject(shard, (_instance: unknown, state: DurableObjectState) => {
      // Back to step 1's tables, holding what that version stored.
      for (const table of ["rollups", "receipts", "journal"]) exec(state, `DROP TABLE ${table}`);
      exec(state, "DELETE FROM _migrations WHERE component = 'metrics-rollup' AND version = 2");
      exec(
        state,
        "CREATE TABLE receipts (source TEXT NOT NULL, push_id INTEGER NOT NULL, at_ms INTEGER NOT NULL, PRIMARY KEY (source, push_id)) WITHOUT ROWID",
      );
      exec(
        state,
        `CREATE TABLE rollups (granularity TEXT NOT NULL, bucket_ms INTEGER NOT NULL, surface TEXT NOT NULL, kind TEXT NOT NULL,
          method TEXT NOT NULL, code TEXT NOT NULL, latency_bucket INTEGER NOT NULL, calls INTEGER NOT NULL, rows_read INTEGER NOT NULL,
          rows_written INTEGER NOT NULL, PRIMARY KEY (granularity, bucket_ms, surface, kind, method, code, latency_bucket)) WITHOUT ROWID`,
      );
      exec(state, "INSERT INTO rollups VALUES ('minute', ?, 'object', 'OldDO', 'm', 'ok', ?, 2, 10, 1)", minute, fast);
      exec(state, "INSERT INTO rollups VALUES ('minute', ?, 'object', 'OldDO', 'm', 'ok', ?, 3, 20, 2)", minute, slow);
      exec(state, "INSERT INTO rollups VALUES ('minute', ?, 'entrypoint', 'Old', 'n', 'INTERNAL', ?, 1, 0, 0)", minute, ZERO_BUCKET);
      exec(state, "INSERT INTO receipts VALUES ('old-source', 4, ?)", Date.now());
    });
    await evictDurableObject(shard);
    const answer = await shard.query({ range });
    const sorted = answer.rows.sort((a, b) => a.kind.localeCompare(b.kind) || a.bucket - b.bucket);
    expect(sorted).toEqual([
      { surface: "entrypoint", kind: "Old", method: "n", code: "INTERNAL", bucket: ZERO_BUCKET, calls: 1, rowsRead: 0, rowsWritten: 0 },
      // Rows read and written are kept per method and outcome now: they ride on its first latency bucket.
      { surface: "object", kind: "OldDO", method: "m", code: "ok", bucket: fast, calls: 2, rowsRead: 30, rowsWritten: 3 },
      { surface: "object", kind: "OldDO", method: "m", code: "ok", bucket: slow, calls: 3, rowsRead: 0, rowsWritten: 0 },
    ]);
    expect(await shard.storedRows()).toMatchObject({ rollups: 2, receipts: 0, journal: 0 });
  });
});
