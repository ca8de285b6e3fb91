import { describe, expect, it } from "vitest";
import { DAY_MS, HOUR_MS, MINUTE_MS, planRange, resolveRange } from "../../src/platform/buckets";
import { formatIp, parseIp } from "../../src/path-stats/ip";
import { compileRoutes, normalizeMethod, normalizePath } from "../../src/path-stats/normalize";
import { clientIdOf } from "../../src/path-stats/privacy";
import { shardOf } from "../../src/path-stats/shard";
import { loadPathConfig, parseDuration } from "../../src/path-stats/config";

const canonical = (text: string) => {
  const ip = parseIp(text);
  return ip === null ? null : formatIp(ip);
};

describe("IP parsing", () => {
  it("accepts IPv4 and IPv6 in their usual spellings and prints them canonically", () => {
    expect(canonical("203.0.113.9")).toBe("203.0.113.9");
    expect(canonical("2001:DB8:0:0:0:0:0:1")).toBe("2001:db8::1");
    expect(canonical("2001:db8:0:0:1:0:0:1")).toBe("2001:db8::1:0:0:1");
    expect(canonical("::")).toBe("::");
    expect(canonical("::1")).toBe("::1");
    expect(canonical("fe80::1:2")).toBe("fe80::1:2");
    expect(canonical("2001:db8:1:2:3:4:5:6")).toBe("2001:db8:1:2:3:4:5:6");
    expect(canonical("64:ff9b::192.0.2.33")).toBe("64:ff9b::c000:221");
    expect(canonical("::ffff:198.51.100.7")).toBe("198.51.100.7");
  });

  it("rejects anything that is not exactly an address", () => {
    for (const bad of [
      "",
      "1.2.3",
      "1.2.3.4.5",
      "256.1.1.1",
      "01.2.3.4",
      "1.2.3.4 ",
      "a.b.c.d",
      "1::2::3",
      "2001:db8::1%eth0",
      "12345::",
      "1:2:3:4:5:6:7:8:9",
      "1:2:3:4:5:6:7",
      ":1:2:3:4:5:6:7",
      "::1.2.3.4:5",
      "localhost",
      "::g",
    ]) {
      expect(parseIp(bad), bad).toBeNull();
    }
  });
});

describe("privacy modes", () => {
  it("stores raw, truncated (/24, /48) or keyed-hash client ids", async () => {
    expect(await clientIdOf("203.0.113.9", "raw")).toBe("203.0.113.9");
    expect(await clientIdOf("203.0.113.9", "truncate")).toBe("203.0.113.0/24");
    expect(await clientIdOf("2001:db8:abcd:12:1::9", "truncate")).toBe("2001:db8:abcd::/48");
    expect(await clientIdOf("::ffff:203.0.113.200", "truncate")).toBe("203.0.113.0/24");
    const key = "k".repeat(32);
    const hashed = await clientIdOf("203.0.113.9", "hash", key);
    expect(hashed).toMatch(/^h:[A-Za-z0-9_-]{16}$/);
    expect(hashed).not.toContain("203");
    expect(await clientIdOf("203.0.113.9", "hash", key)).toBe(hashed);
    expect(await clientIdOf("203.0.113.10", "hash", key)).not.toBe(hashed);
    expect(await clientIdOf("203.0.113.9", "hash", "x".repeat(32))).not.toBe(hashed);
    await expect(clientIdOf("203.0.113.9", "hash", "short")).rejects.toThrow(/PATH_IP_HASH_KEY/);
    expect(await clientIdOf("nope", "raw")).toBeNull();
  });
});

describe("normalization", () => {
  it("upper-cases methods and rejects unknown ones", () => {
    expect(normalizeMethod("get")).toBe("GET");
    expect(normalizeMethod("Patch")).toBe("PATCH");
    expect(normalizeMethod("BREW")).toBeNull();
  });

  it("turns ids into :id, drops query and fragment, collapses empty segments", () => {
    expect(normalizePath("/users/123")).toBe("/users/:id");
    expect(normalizePath("/users/123/?tab=1#x")).toBe("/users/:id");
    expect(normalizePath("//a///b/")).toBe("/a/b");
    expect(normalizePath("/")).toBe("/");
    expect(normalizePath("/?q=1")).toBe("/");
    expect(normalizePath("/o/550e8400-e29b-41d4-a716-446655440000/items")).toBe("/o/:id/items");
    expect(normalizePath("/commits/0123456789abcdef0123")).toBe("/commits/:id");
    expect(normalizePath("/commits/abc123")).toBe("/commits/abc123");
    expect(normalizePath(`/t/${"x".repeat(65)}`)).toBe("/t/:id");
    expect(normalizePath(`/${Array.from({ length: 20 }, (_, i) => `s${i}`).join("/")}`)).toBe(
      `/${Array.from({ length: 16 }, (_, i) => `s${i}`).join("/")}/*`,
    );
    expect(normalizePath("users/1")).toBeNull();
    expect(normalizePath(`/${"a".repeat(2_048)}`)).toBeNull();
  });

  it("lets configured route patterns win over the heuristics", () => {
    const routes = compileRoutes(["/users/:userId/posts/:postId", "/static/*", "/v1/things"]);
    expect(normalizePath("/users/alice/posts/7", routes)).toBe("/users/:userId/posts/:postId");
    expect(normalizePath("/static/css/site.css?v=3", routes)).toBe("/static/*");
    expect(normalizePath("/static", routes)).toBe("/static/*");
    expect(normalizePath("/v1/things/", routes)).toBe("/v1/things");
    expect(normalizePath("/users/alice/posts", routes)).toBe("/users/alice/posts");
    expect(() => compileRoutes(["/a/*/b"])).toThrow();
    expect(() => compileRoutes(["a"])).toThrow();
  });
});

describe("configuration", () => {
  it("has defaults, reads overrides, and rejects bad values as INTERNAL", () => {
    const config = loadPathConfig({});
    expect(config).toMatchObject({ shards: 64, ipMode: "truncate", maxTemplates: 1_000 });
    const custom = loadPathConfig({ PATH_SHARDS: "8", PATH_IP_MODE: "raw", PATH_RETENTION: '{"days":"90d"}' });
    expect(custom.shards).toBe(8);
    expect(custom.retention.days).toBe(90 * DAY_MS);
    expect(parseDuration("26h")).toBe(26 * HOUR_MS);
    for (const bad of [{ PATH_SHARDS: "0" }, { PATH_IP_MODE: "plain" }, { PATH_RETENTION: '{"minutes":"1h"}' }, { PATH_ROUTES: "[1]" }]) {
      expect(() => loadPathConfig(bad)).toThrow(/INTERNAL/);
    }
  });
});

describe("sharding", () => {
  it("spreads clients over every shard, stably", () => {
    const counts = new Array<number>(64).fill(0);
    for (let i = 0; i < 6_400; i += 1) counts[shardOf(`10.${i >> 8}.${i & 255}.1`, 64)]! += 1;
    expect(Math.min(...counts)).toBeGreaterThan(50);
    expect(Math.max(...counts)).toBeLessThan(160);
    expect(shardOf("203.0.113.0/24", 64)).toBe(shardOf("203.0.113.0/24", 64));
  });
});

describe("range planning", () => {
  const now = Date.UTC(2026, 10, 22, 15, 30, 20);

  it("resolves named ranges to whole minutes ending after now", () => {
    const range = resolveRange("1h", now);
    expect(range.to).toBe(Date.UTC(2026, 10, 22, 15, 31));
    expect(range.to - range.from).toBe(HOUR_MS);
  });

  it("reads days, then hours, then minutes, as far as each is compacted", () => {
    const coverage = { hourWatermark: Date.UTC(2026, 10, 22, 15), dayWatermark: Date.UTC(2026, 10, 22), minuteFloor: 0, hourFloor: 0 };
    const plan = planRange(resolveRange("30d", now), coverage);
    const d = plan.segments;
    expect(d.minute[0]).toEqual({ from: Date.UTC(2026, 9, 23, 15, 31), to: Date.UTC(2026, 9, 23, 16) });
    expect(d.hour[0]).toEqual({ from: Date.UTC(2026, 9, 23, 16), to: Date.UTC(2026, 9, 24) });
    expect(d.day).toEqual([{ from: Date.UTC(2026, 9, 24), to: Date.UTC(2026, 10, 22) }]);
    expect(d.hour[1]).toEqual({ from: Date.UTC(2026, 10, 22), to: Date.UTC(2026, 10, 22, 15) });
    expect(d.minute[1]).toEqual({ from: Date.UTC(2026, 10, 22, 15), to: Date.UTC(2026, 10, 22, 15, 31) });
    expect(plan.buckets).toBe(29 + 8 + 29 + 15 + 31);
  });

  it("widens a range to whole hours or days where finer data has expired", () => {
    const coverage = { hourWatermark: now, dayWatermark: now, minuteFloor: now - DAY_MS, hourFloor: now - 10 * DAY_MS };
    const plan = planRange({ from: now - 20 * DAY_MS, to: now - 15 * DAY_MS + 7 * MINUTE_MS }, coverage);
    expect(plan.range.from % DAY_MS).toBe(0);
    expect(plan.range.to % DAY_MS).toBe(0);
    expect(plan.segments.minute).toEqual([]);
  });
});
