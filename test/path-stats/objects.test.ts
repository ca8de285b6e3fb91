import { env } from "cloudflare:workers";
import { evictDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { RecordInput } from "../../rpc/path-stats";
import { DAY_MS, HOUR_MS, MINUTE_MS, floorTo } from "../../src/platform/buckets";
import { OTHER_TEMPLATE } from "../../src/path-stats/normalize";
import { type NormalizedHit, Partial as PathPartial } from "../../src/path-stats/partial";
import { clientIdOf } from "../../src/path-stats/privacy";
import { shardOf } from "../../src/path-stats/shard";
import type { Env } from "../../src/platform/env";
import { PathStatsService } from "../../src/path-stats/service";
import { codeOf } from "../fixtures/errors";
import { shardName } from "../../src/platform/names";
import { COLLECTOR_FLUSH_MS } from "../../src/path-stats/collector-buffer";

const SHARDS = 16; // PATH_SHARDS in vitest.config.ts

/** Builds the partial a collector would push for `hits`. */
function partialOf(hits: Partial<NormalizedHit>[]): Uint8Array {
  const partial = new PathPartial();
  for (const hit of hits) partial.add({ client: "c", method: "GET", path: "/", status: 200, at: 0, ...hit } as NormalizedHit);
  return partial.serialize();
}

/** A time far enough ahead that no real alarm of an isolated aggregator fires during the test. */
const FUTURE = floorTo(Date.now() + 60 * DAY_MS, DAY_MS);

describe("PathStats input validation", () => {
  const good: RecordInput = { ip: "198.51.100.20", method: "GET", path: "/validation/1", status: 200, latencyMs: 12 };

  it("rejects bad hits, batches, ranges and queries with INVALID_ARGUMENT and records nothing", async () => {
    const now = Date.now();
    const bad: Record<string, unknown>[] = [
      { ...good, ip: "300.1.1.1" },
      { ...good, ip: "2001:db8::g" },
      { ...good, ip: "" },
      { ...good, method: "BREW" },
      { ...good, method: 7 },
      { ...good, status: 99 },
      { ...good, status: 600 },
      { ...good, status: 200.5 },
      { ...good, latencyMs: -1 },
      { ...good, latencyMs: Number.NaN },
      { ...good, latencyMs: 3_600_001 },
      { ...good, at: 0 },
      { ...good, at: now + DAY_MS },
      { ...good, at: now - 2 * HOUR_MS },
      { ...good, path: "validation" },
      { ...good, path: "" },
      { ...good, path: `/${"x".repeat(2_048)}` },
      { ...good, path: "/a\u0000b" },
      { ...good, country: "Narnia" },
      { ...good, extra: true },
    ];
    for (const hit of bad) {
      expect(await codeOf(env.PATHS.record(hit as unknown as RecordInput)), JSON.stringify(hit)).toBe("INVALID_ARGUMENT");
      // One bad hit at the end of a batch: the good ones before it are not recorded either.
      expect(await codeOf(env.PATHS.recordMany({ hits: [good, good, hit as unknown as RecordInput] }))).toBe("INVALID_ARGUMENT");
    }
    expect(await codeOf(env.PATHS.recordMany({ hits: Array.from({ length: 1_001 }, () => good) }))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(env.PATHS.recordMany({} as never))).toBe("INVALID_ARGUMENT");

    for (const range of ["2h", "", { from: 10, to: 5 }, { from: 0, to: 401 * DAY_MS }, { from: 1 }, { from: 1.5, to: 2 }]) {
      expect(await codeOf(env.PATHS.globalStats({ range } as never)), JSON.stringify(range)).toBe("INVALID_ARGUMENT");
      expect(await codeOf(env.PATHS.export({ range, format: "csv" } as never))).toBe("INVALID_ARGUMENT");
    }
    expect(await codeOf(env.PATHS.topPaths({ range: "1h", sortBy: "latency" } as never))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(env.PATHS.topPaths({ range: "1h", limit: 0 }))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(env.PATHS.topClients({ range: "1h", limit: 1_001 }))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(env.PATHS.clientStats({ ip: "not-an-ip" }))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(env.PATHS.export({ range: "1h", format: "xml" } as never))).toBe("INVALID_ARGUMENT");

    // Nothing was recorded anywhere: no collector staged or counted a thing.
    for (let shard = 0; shard < SHARDS; shard += 1) {
      expect(await env.PATH_COLLECTOR.getByName(shardName(shard)).counts()).toEqual({ staged: 0, outbox: 0, clientPaths: 0 });
    }
  });

  it("lets objects validate too: a collector refuses hits of another shard, the aggregator a corrupt partial", async () => {
    const client = (await clientIdOf("198.51.100.20", "truncate"))!;
    const wrong = shardName((shardOf(client, SHARDS) + 1) % SHARDS);
    const hit = { client, method: "GET", path: "/", status: 200, at: Date.now() };
    expect(await codeOf(env.PATH_COLLECTOR.getByName(wrong).ingest({ hits: [hit] }))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(env.PATH_COLLECTOR.getByName("not-a-shard").ingest({ hits: [hit] }))).toBe("INVALID_ARGUMENT");
    const aggregator = env.AGGREGATOR.getByName("validation");
    const push = { shard: 0, bucketMs: floorTo(Date.now(), MINUTE_MS), flushId: 1 };
    expect(await codeOf(aggregator.push({ ...push, partial: new Uint8Array([1, 2, 3]) }))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(aggregator.push({ ...push, bucketMs: push.bucketMs + 1, partial: partialOf([{}]) }))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(aggregator.push({ ...push, bucketMs: push.bucketMs - 2 * DAY_MS, partial: partialOf([{}]) }))).toBe(
      "INVALID_ARGUMENT",
    );
    expect(await aggregator.shardPartials()).toBe(0);
  });

  it("refuses out-of-window minutes in a batch push as values, storing the rest", async () => {
    const aggregator = env.AGGREGATOR.getByName("validation-many");
    const bucket = floorTo(Date.now(), MINUTE_MS) - 5 * MINUTE_MS;
    const old = bucket - 2 * DAY_MS;
    const result = await aggregator.pushMany({
      shard: 1,
      items: [
        { bucketMs: bucket, flushId: 1, partial: partialOf([{ at: bucket }]) },
        { bucketMs: old, flushId: 1, partial: partialOf([{ at: old }]) },
      ],
    });
    expect(result).toEqual({ stored: 1, refused: [{ bucketMs: old, flushId: 1, reason: expect.stringContaining("acceptance window") }] });
    expect(await aggregator.shardPartials()).toBe(1);
    const corrupt = { bucketMs: bucket, flushId: 2, partial: new Uint8Array([9]) };
    expect(await codeOf(aggregator.pushMany({ shard: 1, items: [corrupt] }))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(aggregator.pushMany({ shard: 1, items: [] }))).toBe("INVALID_ARGUMENT");
    expect(await aggregator.shardPartials()).toBe(1);
  });
});

describe("PathCollectorDO", () => {
  it("loses nothing when evicted between hits and before its flush, and a second flush changes nothing", async () => {
    const ip = "192.0.2.55";
    const client = (await clientIdOf(ip, "truncate"))!;
    const collector = env.PATH_COLLECTOR.getByName(shardName(shardOf(client, SHARDS)));
    const now = Date.now();
    for (let i = 0; i < 6; i += 1) {
      await env.PATHS.record({
        ip,
        method: "post",
        path: `/evict/${i}?x=${i}`,
        status: i === 5 ? 503 : 200,
        latencyMs: 10 + i,
        at: now - i * MINUTE_MS,
        country: "de",
        userAgent: "probe/1",
      });
      await evictDurableObject(collector);
    }
    const stats = await env.PATHS.clientStats({ ip: "192.0.2.200", range: "24h" });
    expect(stats.ip).toBe(client);
    expect(stats.totalRequests).toBe(6);
    expect(stats.paths).toEqual([
      expect.objectContaining({
        method: "POST",
        path: "/evict/:id",
        requests: 6,
        errors: 1,
        country: "DE",
        userAgent: "probe/1",
        firstSeen: now - 5 * MINUTE_MS,
        lastSeen: now,
      }),
    ]);
    expect(stats.paths[0]!.statusClasses).toMatchObject({ "2xx": 5, "5xx": 1 });

    const later = now + 2 * MINUTE_MS;
    await collector.runAlarmAt(later);
    await evictDurableObject(collector);
    await collector.runAlarmAt(later);
    expect(await collector.counts()).toMatchObject({ staged: 0, outbox: 0 });
    const aggregator = env.AGGREGATOR.getByName("global");
    await aggregator.runAlarmAt(later);
    const state = await aggregator.snapshot();
    await collector.runAlarmAt(later);
    await aggregator.runAlarmAt(later);
    expect(await aggregator.snapshot()).toBe(state);
    const detail = await env.PATHS.pathDetail({ range: "1h", path: "/evict/77" });
    expect(detail.methods).toEqual([
      expect.objectContaining({ method: "POST", path: "/evict/:id", requests: 6, errors: 1, statuses: { "200": 5, "503": 1 } }),
    ]);
  });

  it("flushes when woken without a name (an alarm after an eviction or restart): the shard comes from its first accepted hits", async () => {
    const ip = "192.0.2.77";
    const client = (await clientIdOf(ip, "truncate"))!;
    const named = env.PATH_COLLECTOR.getByName(shardName(shardOf(client, SHARDS)));
    const now = Date.now();
    await env.PATHS.record({ ip, method: "GET", path: "/nameless/1", status: 200, latencyMs: 5, at: now - 2 * MINUTE_MS });
    await named.wakeNameless();
    await evictDurableObject(named);
    await named.runAlarmAt(now + MINUTE_MS);
    expect(await named.counts()).toMatchObject({ staged: 0, outbox: 0 });
    await env.AGGREGATOR.getByName("global").runAlarmAt(now + MINUTE_MS);
    expect((await env.PATHS.pathDetail({ range: "1h", path: "/nameless/1" })).methods).toEqual([
      expect.objectContaining({ method: "GET", requests: 1 }),
    ]);

    // A collector from before the shard was kept in `meta` finds it from the clients it counts.
    await named.forgetStoredShard();
    await env.PATHS.record({ ip, method: "GET", path: "/nameless/2", status: 200, latencyMs: 5, at: now - MINUTE_MS });
    await named.forgetStoredShard();
    await evictDurableObject(named);
    await named.runAlarmAt(now + 2 * MINUTE_MS);
    expect(await named.counts()).toMatchObject({ staged: 0, outbox: 0 });
  });

  it("makes a hit visible to global queries within 65 seconds: pushed by the collector's own timer, compacted 5 s after its minute", async () => {
    const ip = "192.0.2.211";
    const client = (await clientIdOf(ip, "truncate"))!;
    const collector = env.PATH_COLLECTOR.getByName(shardName(shardOf(client, SHARDS)));
    await collector.holdFlushes(300);
    const before = (await env.PATHS.clientStats({ ip })).totalRequests;
    const at = Date.now();
    await env.PATHS.record({ ip, method: "GET", path: "/fresh", status: 200, at });
    // Held in memory, and already counted for clientStats.
    expect(await collector.bufferedHits()).toBe(1);
    expect((await env.PATHS.clientStats({ ip })).totalRequests).toBe(before + 1);
    // The collector's timer flushes on its own (no alarm, no call), well within COLLECTOR_FLUSH_MS.
    for (let attempt = 0; attempt < 100 && (await collector.bufferedHits()) > 0; attempt += 1) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(await collector.bufferedHits()).toBe(0);
    expect(COLLECTOR_FLUSH_MS).toBeLessThanOrEqual(5_000);
    await collector.holdFlushes(null);
    const minute = floorTo(at, MINUTE_MS);
    const aggregator = env.AGGREGATOR.getByName("global");
    const compact = (await aggregator.tasks()).find((task) => task.kind === "compact")!;
    expect(compact.dueMs).toBeLessThanOrEqual(minute + MINUTE_MS + 5_000);
    await aggregator.runAlarmAt(Math.max(compact.dueMs, minute + MINUTE_MS + 5_000));
    const detail = await env.PATHS.pathDetail({ range: "1h", path: "/fresh" });
    expect(detail.methods).toEqual([expect.objectContaining({ method: "GET", requests: 1 })]);
  });

  it("forgets per-client counters past the client retention when pruned, which is safe to do twice", async () => {
    const client = "h:retention-probe";
    const collector = env.PATH_COLLECTOR.getByName(shardName(shardOf(client, SHARDS)));
    const at = FUTURE + 5 * MINUTE_MS;
    await collector.pinClock(at);
    await collector.ingest({ hits: [{ client, method: "GET", path: "/kept", status: 200, at }] });
    expect(await collector.clientStats({ client })).toMatchObject({ totalRequests: 1, firstSeen: at });
    // No task of its own: the aggregator's daily sweep prunes every shard (below).
    expect((await collector.tasks()).map((task) => task.kind).filter((kind) => kind !== "metrics-push")).toEqual([]);
    // 29 days later the counter is still inside the 30-day retention; 31 days later it is gone.
    await collector.pinClock(at + 29 * DAY_MS);
    await collector.prune();
    expect(await collector.clientStats({ client })).toMatchObject({ totalRequests: 1 });
    await collector.pinClock(at + 31 * DAY_MS);
    for (let i = 0; i < 2; i += 1) {
      await collector.prune();
      expect(await collector.clientStats({ client })).toMatchObject({ totalRequests: 0, paths: [] });
    }
    await collector.pinClock(null);
  });

  it("is pruned by the aggregator's daily sweep, scheduled once the first day closes and recurring", async () => {
    const client = "h:sweep-probe";
    const collector = env.PATH_COLLECTOR.getByName(shardName(shardOf(client, SHARDS)));
    const at = FUTURE + 7 * MINUTE_MS;
    await collector.pinClock(at);
    await collector.ingest({ hits: [{ client, method: "GET", path: "/swept", status: 200, at }] });
    await collector.flushBuffer();
    const aggregator = env.AGGREGATOR.getByName("sweep");
    await aggregator.pinClock(at);
    await aggregator.push({ shard: 0, bucketMs: floorTo(at, MINUTE_MS), flushId: 1, partial: partialOf([{ at }]) });
    // No counter expires within a day: nothing is scheduled for it until the aggregator closes its first day.
    expect((await aggregator.tasks()).map((task) => task.kind)).not.toContain("sweep-collectors");
    await aggregator.runAlarmAt(FUTURE + DAY_MS + 6 * MINUTE_MS);
    const sweep = (await aggregator.tasks()).find((task) => task.kind === "sweep-collectors")!;
    // 10 minutes after midnight UTC, after the day's close.
    expect(sweep.dueMs).toBe(FUTURE + DAY_MS + 10 * MINUTE_MS);
    // The collector reads its own clock: 31 days on, its counter is past the retention.
    await collector.pinClock(at + 31 * DAY_MS);
    expect(await collector.clientStats({ client })).toMatchObject({ totalRequests: 1 });
    await aggregator.runAlarmAt(sweep.dueMs);
    expect(await collector.clientStats({ client })).toMatchObject({ totalRequests: 0 });
    // Recurring: the next sweep is a day later.
    expect((await aggregator.tasks()).find((task) => task.kind === "sweep-collectors")!.dueMs).toBe(sweep.dueMs + DAY_MS);
    await collector.pinClock(null);
  });

  it("stores keyed hashes in hash mode, and refuses to record without a key", async () => {
    const hashed = new PathStatsService({ ...env, PATH_IP_MODE: "hash", PATH_IP_HASH_KEY: "a-test-key-of-some-length" } as unknown as Env);
    const ip = "203.0.113.77";
    await hashed.record({ ip, method: "GET", path: "/private", status: 200 });
    await hashed.record({ ip, method: "GET", path: "/private", status: 200 });
    const stats = await hashed.clientStats({ ip });
    expect(stats.ip).toBe(await clientIdOf(ip, "hash", "a-test-key-of-some-length"));
    expect(stats.ip).not.toContain("203");
    expect(stats.totalRequests).toBe(2);
    // The same address under the default (truncate) mode is another client, with nothing recorded.
    expect(await env.PATHS.clientStats({ ip })).toMatchObject({ ip: "203.0.113.0/24", totalRequests: 0 });

    const keyless = new PathStatsService({ ...env, PATH_IP_MODE: "hash" } as unknown as Env);
    expect(await codeOf(keyless.record({ ip: "203.0.113.78", method: "GET", path: "/private" }))).toBe("INTERNAL");
  });

  it("folds a batch's repeats into one counter per client, path and day, keeping the latest country and agent", async () => {
    const now = Date.now();
    const ip = "100.64.7.9";
    const hits: RecordInput[] = [
      { ip, method: "GET", path: "/fold/1", status: 200, at: now - 3_000, country: "fr", userAgent: "old" },
      { ip, method: "GET", path: "/fold/2", status: 404, at: now - 1_000, country: "it" },
      { ip, method: "GET", path: "/fold/3", status: 502, at: now - 2_000, userAgent: "middle" },
      { ip, method: "PUT", path: "/fold/3", status: 201, at: now },
    ];
    await env.PATHS.recordMany({ hits });
    const stats = await env.PATHS.clientStats({ ip });
    expect(stats).toMatchObject({ totalRequests: 4, uniquePaths: 2, firstSeen: now - 3_000, lastSeen: now });
    expect(stats.paths[0]).toMatchObject({
      method: "GET",
      path: "/fold/:id",
      requests: 3,
      errors: 1,
      country: "IT",
      userAgent: "middle",
      firstSeen: now - 3_000,
      lastSeen: now - 1_000,
      statusClasses: { "1xx": 0, "2xx": 1, "3xx": 0, "4xx": 1, "5xx": 1, none: 0 },
    });
  });

  it("groups clients by network when truncating: IPv4 /24 and IPv6 /48 share one client", async () => {
    const now = Date.now();
    await env.PATHS.recordMany({
      hits: [
        { ip: "2001:db8:77:1::1", method: "GET", path: "/net", at: now },
        { ip: "2001:db8:77:ffff::2", method: "GET", path: "/net", at: now },
        { ip: "203.0.113.1", method: "GET", path: "/net", at: now },
        { ip: "::ffff:203.0.113.99", method: "GET", path: "/net", at: now },
      ],
    });
    expect(await env.PATHS.clientStats({ ip: "2001:db8:77::9" })).toMatchObject({ ip: "2001:db8:77::/48", totalRequests: 2 });
    expect(await env.PATHS.clientStats({ ip: "203.0.113.250" })).toMatchObject({ ip: "203.0.113.0/24", totalRequests: 2 });
    expect(await env.PATHS.clientStats({ ip: "203.0.114.1" })).toMatchObject({
      totalRequests: 0,
      uniquePaths: 0,
      firstSeen: null,
      paths: [],
    });
  });
});

describe("AggregatorDO", () => {
  it("replaces a retried or doubled push, and adds a later flush of the same minute", async () => {
    const aggregator = env.AGGREGATOR.getByName("replace");
    const bucket = FUTURE + 10 * MINUTE_MS;
    await aggregator.pinClock(bucket + MINUTE_MS);
    const push = { shard: 3, bucketMs: bucket, flushId: 1, partial: partialOf([{ at: bucket }, { at: bucket + 1 }]) };
    await aggregator.push(push);
    await aggregator.push(push);
    await aggregator.push({ ...push, flushId: 1, partial: partialOf([{ at: bucket }, { at: bucket + 1 }, { at: bucket + 2 }]) });
    await aggregator.push({ ...push, flushId: 2, partial: partialOf([{ at: bucket + 5, client: "late" }]) });
    await aggregator.runAlarmAt(bucket + 2 * MINUTE_MS);
    const range = { from: bucket, to: bucket + MINUTE_MS };
    expect(await aggregator.globalStats({ range })).toMatchObject({ totalRequests: 4, uniqueClients: 2, uniqueClientsExact: true });
  });

  it("compacts minutes into hours and days, answers the same totals at every granularity, and applies retention", async () => {
    const aggregator = env.AGGREGATOR.getByName("compaction");
    const start = FUTURE;
    const paths = ["/a", "/b", "/c"];
    let expected = 0;
    let expectedErrors = 0;
    const latencies: number[] = [];
    let n = 0;
    // Three days, a burst of minutes every 5 hours; each push arrives a minute after its minute.
    for (let t = start; t < start + 3 * DAY_MS; t += 5 * HOUR_MS) {
      for (let m = 0; m < 3; m += 1) {
        const bucket = t + m * MINUTE_MS;
        const hits = Array.from({ length: 7 }, (_, i) => ({
          at: bucket + i,
          client: `client-${n++ % 50}`,
          path: paths[i % 3]!,
          status: i === 6 ? 500 : 200,
          latencyMs: 5 + i * 3,
        }));
        expected += hits.length;
        expectedErrors += 1;
        latencies.push(...hits.map((hit) => hit.latencyMs));
        await aggregator.pinClock(bucket + MINUTE_MS);
        await aggregator.push({ shard: m, bucketMs: bucket, flushId: 1, partial: partialOf(hits) });
        await aggregator.runAlarmAt(bucket + MINUTE_MS + 5_000);
      }
    }
    const end = start + 4 * DAY_MS;
    await aggregator.pinClock(end);
    await aggregator.runAlarmAt(end);
    await evictDurableObject(aggregator);
    await aggregator.pinClock(end);
    const state = await aggregator.snapshot();
    await aggregator.runAlarmAt(end);
    expect(await aggregator.snapshot()).toBe(state);

    const buckets = await aggregator.rollupBuckets();
    const by = (g: string) => buckets.filter((b) => b.granularity === g);
    expect(by("day").map((b) => b.bucket_ms)).toEqual([start, start + DAY_MS, start + 2 * DAY_MS]);
    expect(by("hour").length).toBe(15);
    // Minutes older than 26 hours are gone once their hour is compacted.
    expect(by("minute").every((b) => b.bucket_ms >= end - 26 * HOUR_MS)).toBe(true);
    // Shard partials live as long as minutes: only the last burst (70 h in, 26 h before the end) is left.
    expect(await aggregator.shardPartials()).toBe(3);

    const whole = await aggregator.globalStats({ range: { from: start, to: start + 3 * DAY_MS } });
    expect(whole).toMatchObject({ totalRequests: expected, errors: expectedErrors, uniqueClients: 50, uniquePaths: 3 });
    expect(whole.range.buckets).toBe(3);
    const sorted = latencies.sort((a, b) => a - b);
    expect(Math.abs(whole.latency.p90! - sorted[Math.floor(0.9 * (sorted.length - 1))]!)).toBeLessThanOrEqual(sorted.at(-1)! * 0.01);
    // A range that needs hours at both ends sums to the same as its parts.
    const mid = start + DAY_MS + 10 * HOUR_MS;
    const left = await aggregator.globalStats({ range: { from: start, to: mid } });
    const right = await aggregator.globalStats({ range: { from: mid, to: start + 3 * DAY_MS } });
    expect(left.totalRequests + right.totalRequests).toBe(expected);
    expect(left.range.buckets).toBe(1 + 10);
    const top = await aggregator.topPaths({ range: "7d", sortBy: "errors" });
    expect(top.paths.map((p) => p.path)).toEqual(["/a", "/b", "/c"]);
    expect(top.paths.reduce((sum, p) => sum + p.requests, 0)).toBe(expected);
    expect(top.paths[0]!.errors).toBe(expectedErrors);
  });

  it("rebuilds an already compacted hour and day when a late minute arrives", async () => {
    const aggregator = env.AGGREGATOR.getByName("late");
    const hour = FUTURE + 3 * HOUR_MS;
    const minute = hour + 17 * MINUTE_MS;
    await aggregator.pinClock(minute + MINUTE_MS);
    await aggregator.push({ shard: 2, bucketMs: minute, flushId: 1, partial: partialOf([{ at: minute }, { at: minute + 1 }]) });
    const afterDay = FUTURE + DAY_MS + 10 * MINUTE_MS;
    await aggregator.runAlarmAt(afterDay);
    const range = { from: hour, to: hour + HOUR_MS };
    expect(await aggregator.globalStats({ range })).toMatchObject({ totalRequests: 2, range: { buckets: 1 } });
    const day = { from: FUTURE, to: FUTURE + DAY_MS };
    expect(await aggregator.globalStats({ range: day })).toMatchObject({ totalRequests: 2, range: { buckets: 1 } });

    // 23 hours after the minute (its day already closed), inside the 24-hour acceptance window,
    // a late flush of the same minute arrives.
    const late = minute + 23 * HOUR_MS;
    await aggregator.pinClock(late);
    await aggregator.push({ shard: 2, bucketMs: minute, flushId: 2, partial: partialOf([{ at: minute + 5, client: "late" }]) });
    for (let i = 0; i < 2; i += 1) await aggregator.runAlarmAt(late + 5_000);
    expect(await aggregator.globalStats({ range })).toMatchObject({ totalRequests: 3, uniqueClients: 2, range: { buckets: 1 } });
    expect(await aggregator.globalStats({ range: day })).toMatchObject({ totalRequests: 3, range: { buckets: 1 } });
  });

  it("caps distinct templates and counts the rest as (other)", async () => {
    const aggregator = env.AGGREGATOR.getByName("cap");
    const bucket = FUTURE + 20 * MINUTE_MS;
    await aggregator.pinClock(bucket + MINUTE_MS);
    // 1,000 templates is the default cap; 1,010 distinct paths, the last 10 with one hit each.
    const hits = Array.from({ length: 1_010 }, (_, i) => ({ at: bucket, path: `/t${i}`, method: "GET" }));
    hits.push(...Array.from({ length: 1_000 }, (_, i) => ({ at: bucket, path: `/t${i}`, method: "GET" })));
    await aggregator.push({ shard: 0, bucketMs: bucket, flushId: 1, partial: partialOf(hits) });
    await aggregator.runAlarmAt(bucket + 2 * MINUTE_MS);
    const range = { from: bucket, to: bucket + MINUTE_MS };
    const stats = await aggregator.globalStats({ range });
    expect(stats).toMatchObject({ totalRequests: 2_010, uniquePaths: 1_001 });
    const other = await aggregator.pathDetail({ range, path: OTHER_TEMPLATE });
    expect(other.methods).toEqual([expect.objectContaining({ method: "GET", requests: 10 })]);
  });

  it("answers a time series per minute, hour or day whose points sum to the global totals", async () => {
    const aggregator = env.AGGREGATOR.getByName("series");
    const base = FUTURE + 2 * HOUR_MS;
    const first = base + 10 * MINUTE_MS;
    const second = base + 12 * MINUTE_MS;
    await aggregator.pinClock(base + 30 * MINUTE_MS);
    await aggregator.push({
      shard: 1,
      bucketMs: first,
      flushId: 1,
      partial: partialOf([{ at: first }, { at: first, status: 500 }, { at: first, status: 429 }]),
    });
    await aggregator.push({ shard: 2, bucketMs: second, flushId: 1, partial: partialOf([{ at: second, status: 429 }]) });
    await aggregator.runAlarmAt(base + 31 * MINUTE_MS);
    await aggregator.pinClock(base + 31 * MINUTE_MS);

    const hour = await aggregator.timeSeries({ range: "1h" });
    expect(hour.stepMs).toBe(MINUTE_MS);
    expect(hour.points.length).toBe(Math.round((hour.range.to - hour.range.from) / MINUTE_MS));
    expect(hour.points.every((p, i) => p.at === hour.range.from + i * MINUTE_MS)).toBe(true);
    expect(hour.points.find((p) => p.at === first)).toEqual({ at: first, requests: 3, errors: 1, rateLimited: 1 });
    expect(hour.points.find((p) => p.at === second)).toEqual({ at: second, requests: 1, errors: 0, rateLimited: 1 });
    expect(hour.points.filter((p) => p.requests > 0).length).toBe(2);
    const total = (await aggregator.globalStats({ range: "1h" })).totalRequests;
    expect(hour.points.reduce((sum, p) => sum + p.requests, 0)).toBe(total);
    expect(total).toBe(4);

    // Once the hour and the day are compacted, longer ranges are answered per hour and per day.
    await aggregator.runAlarmAt(FUTURE + DAY_MS + 10 * MINUTE_MS);
    await evictDurableObject(aggregator);
    const hours = await aggregator.timeSeries({ range: { from: FUTURE, to: FUTURE + 6 * HOUR_MS } });
    expect(hours.stepMs).toBe(HOUR_MS);
    expect(hours.points.map((p) => p.requests)).toEqual([0, 0, 4, 0, 0, 0]);
    expect(hours.points[2]).toEqual({ at: base, requests: 4, errors: 1, rateLimited: 2 });
    const days = await aggregator.timeSeries({ range: { from: FUTURE - DAY_MS, to: FUTURE + DAY_MS } });
    expect(days).toMatchObject({
      stepMs: DAY_MS,
      points: [
        { at: FUTURE - DAY_MS, requests: 0 },
        { at: FUTURE, requests: 4, errors: 1, rateLimited: 2 },
      ],
    });
    // A long range is drawn per day even where only minutes are stored (here, before FUTURE).
    const month = await aggregator.timeSeries({ range: { from: FUTURE - 29 * DAY_MS, to: FUTURE + DAY_MS } });
    expect(month.stepMs).toBe(DAY_MS);
    expect(month.points.length).toBe(30);
    expect(month.points.at(-1)).toEqual({ at: FUTURE, requests: 4, errors: 1, rateLimited: 2 });
  });

  it("rejects a bad time-series range with INVALID_ARGUMENT", async () => {
    for (const range of ["2h", { from: 5, to: 5 }, { from: 0, to: 401 * DAY_MS }, { from: 0, to: 1, step: 1 }]) {
      expect(await codeOf(env.PATHS.timeSeries({ range } as never)), JSON.stringify(range)).toBe("INVALID_ARGUMENT");
    }
    expect(await codeOf(env.PATHS.timeSeries({ range: "1h", extra: 1 } as never))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(env.AGGREGATOR.getByName("series-bad").timeSeries({ range: "1d" }))).toBe("INVALID_ARGUMENT");
  });

  it("pages an export by cursor, every row exactly once", async () => {
    const aggregator = env.AGGREGATOR.getByName("export-pages");
    const bucket = FUTURE + 30 * MINUTE_MS;
    await aggregator.pinClock(bucket + 3 * MINUTE_MS);
    for (let m = 0; m < 3; m += 1) {
      const hits = Array.from({ length: 40 }, (_, i) => ({ at: bucket + m * MINUTE_MS, path: `/café/e${i}` }));
      await aggregator.push({ shard: 0, bucketMs: bucket + m * MINUTE_MS, flushId: 1, partial: partialOf(hits) });
    }
    await aggregator.runAlarmAt(bucket + 4 * MINUTE_MS);
    const range = { from: bucket, to: bucket + 3 * MINUTE_MS };
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await aggregator.exportPage(cursor === undefined ? { range, limit: 7 } : { range, limit: 7, cursor });
      seen.push(...page.rows.map((row) => `${row.bucketStart} ${row.path} ${row.requests}`));
      cursor = page.cursor;
      pages += 1;
    } while (cursor !== undefined);
    expect(pages).toBe(Math.ceil(120 / 7));
    expect(new Set(seen).size).toBe(120);
    expect(seen[0]).toMatch(/\/café\/e/);
    expect(await codeOf(aggregator.exportPage({ range, cursor: "garbage" }))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(aggregator.exportPage({ range, cursor: "not a cursor!" }))).toBe("INVALID_ARGUMENT");
  });
});
