import { env } from "cloudflare:workers";
import { evictDurableObject, SELF } from "cloudflare:test";
import { newHttpBatchRpcSession, type RpcStub } from "capnweb";
import { describe, expect, it } from "vitest";
import type { AdminApi, TollgateRpc } from "../../../rpc/admin";
import type { CostReport, MetricsReport, SurfaceMetrics } from "../../../rpc/metrics";
import { DEFAULT_COST_PRICES, MONTH_MS } from "../../../src/platform/metering/config";
import { priceUsage } from "../../../src/operations/metrics/cost-report";
import { latencyBucket, type MetricRow, quantileOf, ZERO_BUCKET } from "../../../src/platform/metering/model";
import { DAY_MS, HOUR_MS, MINUTE_MS, floorTo } from "../../../src/platform/buckets";
import { TEST_ADMIN_TOKEN } from "../../fixtures/constants";
import { thrown } from "../../fixtures/errors";

/**
 * Pushes every object count this isolate holds now (they would go within METRICS_BUFFER_MS): a
 * control of the probe, and it pushes the whole isolate's object counts, other objects' too.
 */
const pushObjectCounts = async () => expect(await env.METRICS_PROBE.getByName("pusher").pushMetrics()).toBe(true);

function kindOf(report: MetricsReport, surface: "objects" | "entrypoints", kind: string): SurfaceMetrics | undefined {
  return report[surface].find((entry) => entry.kind === kind);
}

/** Calls per method and outcome of one object class or entrypoint, as "method code" -> calls. */
async function outcomes(surface: "objects" | "entrypoints", kind: string): Promise<Record<string, number>> {
  const report = await env.ADMIN.metrics({ range: "1h" });
  const out: Record<string, number> = {};
  for (const method of kindOf(report, surface, kind)?.methods ?? []) {
    for (const [code, calls] of Object.entries(method.outcomes)) out[`${method.method} ${code}`] = calls;
  }
  return out;
}

function delta(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [key, value] of Object.entries(after)) if (value !== (before[key] ?? 0)) out[key] = value - (before[key] ?? 0);
  return out;
}

function methodRows(report: CostReport, kind: string, method: string) {
  return (
    report.byMethod.find((row) => row.surface === "object" && row.kind === kind && row.method === method) ?? {
      requests: 0,
      rowsRead: 0,
      rowsWritten: 0,
    }
  );
}

describe("metrics", () => {
  it("counts every method of an object by outcome code, exactly, across an eviction", async () => {
    const before = await outcomes("objects", "MetricsProbeDO");
    const probe = env.METRICS_PROBE.getByName("mixed");
    for (let i = 0; i < 3; i++) expect(await probe.ok()).toBe("ok");
    await evictDurableObject(probe);
    expect(await probe.echo({ n: 4 })).toBe(4);
    expect(await probe.echo({ n: 5 })).toBe(5);
    await evictDurableObject(probe);
    // The errors come last: the test pool cannot evict an object once one of its calls has thrown.
    for (let i = 0; i < 2; i++) expect((await thrown(probe.refuse())).code).toBe("CONFLICT");
    expect((await thrown(probe.crash())).code).toBeUndefined();
    expect((await thrown(Promise.resolve().then(() => probe.echo({ n: "x" })))).code).toBe("INVALID_ARGUMENT");
    expect((await thrown(Promise.resolve().then(() => probe.echo({ n: 1, extra: true })))).code).toBe("INVALID_ARGUMENT");
    // Counted in memory and pushed (each eviction waited for its push): the object keeps no table for them.
    expect((await probe.tables()).filter((table) => table.startsWith("_metrics"))).toEqual([]);

    await probe.pushMetrics();
    expect(delta(await outcomes("objects", "MetricsProbeDO"), before)).toEqual({
      "ok ok": 3,
      "refuse CONFLICT": 2,
      "crash INTERNAL": 1,
      "echo ok": 2,
      "echo INVALID_ARGUMENT": 2,
    });
  });

  it("reports error rate, latency percentiles and rows per method", async () => {
    const probe = env.METRICS_PROBE.getByName("shape");
    await probe.ok();
    await thrown(probe.refuse());
    await probe.pushMetrics();
    const report = await env.ADMIN.metrics({ range: "1h" });
    const kind = kindOf(report, "objects", "MetricsProbeDO")!;
    const refuse = kind.methods.find((method) => method.method === "refuse")!;
    expect(refuse.errorRate).toBe(1);
    expect(kind.methods.find((method) => method.method === "ok")!.errorRate).toBe(0);
    expect(refuse.latencyMs.p50).not.toBeNull();
    expect(refuse.latencyMs.p50!).toBeLessThanOrEqual(refuse.latencyMs.p99!);
    expect(kind.calls).toBe(kind.methods.reduce((total, method) => total + method.calls, 0));
    expect(report.range.to - report.range.from).toBe(HOUR_MS);
  });

  it("never counts a doubled push twice, nor a retried or stale batch", async () => {
    const probe = env.METRICS_PROBE.getByName("doubled");
    const before = await outcomes("objects", "MetricsProbeDO");
    await probe.ok();
    // Two pushes at once (a timer's and a test's) send the same batch: it is stored once.
    await Promise.all([probe.pushMetrics(), probe.pushMetrics()]);
    await probe.pushMetrics();
    expect(delta(await outcomes("objects", "MetricsProbeDO"), before)).toEqual({ "ok ok": 1 });

    // The same batch pushed twice (a retry after a lost answer) is stored once.
    const shard = env.METRICS.getByName("metrics:0");
    const minuteMs = floorTo(Date.now(), MINUTE_MS);
    const push = {
      source: "test:doubled",
      surface: "object" as const,
      batches: [
        {
          pushId: 7,
          rows: [{ minuteMs, kind: "DoubledDO", method: "m", code: "ok", bucket: ZERO_BUCKET, calls: 5, rowsRead: 3, rowsWritten: 2 }],
        },
      ],
    };
    expect(await shard.push(push)).toEqual({ stored: 1, duplicates: 0, refusedRows: 0 });
    const snapshot = await shard.snapshot();
    expect(await shard.push(push)).toEqual({ stored: 0, duplicates: 1, refusedRows: 0 });
    expect(await shard.snapshot()).toBe(snapshot);
    // A source's earlier batch (answered already, so never resent, but a stale retry) is a duplicate too.
    expect(await shard.push({ ...push, batches: [{ ...push.batches[0]!, pushId: 6 }] })).toEqual({
      stored: 0,
      duplicates: 1,
      refusedRows: 0,
    });
    // The shard remembers the source's highest batch across its own restart.
    await evictDurableObject(shard);
    expect(await shard.push(push)).toEqual({ stored: 0, duplicates: 1, refusedRows: 0 });
    expect(await shard.snapshot()).toBe(snapshot);
    const kind = kindOf(await env.ADMIN.metrics({ range: "1h" }), "objects", "DoubledDO")!;
    expect([kind.calls, kind.rowsRead, kind.rowsWritten]).toEqual([5, 3, 2]);
  });

  it("counts entrypoint calls per method and code, and the objects behind them", async () => {
    const subject = "metrics:entry";
    const rules = [{ name: "r", algorithm: "fixed_window" as const, limit: 100, periodMs: 60_000 }];
    const entryBefore = await outcomes("entrypoints", "RateLimits");
    const objectBefore = await outcomes("objects", "RateLimiterDO");
    for (let i = 0; i < 3; i++) await env.LIMITS.peek({ subject, rules });
    for (let i = 0; i < 2; i++)
      expect((await thrown(env.LIMITS.peek({ subject, rules: [] as never, extra: 1 } as never))).code).toBe("INVALID_ARGUMENT");
    const limiter = env.TEST_RATE_LIMITER.getByName(subject);
    for (let i = 0; i < 4; i++) await limiter.check({ subject, rules });
    expect((await thrown(limiter.check({ subject, rules, cost: -1 }))).code).toBe("INVALID_ARGUMENT");
    await pushObjectCounts();

    expect(delta(await outcomes("entrypoints", "RateLimits"), entryBefore)).toEqual({ "peek ok": 3, "peek INVALID_ARGUMENT": 2 });
    const objects = delta(await outcomes("objects", "RateLimiterDO"), objectBefore);
    expect(objects["check ok"]).toBe(4);
    expect(objects["check INVALID_ARGUMENT"]).toBe(1);
  });

  it("counts the control-plane services Admin hands out (alerts, protection, adaptive limits) under their own names", async () => {
    const before = await Promise.all(
      ["AlertsService", "ProtectionService", "AdaptiveService"].map((kind) => outcomes("entrypoints", kind)),
    );
    await env.ADMIN.alerts().rules();
    await env.ADMIN.protection().allowList();
    await env.ADMIN.adaptive().policies();
    expect((await thrown(env.ADMIN.alerts().acknowledge({} as never))).code).toBe("INVALID_ARGUMENT");
    const after = await Promise.all(["AlertsService", "ProtectionService", "AdaptiveService"].map((kind) => outcomes("entrypoints", kind)));
    expect(after.map((counts, i) => delta(counts, before[i]!))).toEqual([
      { "rules ok": 1, "acknowledge INVALID_ARGUMENT": 1 },
      { "allowList ok": 1 },
      { "policies ok": 1 },
    ]);
  });

  it("counts capnweb AdminApi calls and answers metrics over capnweb", async () => {
    const realFetch = globalThis.fetch;
    globalThis.fetch = ((input: RequestInfo | URL, init?: RequestInit) => SELF.fetch(input, init)) as typeof fetch;
    try {
      const session = () =>
        newHttpBatchRpcSession<TollgateRpc>("http://tollgate.test/rpc").authenticate(TEST_ADMIN_TOKEN) as unknown as RpcStub<AdminApi>;
      const first = await session().metrics({ range: "1h" });
      expect(first.range.to - first.range.from).toBe(HOUR_MS);
      const cost = await session().costReport({ range: "24h" });
      expect(cost.items.map((item) => item.item)).toContain("durableObjectRequests");
      const second = await session().metrics({ range: "1h" });
      const adminApi = kindOf(second, "entrypoints", "AdminApi")!;
      expect(adminApi.methods.find((method) => method.method === "metrics")!.calls).toBeGreaterThanOrEqual(1);
      expect(adminApi.methods.find((method) => method.method === "costReport")!.calls).toBeGreaterThanOrEqual(1);
      expect(kindOf(second, "entrypoints", "Gateway")!.methods.find((method) => method.method === "fetch")!.calls).toBeGreaterThanOrEqual(
        2,
      );
    } finally {
      globalThis.fetch = realFetch;
    }
  });

  it("refuses bad ranges with INVALID_ARGUMENT and changes nothing", async () => {
    const shard = env.METRICS.getByName("metrics:1");
    const snapshot = await shard.snapshot();
    const now = Date.now();
    const bad: unknown[] = [
      {},
      { range: "2h" },
      { range: { from: 10, to: 5 } },
      { range: { from: 0, to: 500 * DAY_MS } },
      { range: { from: now, to: now + 10 * DAY_MS } },
      { range: { from: 1.5, to: 2 } },
      { range: "1h", extra: true },
      null,
    ];
    for (const input of bad) {
      expect((await thrown(env.ADMIN.metrics(input as never))).code, JSON.stringify(input)).toBe("INVALID_ARGUMENT");
      expect((await thrown(env.ADMIN.costReport(input as never))).code, JSON.stringify(input)).toBe("INVALID_ARGUMENT");
    }
    const badPushes: unknown[] = [
      {
        source: "x",
        surface: "object",
        batches: [
          { pushId: 1, rows: [{ minuteMs: now, kind: "K", method: "m", code: "oops", bucket: 0, calls: 1, rowsRead: 0, rowsWritten: 0 }] },
        ],
      },
      {
        source: "x",
        surface: "object",
        batches: [
          { pushId: 1, rows: [{ minuteMs: now, kind: "K", method: "m", code: "ok", bucket: 0, calls: 0, rowsRead: 0, rowsWritten: 0 }] },
        ],
      },
      { source: "x", surface: "other", batches: [] },
      { source: "x", surface: "object", batches: [{ pushId: -1, rows: [] }] },
    ];
    for (const input of badPushes) expect((await thrown(shard.push(input))).code).toBe("INVALID_ARGUMENT");
    expect(await shard.snapshot()).toBe(snapshot);
  });

  it("leaves metrics out of backups, so a restore neither re-counts nor needs the metrics schema", async () => {
    const probe = env.METRICS_PROBE.getByName("backup");
    await probe.ok();
    // Nothing of metrics is stored in the object: no table, no push task.
    expect(await probe.tasks()).toEqual([]);
    const dump = await probe.exportTables();
    expect(Object.keys(dump.versions)).toEqual(["metrics-probe", "scheduler"]);
    expect(dump.tables.map((table) => table.name)).not.toContain("_metrics");
    expect(dump.tables.find((table) => table.name === "_tasks")!.rows).toEqual([]);
    // A fresh object that has counted a call of its own still takes the dump.
    const target = env.METRICS_PROBE.getByName("backup-restored");
    await target.ok();
    expect(await target.importTables(dump)).toMatchObject({ rows: { items: 0 } });
  });

  it("compacts minutes into hours and days, takes a late minute into its hour, and a second run changes nothing", async () => {
    const shard = env.METRICS.getByName("compaction");
    // In the future (on a pinned clock), so the real compaction alarm is never due during the test;
    // at 10:00, so the day is still open two hours later (from 22:00 UTC on, it had closed and rolled up).
    const hour = floorTo(Date.now(), DAY_MS) + 2 * DAY_MS + 10 * HOUR_MS;
    await shard.pinClock(hour + 30 * MINUTE_MS);
    const row = (minuteMs: number, calls: number) => ({
      minuteMs,
      kind: "CompactDO",
      method: "m",
      code: "ok",
      bucket: latencyBucket(5),
      calls,
      rowsRead: calls,
      rowsWritten: 1,
    });
    await shard.push({ source: "src", surface: "object", batches: [{ pushId: 1, rows: [row(hour, 3), row(hour + 10 * MINUTE_MS, 4)] }] });
    await shard.runAlarmAt(hour + 2 * HOUR_MS);
    expect(await shard.storedCalls()).toEqual({ minute: 7, hour: 7 });
    // A late push for a compacted hour (still inside the 24-hour window) is folded into it.
    await shard.pinClock(hour + 2 * HOUR_MS);
    await shard.push({ source: "src", surface: "object", batches: [{ pushId: 2, rows: [row(hour + 59 * MINUTE_MS, 2)] }] });
    // Its hour is rebuilt 2 s after the push, not at the next hour's close.
    await shard.runAlarmAt(hour + 2 * HOUR_MS + 2_000);
    expect(await shard.storedCalls()).toEqual({ minute: 9, hour: 9 });
    const snapshot = await shard.snapshot();
    await shard.runAlarmAt(hour + 2 * HOUR_MS);
    expect(await shard.snapshot()).toBe(snapshot);
    // Days later: minutes past retention are gone, the hour and its day remain.
    await shard.runAlarmAt(hour + 3 * DAY_MS);
    const stored = await shard.storedCalls();
    expect(stored.minute).toBeUndefined();
    expect(stored.hour).toBe(9);
    expect(stored.day).toBe(9);
    await shard.pinClock(null);
  });

  it("the cost report matches the rows read and written counted independently in a controlled workload", async () => {
    const probe = env.METRICS_PROBE.getByName("controlled");
    const before = methodRows(await env.ADMIN.costReport({ range: "1h" }), "MetricsProbeDO", "runStatements");
    const first = await probe.runStatements({ items: 40 });
    const second = await probe.runStatements({ items: 25 });
    expect(first.rowsWritten).toBeGreaterThan(40);
    expect(first.rowsRead).toBeGreaterThan(0);
    await probe.pushMetrics();

    const report = await env.ADMIN.costReport({ range: "1h" });
    const after = methodRows(report, "MetricsProbeDO", "runStatements");
    expect(after.requests - before.requests).toBe(2);
    expect(after.rowsRead - before.rowsRead).toBe(first.rowsRead + second.rowsRead);
    expect(after.rowsWritten - before.rowsWritten).toBe(first.rowsWritten + second.rowsWritten);
    // The priced quantities are the sums over every object method.
    const objects = report.byMethod.filter((row) => row.surface === "object");
    const item = (name: string) => report.items.find((entry) => entry.item === name)!;
    expect(item("sqliteRowsRead").quantity).toBe(objects.reduce((total, row) => total + row.rowsRead, 0));
    expect(item("sqliteRowsWritten").quantity).toBe(objects.reduce((total, row) => total + row.rowsWritten, 0));
    expect(item("durableObjectRequests").quantity).toBe(objects.reduce((total, row) => total + row.requests, 0));
    expect(report.storedBytes).toBeGreaterThan(0);
    expect(item("sqliteStoredGbMonths").quantity).toBeCloseTo((report.storedBytes / 1e9) * (HOUR_MS / MONTH_MS), 8);
    expect(report.notIncluded.join(" ")).toMatch(/duration/i);
    expect(report.budget).toBeUndefined();
  });
});

describe("metrics arithmetic", () => {
  it("answers quantiles from latency buckets within 1% of the exact value", () => {
    const values = Array.from({ length: 1_000 }, (_, i) => 0.5 + i * 1.7);
    const buckets = new Map<number, number>();
    for (const value of values) buckets.set(latencyBucket(value), (buckets.get(latencyBucket(value)) ?? 0) + 1);
    for (const q of [0.5, 0.9, 0.99]) {
      const exact = values[Math.floor(q * (values.length - 1))]!;
      expect(Math.abs(quantileOf(buckets, q)! - exact) / exact).toBeLessThanOrEqual(0.0101);
    }
    expect(quantileOf(new Map([[ZERO_BUCKET, 3]]), 0.99)).toBe(0);
    expect(quantileOf(new Map(), 0.5)).toBeNull();
  });

  it("prices each item beyond its allowance and projects the range to 30 days", () => {
    const rows: MetricRow[] = [
      {
        surface: "object",
        kind: "K",
        method: "m",
        code: "ok",
        bucket: ZERO_BUCKET,
        calls: 2_000_000,
        rowsRead: 1_000,
        rowsWritten: 60_000_000,
      },
      {
        surface: "entrypoint",
        kind: "Gateway",
        method: "fetch",
        code: "ok",
        bucket: ZERO_BUCKET,
        calls: 12_000_000,
        rowsRead: 0,
        rowsWritten: 0,
      },
    ];
    const month = { from: 0, to: MONTH_MS };
    const report = priceUsage({ rows, storedBytes: 15_000_000_000 }, month, DEFAULT_COST_PRICES, 10, 1);
    const cost = Object.fromEntries(report.items.map((item) => [item.item, item.monthlyCostUsd]));
    expect(cost).toEqual({
      workersRequests: 0.6,
      durableObjectRequests: 0.15,
      sqliteRowsRead: 0,
      sqliteRowsWritten: 10,
      sqliteStoredGbMonths: 2,
      subscription: 5,
    });
    expect(report.monthlyTotalUsd).toBe(17.75);
    expect(report.totalUsd).toBe(17.75);
    expect(report.budget).toEqual({ monthlyUsd: 10, exceeded: true });
    // A tenth of a month: the same usage projects to ten times as much.
    const tenth = priceUsage({ rows, storedBytes: 0 }, { from: 0, to: MONTH_MS / 10 }, DEFAULT_COST_PRICES, null, 1);
    expect(tenth.items.find((item) => item.item === "durableObjectRequests")!.monthlyQuantity).toBe(20_000_000);
  });
});
