import { env } from "cloudflare:workers";
import { abortAllDurableObjects, evictDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { loadMetricsConfig } from "../../../src/platform/metering/config";
import { ZERO_BUCKET } from "../../../src/platform/metering/model";
import { MINUTE_MS, floorTo } from "../../../src/platform/buckets";

/**
 * Call counts are observations kept in memory (docs/metrics.md): an isolate pushes its objects'
 * counts to a rollup shard at most METRICS_BUFFER_MS (25 ms in the tests, vitest.config.ts; 5 s
 * by default) after the window's first count, and a shard writes what it received as one journal
 * row at most that long after. Nothing here pushes early: these tests wait for the windows.
 */
const bufferMs = loadMetricsConfig(env).bufferMs;
/** Past both windows: the object's push and the shard's journal write. */
const waitPastTheWindows = () => new Promise((resolve) => setTimeout(resolve, 2 * bufferMs + 500));

/**
 * The probe's `ok` calls the rollup shards hold (stored or in their memory), asked of each shard
 * directly: `Admin.metrics` would first flush this isolate's buffer, objects' counts included.
 */
async function countedOk(): Promise<number> {
  const to = floorTo(Date.now(), MINUTE_MS) + MINUTE_MS;
  let calls = 0;
  for (let shard = 0; shard < loadMetricsConfig(env).shards; shard++) {
    const answer = await env.METRICS.getByName(`metrics:${shard}`).query({ range: { from: to - 60 * MINUTE_MS, to } });
    for (const row of answer.rows) if (row.kind === "MetricsProbeDO" && row.method === "ok") calls += row.calls;
  }
  return calls;
}

/** Rows stored by every rollup shard, per table. */
async function shardRows(): Promise<Record<string, number>> {
  const total: Record<string, number> = {};
  for (let shard = 0; shard < loadMetricsConfig(env).shards; shard++) {
    for (const [table, rows] of Object.entries(await env.METRICS.getByName(`metrics:${shard}`).storedRows())) {
      total[table] = (total[table] ?? 0) + rows;
    }
  }
  return total;
}

describe("buffered call counts", () => {
  it("are buffered in these tests (a 0 would push with every call)", () => {
    expect(bufferMs).toBeGreaterThan(0);
  });

  it("reach the rollup within the window with nothing else asking, and cost the object no row", async () => {
    const before = await countedOk();
    const probe = env.METRICS_PROBE.getByName("buffer-window");
    for (let i = 0; i < 20; i++) expect(await probe.ok()).toBe("ok");
    await waitPastTheWindows();
    expect(await countedOk()).toBe(before + 20);
    // The object holds no metrics table; its calls wrote no row at all (ok() writes nothing itself).
    expect((await probe.tables()).filter((table) => table.startsWith("_metrics"))).toEqual([]);
    const cost = await env.ADMIN.costReport({ range: "1h" });
    const ok = cost.byMethod.find((row) => row.kind === "MetricsProbeDO" && row.method === "ok")!;
    expect(ok.rowsWritten).toBe(0);
  });

  it("survive a graceful eviction right after the calls: the object pushes before it goes", async () => {
    const before = await countedOk();
    const probe = env.METRICS_PROBE.getByName("buffer-evicted");
    for (let i = 0; i < 5; i++) await probe.ok();
    await evictDurableObject(probe);
    expect(await countedOk()).toBe(before + 5);
  });

  it("cost a shard one journal row per window, however many pushes it takes", async () => {
    const shard = env.METRICS.getByName("journal-window");
    const minuteMs = floorTo(Date.now(), MINUTE_MS);
    const row = (method: string) => ({
      minuteMs,
      kind: "JournalDO",
      method,
      code: "ok",
      bucket: ZERO_BUCKET,
      calls: 1,
      rowsRead: 0,
      rowsWritten: 0,
    });
    const before = await shard.storedRows();
    for (let source = 0; source < 10; source++) {
      await shard.push({ source: `src-${source}`, surface: "object", batches: [{ pushId: 1, rows: [row(`m${source % 3}`)] }] });
    }
    await waitPastTheWindows();
    expect(await shard.storedRows()).toEqual({ ...before, journal: before.journal! + 1 });
  });

  it("lose at most the last window when the objects and shards crash", async () => {
    const before = await countedOk();
    const probe = env.METRICS_PROBE.getByName("buffer-crash");
    for (let i = 0; i < 6; i++) await probe.ok();
    // Pushed, and journaled by the shard: durable.
    await waitPastTheWindows();
    const journaled = await shardRows();
    expect(journaled.journal).toBeGreaterThan(0);
    for (let i = 0; i < 4; i++) await probe.ok();
    // Not an eviction: every object of this file is torn down at once, memory lost (not the
    // test isolate's, which holds the push buffer here; in production an isolate dies with it).
    await abortAllDurableObjects();
    const counted = await countedOk();
    expect(counted).toBeGreaterThanOrEqual(before + 6);
    expect(counted).toBeLessThanOrEqual(before + 10);
  });
});
