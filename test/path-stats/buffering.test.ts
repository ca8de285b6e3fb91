import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { MINUTE_MS, floorTo } from "../../src/platform/buckets";
import { MINUTE_CLOSE_GRACE_MS } from "../../src/path-stats/aggregator-do";
import { COLLECTOR_FLUSH_MS } from "../../src/path-stats/collector-buffer";
import { PUSH_RETRY_MS } from "../../src/path-stats/collector-outbox";
import { HIT_BATCH_MAX, HIT_BATCH_MS, HitBatcher } from "../../src/path-stats/hit-batcher";
import { type NormalizedHit, Partial as PathPartial } from "../../src/path-stats/partial";
import { clientIdOf } from "../../src/path-stats/privacy";
import { shardOf } from "../../src/path-stats/shard";
import { AGGREGATOR_NAME, shardName } from "../../src/platform/names";

const SHARDS = 16; // PATH_SHARDS in vitest.config.ts

const collectorOf = async (ip: string) => env.PATH_COLLECTOR.getByName(shardName(shardOf((await clientIdOf(ip, "truncate"))!, SHARDS)));

const hitOf = (client: string, at: number, path = "/b"): NormalizedHit => ({ client, method: "GET", path, status: 200, at });

/** Waits (bounded) until `probe` holds. */
async function eventually(probe: () => Promise<boolean>, what: string): Promise<void> {
  for (let attempt = 0; attempt < 150; attempt += 1) {
    if (await probe()) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`timed out waiting until ${what}`);
}

/** The aggregator's requests for `path` over the last hour, after compacting everything closed by `nowMs`. */
async function globalRequests(path: string, nowMs: number): Promise<number> {
  await env.AGGREGATOR.getByName(AGGREGATOR_NAME).runAlarmAt(nowMs);
  const detail = await env.PATHS.pathDetail({ range: "1h", path });
  return detail.methods.reduce((sum, method) => sum + method.requests, 0);
}

describe("the isolate's hit batcher (Gateway.authorize)", () => {
  it("sends one ingest per shard with every hit waiting, within HIT_BATCH_MS, and settles each hit's promise after", async () => {
    const sent: Array<{ shard: number; hits: number; ips: string[] }> = [];
    const batcher = new HitBatcher(async (shard, batch) => {
      sent.push({ shard, hits: batch.hits.length, ips: batch.ips });
    });
    const at = Date.now();
    const started = performance.now();
    let settled = 0;
    const promises = Array.from({ length: 30 }, (_, i) =>
      batcher.add(i % 3, hitOf(`c${i % 3}`, at), `192.0.2.${i}`).then(() => (settled += 1)),
    );
    expect(batcher.waiting).toBe(30);
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(sent).toEqual([]);
    expect(settled).toBe(0);
    await Promise.all(promises);
    expect(performance.now() - started).toBeGreaterThanOrEqual(HIT_BATCH_MS - 50);
    expect(performance.now() - started).toBeLessThan(HIT_BATCH_MS + 1_000);
    expect(sent.map((batch) => [batch.shard, batch.hits]).sort()).toEqual([
      [0, 10],
      [1, 10],
      [2, 10],
    ]);
    // Each hit's address travels beside it, in order.
    expect(sent.find((batch) => batch.shard === 1)!.ips).toEqual(Array.from({ length: 10 }, (_, i) => `192.0.2.${3 * i + 1}`));
    expect(batcher.waiting).toBe(0);
  });

  it("sends a shard at once when its batch is full, and a failed send neither rejects nor stops the other shards", async () => {
    const sent: number[] = [];
    const batcher = new HitBatcher(async (shard, batch) => {
      if (shard === 7) throw new Error("collector unreachable");
      sent.push(batch.hits.length);
    });
    const at = Date.now();
    const full = Array.from({ length: HIT_BATCH_MAX }, () => batcher.add(1, hitOf("c", at), "192.0.2.1"));
    await Promise.all(full);
    expect(sent).toEqual([HIT_BATCH_MAX]);
    const failing = batcher.add(7, hitOf("d", at), "192.0.2.2");
    const other = batcher.add(2, hitOf("e", at), "192.0.2.3");
    await batcher.flush();
    await expect(failing).resolves.toBeUndefined();
    await expect(other).resolves.toBeUndefined();
    expect(sent).toEqual([HIT_BATCH_MAX, 1]);
  });

  it("gets every hit of concurrent gateway requests to its collector in a batch, not one request each", async () => {
    const ips = ["198.19.11.1", "198.19.12.1", "198.19.13.1"];
    const collectors = await Promise.all(ips.map(collectorOf));
    const before = await Promise.all(collectors.map((collector) => collector.ingestCalls()));
    await Promise.all(
      Array.from({ length: 30 }, (_, i) => env.GATEWAY.authorize({ ip: ips[i % 3]!, method: "GET", path: `/batched/${i}` })),
    );
    await eventually(
      async () => (await Promise.all(ips.map((ip) => env.PATHS.clientStats({ ip })))).every((stats) => stats.totalRequests === 10),
      "every hit is counted",
    );
    const after = await Promise.all(collectors.map((collector) => collector.ingestCalls()));
    // Thirty requests, three clients: each collector took its ten hits in one or two batches.
    for (let i = 0; i < ips.length; i += 1) expect(after[i]! - before[i]!).toBeLessThanOrEqual(2);
  });
});

describe("a collector's memory", () => {
  it("holds hits between flushes and writes one row per counter per flush, while clientStats sees them at once", async () => {
    const ip = "198.19.21.1";
    const collector = await collectorOf(ip);
    await collector.holdFlushes(60_000);
    const now = Date.now();
    for (let call = 0; call < 3; call += 1) {
      await env.PATHS.recordMany({ hits: Array.from({ length: 10 }, (_, i) => ({ ip, method: "GET", path: "/held/1", at: now - i })) });
    }
    expect(await collector.bufferedHits()).toBe(30);
    expect((await collector.counts()).clientPaths).toBe(0);
    expect(await env.PATHS.clientStats({ ip })).toMatchObject({ totalRequests: 30, paths: [expect.objectContaining({ requests: 30 })] });
    await collector.flushBuffer();
    expect(await collector.bufferedHits()).toBe(0);
    // Thirty hits over three calls: one counter row.
    expect((await collector.counts()).clientPaths).toBe(1);
    expect(await env.PATHS.clientStats({ ip })).toMatchObject({ totalRequests: 30 });
    expect(await globalRequests("/held/1", floorTo(now, MINUTE_MS) + MINUTE_MS + MINUTE_CLOSE_GRACE_MS)).toBe(30);
    await collector.holdFlushes(null);
  });

  it("flushes on its own within its window, so an idle collector loses nothing when evicted", async () => {
    const ip = "198.19.22.1";
    const collector = await collectorOf(ip);
    await collector.holdFlushes(300);
    const now = Date.now();
    await env.PATHS.recordMany({ hits: Array.from({ length: 5 }, () => ({ ip, method: "GET", path: "/idle/1", at: now })) });
    expect(await collector.bufferedHits()).toBe(5);
    // The pending flush timer keeps the object resident: the eviction waits for it, and the flush is durable.
    await evictDurableObject(collector);
    expect(await collector.bufferedHits()).toBe(0);
    expect(await env.PATHS.clientStats({ ip })).toMatchObject({ totalRequests: 5 });
    expect(await globalRequests("/idle/1", floorTo(now, MINUTE_MS) + MINUTE_MS + MINUTE_CLOSE_GRACE_MS)).toBe(5);
    await collector.holdFlushes(null);
    expect(COLLECTOR_FLUSH_MS).toBeLessThanOrEqual(5_000);
  });

  it("loses at most the unflushed window in a crash: what was flushed stays, exactly once", async () => {
    const ip = "198.19.23.1";
    let collector = await collectorOf(ip);
    await collector.holdFlushes(60_000);
    const now = Date.now();
    const record = (count: number) =>
      env.PATHS.recordMany({ hits: Array.from({ length: count }, () => ({ ip, method: "GET", path: "/crash/1", at: now })) });
    await record(4);
    await collector.flushBuffer();
    await record(3);
    expect(await collector.bufferedHits()).toBe(3);
    // A real crash: the runtime resets the object and its memory is gone (a new stub reaches the new instance).
    await collector.abort().catch(() => {});
    collector = await collectorOf(ip);
    expect(await collector.bufferedHits()).toBe(0);
    expect(await env.PATHS.clientStats({ ip })).toMatchObject({ totalRequests: 4 });
    await record(2);
    await collector.flushBuffer();
    expect(await env.PATHS.clientStats({ ip })).toMatchObject({ totalRequests: 6 });
    expect(await globalRequests("/crash/1", floorTo(now, MINUTE_MS) + MINUTE_MS + MINUTE_CLOSE_GRACE_MS)).toBe(6);
    await collector.holdFlushes(null);
  });

  it("keeps a push that failed in its outbox and delivers it by alarm exactly once, even when the lost push was stored", async () => {
    for (const [ip, fault] of [
      ["198.19.24.1", "before"],
      ["198.19.25.1", "after"],
    ] as const) {
      const collector = await collectorOf(ip);
      const path = `/outbox/${fault}`;
      await collector.failPushes([fault]);
      const now = Date.now();
      await env.PATHS.recordMany({ hits: Array.from({ length: 3 }, () => ({ ip, method: "GET", path, at: now })) });
      await collector.flushBuffer();
      expect((await collector.counts()).outbox).toBe(1);
      const retry = (await collector.tasks()).find((task) => task.kind === "flush")!;
      expect(retry.dueMs).toBeLessThanOrEqual(Date.now() + PUSH_RETRY_MS);
      await evictDurableObject(collector);
      await collector.runAlarmAt(retry.dueMs);
      expect((await collector.counts()).outbox).toBe(0);
      await collector.runAlarmAt(retry.dueMs);
      expect(await globalRequests(path, floorTo(now, MINUTE_MS) + MINUTE_MS + MINUTE_CLOSE_GRACE_MS), fault).toBe(3);
    }
  });
});

describe("the aggregator's pushes", () => {
  it("writes the pushes of many shards that arrive together in one row, answering each after the write", async () => {
    const aggregator = env.AGGREGATOR.getByName("grouped");
    const bucket = floorTo(Date.now() + 31 * 24 * 3_600_000, MINUTE_MS);
    const partialOf = (count: number, client = "c") => {
      const partial = new PathPartial();
      for (let i = 0; i < count; i += 1) partial.add(hitOf(`${client}${i}`, bucket + i));
      return partial.serialize();
    };
    await aggregator.pinClock(bucket + 10_000);
    // Written by an older version, one row per push: a retry of it still replaces it there.
    await runInDurableObject(aggregator, (_instance: unknown, state: DurableObjectState) => {
      state.storage.sql.exec(
        "INSERT INTO shard_partials (shard, bucket_ms, flush_id, partial, received_at_ms) VALUES (9, ?, 1, ?, ?)",
        bucket,
        partialOf(7, "old"),
        bucket,
      );
    });
    await aggregator.holdPushes(200);
    const results = await Promise.all(
      Array.from({ length: 5 }, (_, shard) =>
        aggregator.push({ shard, bucketMs: bucket, flushId: 100 + shard, partial: partialOf(shard + 1) }),
      ),
    );
    expect(results).toEqual(Array.from({ length: 5 }, () => ({ stored: true })));
    // Answered only once written: five pushes, one new row.
    expect(await aggregator.shardPartials()).toBe(6);
    expect(await aggregator.pushRows()).toBe(2);
    // Retries replace their own item, in a group row or in the old table, and add nothing.
    await Promise.all([
      aggregator.push({ shard: 2, bucketMs: bucket, flushId: 102, partial: partialOf(10) }),
      aggregator.push({ shard: 9, bucketMs: bucket, flushId: 1, partial: partialOf(2, "old") }),
    ]);
    expect(await aggregator.shardPartials()).toBe(6);
    expect(await aggregator.pushRows()).toBe(2);
    await aggregator.holdPushes(null);
    await aggregator.runAlarmAt(bucket + MINUTE_MS + MINUTE_CLOSE_GRACE_MS);
    // 1 + 2 + 10 (replaced) + 4 + 5, and the old row's 2 (replaced).
    expect(await aggregator.globalStats({ range: { from: bucket, to: bucket + MINUTE_MS } })).toMatchObject({ totalRequests: 24 });
  });
});

describe("the aggregator's minute compaction", () => {
  it("builds a minute once, after it closes, from every push made during it", async () => {
    const aggregator = env.AGGREGATOR.getByName("minute-close");
    const bucket = floorTo(Date.now() + 30 * 24 * 3_600_000, MINUTE_MS);
    const earlier = bucket - 2 * MINUTE_MS;
    const partialOf = (at: number, count: number) => {
      const partial = new PathPartial();
      for (let i = 0; i < count; i += 1) partial.add(hitOf(`c${i}`, at + i));
      return partial.serialize();
    };
    await aggregator.pinClock(bucket + 10_000);
    await aggregator.pushMany({
      shard: 1,
      items: [
        { bucketMs: earlier, flushId: 10, partial: partialOf(earlier, 1) },
        { bucketMs: bucket, flushId: 11, partial: partialOf(bucket, 2) },
      ],
    });
    // A closed minute is due soon; the open one waits for its close.
    const compact = (await aggregator.tasks()).find((task) => task.kind === "compact")!;
    expect(compact.dueMs).toBe(bucket + 10_000 + 2_000);
    await aggregator.runAlarmAt(bucket + 20_000);
    expect(await aggregator.rollupBuckets()).toEqual([{ granularity: "minute", bucket_ms: earlier, paths: 2 }]);
    expect((await aggregator.tasks()).find((task) => task.kind === "compact")!.dueMs).toBe(bucket + MINUTE_MS + MINUTE_CLOSE_GRACE_MS);
    await aggregator.pinClock(bucket + 50_000);
    await aggregator.push({ shard: 2, bucketMs: bucket, flushId: 12, partial: partialOf(bucket, 3) });
    await aggregator.runAlarmAt(bucket + MINUTE_MS + MINUTE_CLOSE_GRACE_MS);
    expect(await aggregator.rollupBuckets()).toEqual([
      { granularity: "minute", bucket_ms: earlier, paths: 2 },
      { granularity: "minute", bucket_ms: bucket, paths: 2 },
    ]);
    expect(await aggregator.globalStats({ range: { from: bucket, to: bucket + MINUTE_MS } })).toMatchObject({ totalRequests: 5 });
  });
});
