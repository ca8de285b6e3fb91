import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { RecordInput } from "../../rpc/path-stats";
import { MINUTE_MS } from "../../src/platform/buckets";
import { normalizePath } from "../../src/path-stats/normalize";
import { clientIdOf } from "../../src/path-stats/privacy";
import { mulberry32 } from "../fixtures/prng";
import { shardName } from "../../src/platform/names";

const SHARDS = 16; // PATH_SHARDS in vitest.config.ts

const exactQuantile = (sorted: number[], q: number) => sorted[Math.floor(q * (sorted.length - 1))]!;

async function runAllAlarms(nowMs: number): Promise<void> {
  for (let round = 0; round < 2; round += 1) {
    for (let shard = 0; shard < SHARDS; shard += 1) await env.PATH_COLLECTOR.getByName(shardName(shard)).runAlarmAt(nowMs);
  }
}

describe("path statistics end to end", () => {
  it("counts thousands of random hits exactly, with quantiles within 1% and uniques within 2%", async () => {
    const random = mulberry32(42);
    const now = Date.now();
    const templates = ["/users/:id", "/users/:id/posts/:id", "/search", "/orders/:id", "/health", "/static/app.js"];
    const raw = (template: string) => template.replace(/:id/g, () => String(Math.floor(random() * 100_000)));
    const methods = ["GET", "get", "POST", "DELETE"];
    const statuses = [200, 200, 200, 201, 204, 301, 404, 429, 500, 503];
    const ips = Array.from({ length: 1_500 }, (_, i) =>
      i % 5 === 0
        ? `2001:db8:${((i * 7919) & 0xffff).toString(16)}:${i.toString(16)}::1`
        : `${10 + (i % 200)}.${(i * 37) % 256}.${i >> 3}.${i & 7}`,
    );
    // A few heavy clients, so the top-K has something to find.
    const pickIp = () => (random() < 0.2 ? ips[Math.floor(random() * 5)]! : ips[Math.floor(random() * ips.length)]!);
    const hits: RecordInput[] = Array.from({ length: 4_000 }, () => ({
      ip: pickIp(),
      method: methods[Math.floor(random() * methods.length)]!,
      path: `${raw(templates[Math.floor(random() * templates.length)]!)}${random() < 0.3 ? "?q=1" : ""}`,
      status: statuses[Math.floor(random() * statuses.length)]!,
      latencyMs: Math.round(Math.exp(random() * 8) * 100) / 100,
      at: now - Math.floor(random() * 45 * MINUTE_MS),
    }));

    for (let i = 0; i < hits.length; i += 1_000) {
      expect(await env.PATHS.recordMany({ hits: hits.slice(i, i + 1_000) })).toEqual({ accepted: 1_000 });
    }

    const later = now + 2 * MINUTE_MS;
    await runAllAlarms(later);
    const aggregator = env.AGGREGATOR.getByName("global");
    await aggregator.runAlarmAt(later);
    const state = await aggregator.snapshot();
    await aggregator.runAlarmAt(later);
    expect(await aggregator.snapshot()).toBe(state);
    await runAllAlarms(later);
    expect(await aggregator.snapshot()).toBe(state);

    // The expected answer, computed from what was sent.
    const clients = new Map<string, number>();
    for (const hit of hits) {
      const id = (await clientIdOf(hit.ip, "truncate"))!;
      clients.set(id, (clients.get(id) ?? 0) + 1);
    }
    const perPath = new Map<string, number>();
    for (const hit of hits) {
      const key = `${hit.method.toUpperCase()} ${normalizePath(hit.path)}`;
      perPath.set(key, (perPath.get(key) ?? 0) + 1);
    }
    const latencies = hits.map((hit) => hit.latencyMs!).sort((a, b) => a - b);
    const errors = hits.filter((hit) => hit.status! >= 500).length;

    const stats = await env.PATHS.globalStats({ range: "1h" });
    expect(stats.totalRequests).toBe(hits.length);
    expect(stats.errors).toBe(errors);
    expect(stats.statusClasses["4xx"]).toBe(hits.filter((hit) => hit.status! >= 400 && hit.status! < 500).length);
    expect(stats.uniquePaths).toBe(perPath.size);
    expect(stats.uniqueClientsExact).toBe(false);
    expect(Math.abs(stats.uniqueClients - clients.size) / clients.size).toBeLessThan(0.02);
    for (const [q, name] of [
      [0.5, "p50"],
      [0.9, "p90"],
      [0.99, "p99"],
    ] as const) {
      const exact = exactQuantile(latencies, q);
      expect(Math.abs(stats.latency[name]! - exact) / exact, name).toBeLessThanOrEqual(0.0101);
    }

    const top = await env.PATHS.topPaths({ range: "1h", limit: 1_000 });
    expect(top.paths).toHaveLength(perPath.size);
    for (const path of top.paths) expect(path.requests).toBe(perPath.get(`${path.method} ${path.path}`));
    expect(top.paths.map((p) => p.requests)).toEqual([...perPath.values()].sort((a, b) => b - a));

    const errorsPerPath = new Map<string, number>();
    for (const hit of hits) {
      const key = `${hit.method.toUpperCase()} ${normalizePath(hit.path)}`;
      errorsPerPath.set(key, (errorsPerPath.get(key) ?? 0) + (hit.status! >= 500 ? 1 : 0));
    }
    const byErrors = await env.PATHS.topPaths({ range: "1h", sortBy: "errors", limit: 1_000 });
    expect(byErrors.paths.map((p) => p.errors)).toEqual([...errorsPerPath.values()].sort((a, b) => b - a));
    for (const path of byErrors.paths) expect(path.errors).toBe(errorsPerPath.get(`${path.method} ${path.path}`));
    for (const sortBy of ["clients", "p99"] as const) {
      const sorted = await env.PATHS.topPaths({ range: "1h", sortBy, limit: 5 });
      const values = sorted.paths.map((p) => (sortBy === "clients" ? p.clients! : p.latency!.p99!));
      expect(values).toEqual([...values].sort((a, b) => b - a));
      expect(sorted.paths).toHaveLength(5);
    }

    const heavy = await env.PATHS.topClients({ range: "1h", limit: 100 });
    expect(heavy.totalRequests).toBe(hits.length);
    expect(heavy.errorBound).toBeLessThanOrEqual(hits.length / 101);
    const listed = new Map(heavy.clients.map((c) => [c.client, c]));
    for (const [client, count] of clients) {
      if (count > heavy.errorBound) expect(listed.has(client), client).toBe(true);
      const entry = listed.get(client);
      if (entry !== undefined) {
        expect(entry.requests).toBeLessThanOrEqual(count);
        expect(entry.maxRequests).toBeGreaterThanOrEqual(count);
      }
    }

    // clientStats reads the client's own shard, and is fresh without any alarm.
    const someone = hits[0]!.ip;
    const mine = await env.PATHS.clientStats({ ip: someone });
    expect(mine.ip).toBe(await clientIdOf(someone, "truncate"));
    expect(mine.totalRequests).toBe(clients.get(mine.ip));
  });
});

describe("export through the PathStats entrypoint", () => {
  it("streams CSV and JSON whose rows add up to the global totals", async () => {
    const now = Date.now();
    const hits: RecordInput[] = Array.from({ length: 60 }, (_, i) => ({
      ip: `198.18.${i % 9}.1`,
      method: "GET",
      path: i % 2 === 0 ? "/export/=cmd" : "/export/plain",
      status: 200,
      latencyMs: i + 1,
      at: now - (i % 3) * MINUTE_MS,
    }));
    await env.PATHS.recordMany({ hits });
    const later = now + 2 * MINUTE_MS;
    await runAllAlarms(later);
    await env.AGGREGATOR.getByName("global").runAlarmAt(later);

    const range = { from: now - 10 * MINUTE_MS, to: now + MINUTE_MS };
    const total = (await env.PATHS.globalStats({ range })).totalRequests;
    expect(total).toBeGreaterThanOrEqual(60);

    const csv = await new Response(await env.PATHS.export({ range, format: "csv" })).text();
    const lines = csv.split("\r\n").filter((line) => line !== "");
    expect(lines[0]).toBe("bucketStart,granularity,method,path,requests,errors,clients,p50,p90,p99");
    expect(csv).toContain(",GET,/export/=cmd,");
    const sum = lines.slice(1).reduce((acc, line) => acc + Number(line.split(",")[4]), 0);
    expect(sum).toBe(total);

    const json = JSON.parse(await new Response(await env.PATHS.export({ range, format: "json" })).text()) as {
      requests: number;
      path: string;
    }[];
    expect(json.reduce((acc, row) => acc + row.requests, 0)).toBe(total);
    expect(json.filter((row) => row.path === "/export/plain").reduce((acc, row) => acc + row.requests, 0)).toBe(30);
  });
});

describe("a sibling Worker whose requests are recorded by Gateway.authorize", () => {
  it("records every gateway request after answering (ctx.waitUntil)", async () => {
    const ip = "198.51.100.150";
    for (let i = 0; i < 3; i += 1) {
      const response = await env.EXAMPLE_GATEWAY.fetch(`http://gateway/items/${1000 + i}?q=x`, { headers: { "CF-Connecting-IP": ip } });
      await response.arrayBuffer();
    }
    // The record runs after the response, so look until it lands (bounded: 100 reads).
    let stats = await env.PATHS.clientStats({ ip });
    for (let attempt = 0; attempt < 100 && stats.totalRequests < 3; attempt += 1) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      stats = await env.PATHS.clientStats({ ip });
    }
    expect(stats).toMatchObject({ ip: "198.51.100.0/24", totalRequests: 3, uniquePaths: 1 });
    expect(stats.paths[0]).toMatchObject({ method: "GET", path: "/items/:id", requests: 3 });
  });
});
