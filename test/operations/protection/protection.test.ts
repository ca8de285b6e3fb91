import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { afterAll, describe, expect, it } from "vitest";
import type { RecordInput } from "../../../rpc/path-stats";
import type { Flag } from "../../../rpc/protection";
import { DAY_MS, MINUTE_MS, floorTo } from "../../../src/platform/buckets";
import { shardOf } from "../../../src/path-stats/shard";
import { DEFAULT_ANOMALY_POLICY } from "../../../src/operations/protection/policy";
import { codeOf } from "../../fixtures/errors";
import { digestObject } from "../../fixtures/digest";
import { mulberry32 } from "../../fixtures/prng";
import { PROTECTION_NAME, shardName } from "../../../src/platform/names";

/**
 * Anomaly detection, allow and deny lists, end to end: hits recorded through the PathStats
 * entrypoint (as the gateway records them), detection in the collectors, blocks through the
 * limiter, answers through Gateway.authorize, administration through Admin.protection().
 * PROTECTION_CACHE_MS is 0 in vitest.config.ts, so each change applies to the very next call.
 */
const SHARDS = 16; // PATH_SHARDS in vitest.config.ts
const protection = () => env.ADMIN.protection();
const object = () => env.PROTECTION.getByName(PROTECTION_NAME);
const collectors = () => Array.from({ length: SHARDS }, (_, s) => env.PATH_COLLECTOR.getByName(shardName(s)));

async function authorize(ip: string) {
  return env.GATEWAY.authorize({ ip, method: "GET", path: "/protected/x" });
}

afterAll(async () => {
  // Leave nothing behind for other files that may share storage.
  await protection().setPolicy({ policy: {} });
  for (const { cidr } of (await protection().allowList()).entries) await protection().unallow({ cidr });
  for (const { cidr } of (await protection().denyList()).entries) await protection().undeny({ cidr });
});

describe("a scenario: fifty normal clients, a scanner, a burst, an allow-listed scanner", () => {
  // Each client in its own /24 (or /48): PATH_IP_MODE is "truncate", so the stored client is the network.
  const normal = Array.from({ length: 50 }, (_, i) => `198.18.${i}.10`);
  const scanner = "203.0.113.66";
  const burster = "192.0.2.77";
  const allowedScanner = "2001:db8:aa::5";
  const WARMUP = 5; // minutes of normal traffic before the attacks
  const MINUTES = 7;

  it("flags and blocks the scanner within its first scanMinCount requests, the burst at the floor, and no normal client; the allow-listed scanner is flagged but not blocked", async () => {
    const policy = await protection().setPolicy({ policy: { block: true, blockMs: 10 * MINUTE_MS } });
    expect(policy.effective).toMatchObject({ block: true, blockMs: 600_000, scanMinCount: 20, rateMinCount: 120 });
    await protection().allow({ cidr: "2001:db8:aa::/48", note: "our own security scanner" });

    const random = mulberry32(9);
    // The scenario plays minutes that ended before now, so every hit is inside the accepted window.
    const start = floorTo(Date.now(), MINUTE_MS) - (MINUTES + 1) * MINUTE_MS;
    const before = Date.now();
    for (let m = 0; m < MINUTES; m += 1) {
      const minute = start + m * MINUTE_MS;
      const hits: RecordInput[] = [];
      for (const ip of [...normal, burster, scanner, allowedScanner]) {
        // Normal traffic: 15..34 requests a minute, about 5% of them 404.
        const attacking = m >= WARMUP;
        const count =
          ip === burster && attacking ? 600 : (ip === scanner || ip === allowedScanner) && attacking ? 60 : 15 + Math.floor(random() * 20);
        for (let i = 0; i < count; i += 1) {
          const scanning = attacking && (ip === scanner || ip === allowedScanner);
          const status = scanning ? 404 : random() < 0.05 ? 404 : 200;
          hits.push({
            ip,
            method: "GET",
            path: scanning ? `/wp-admin/${i}.php` : `/api/items/${i % 5}`,
            status,
            at: minute + Math.floor((i * MINUTE_MS) / count),
          });
        }
      }
      // Time order within the minute, as a gateway records them; sent in batches of at most 1,000.
      hits.sort((a, b) => a.at! - b.at!);
      for (let i = 0; i < hits.length; i += 1_000) await env.PATHS.recordMany({ hits: hits.slice(i, i + 1_000) });
      // The baselines live in SQLite: an eviction between minutes loses nothing.
      if (m === 2) {
        let evicted = 0;
        for (const stub of collectors()) {
          // A shard no client of the scenario hashes to has nothing running to evict.
          evicted += await evictDurableObject(stub).then(
            () => 1,
            (error: Error) => {
              if (!/not currently running/.test(error.message)) throw error;
              return 0;
            },
          );
        }
        expect(evicted).toBeGreaterThan(8);
      }
    }

    const { flags } = await protection().flagged({ limit: 1_000 });
    const ours = flags.filter((flag) => flag.at >= start && flag.at < start + MINUTES * MINUTE_MS);
    const byClient = new Map<string, Flag[]>();
    for (const flag of ours) byClient.set(flag.client, [...(byClient.get(flag.client) ?? []), flag]);
    // Exactly three clients flagged, once each: no normal client.
    expect([...byClient.keys()].sort()).toEqual(["192.0.2.0/24", "2001:db8:aa::/48", "203.0.113.0/24"]);
    for (const list of byClient.values()) expect(list).toHaveLength(1);

    // The detection bound: a scan is flagged on its scanMinCount-th request of the minute
    // (20 requests at one a second: 19 s after it began), and blocked in the same ingest call.
    const attackStart = start + WARMUP * MINUTE_MS;
    const scan = byClient.get("203.0.113.0/24")![0]!;
    expect(scan).toMatchObject({ rule: "scan", blocked: true, allowListed: false });
    expect(scan.evidence).toMatchObject({ minuteMs: attackStart, requests: 20, clientErrors: 20, notFound: 20, minutesSeen: WARMUP });
    expect(scan.at).toBe(attackStart + 19 * 1_000);
    expect(scan.at - attackStart).toBeLessThanOrEqual(DEFAULT_ANOMALY_POLICY.scanMinCount * 1_000);
    expect(scan.blockedUntil).toBeGreaterThanOrEqual(before + 10 * MINUTE_MS);

    // A burst of 600 against a baseline of about 25: flagged at the floor, the 121st request.
    const burst = byClient.get("192.0.2.0/24")![0]!;
    expect(burst).toMatchObject({ rule: "burst", blocked: true, allowListed: false });
    expect(burst.evidence.requests).toBe(DEFAULT_ANOMALY_POLICY.rateMinCount + 1);
    expect(burst.evidence.rateMean).toBeGreaterThan(10);
    expect(burst.evidence.rateMean).toBeLessThan(40);

    // The allow-listed scanner: the same evidence, flagged, never blocked.
    const allowed = byClient.get("2001:db8:aa::/48")![0]!;
    expect(allowed).toMatchObject({ rule: "scan", blocked: false, allowListed: true });
    expect(allowed.blockedUntil).toBeUndefined();

    // What the clients see now: the blocked ones are refused by their limiter, the rest admitted.
    expect(await authorize(scanner)).toMatchObject({ allowed: false, status: 429, code: "RATE_LIMITED" });
    expect(await authorize(burster)).toMatchObject({ allowed: false, status: 429 });
    expect(await authorize(allowedScanner)).toMatchObject({ allowed: true, status: 200 });
    for (const ip of normal) expect(await authorize(ip), ip).toMatchObject({ allowed: true, status: 200 });

    // The flag log answers per client and by range.
    expect((await protection().flagged({ client: "203.0.113.0/24", range: "1h" })).flags.map((f) => f.flagId)).toEqual([scan.flagId]);

    await env.LIMITS.unblock({ subject: `ip:${scanner}` });
    await env.LIMITS.unblock({ subject: `ip:${burster}` });
  });

  it("keeps baselines keyed by the stored client only, and prunes them (the aggregator's daily sweep; twice changes nothing)", async () => {
    const rows = await Promise.all(
      collectors().map((stub) =>
        runInDurableObject(stub, (_i: unknown, state: DurableObjectState) =>
          state.storage.sql
            .exec<{ client: string }>("SELECT DISTINCT client FROM client_paths WHERE baseline IS NOT NULL")
            .toArray()
            .map((row) => row.client),
        ),
      ),
    );
    const clients = rows.flat();
    expect(clients).toContain("203.0.113.0/24");
    expect(clients).toContain("2001:db8:aa::/48");
    expect(clients.some((client) => /^\d+\.\d+\.\d+\.\d+$/.test(client) || client.includes("::5"))).toBe(false);

    // What the aggregator's daily sweep does on every shard (src/path-stats/collector-sweep.ts), two days on.
    const later = Date.now() + 2 * DAY_MS;
    const prune = async () => {
      for (const stub of collectors()) {
        await stub.pinClock(later);
        await stub.prune();
        await stub.pinClock(null);
      }
    };
    await prune();
    const first = await Promise.all(collectors().map((stub) => digestObject(stub)));
    await prune();
    expect(await Promise.all(collectors().map((stub) => digestObject(stub)))).toEqual(first);
    const left = await Promise.all(
      collectors().map((stub) =>
        runInDurableObject(
          stub,
          (_i: unknown, state: DurableObjectState) =>
            state.storage.sql
              .exec<{ n: number }>(
                "SELECT (SELECT COUNT(*) FROM client_baselines) + (SELECT COUNT(*) FROM client_paths WHERE baseline IS NOT NULL) AS n",
              )
              .one().n,
        ),
      ),
    );
    expect(left.reduce((a, b) => a + b, 0)).toBe(0);
  });
});

describe("the deny list at Gateway.authorize", () => {
  it("refuses a denied IPv4 or IPv6 range with 403 IP_DENIED before any other work, and admits it again once removed", async () => {
    await protection().deny({ cidr: "192.0.2.128/25", reason: "abuse report 17" });
    await protection().deny({ cidr: "2001:DB8:DEAD::/48", reason: "abuse report 18" });
    expect((await protection().denyList()).entries.map((e) => e.cidr)).toEqual(["192.0.2.128/25", "2001:db8:dead::/48"]);

    expect(await authorize("192.0.2.200")).toEqual({ allowed: false, status: 403, code: "IP_DENIED", retryAfterMs: 0, headers: {} });
    // Before any other work: even a malformed key is not looked at.
    expect(await env.GATEWAY.authorize({ ip: "192.0.2.255", method: "GET", path: "/", apiKey: "nonsense" })).toMatchObject({
      status: 403,
      code: "IP_DENIED",
    });
    expect(await authorize("2001:db8:dead:1::9")).toMatchObject({ status: 403, code: "IP_DENIED" });
    expect(await authorize("192.0.2.127")).toMatchObject({ allowed: true, status: 200 });
    expect(await authorize("2001:db8:beef::1")).toMatchObject({ allowed: true, status: 200 });

    expect(await protection().undeny({ cidr: "2001:db8:dead::/48" })).toEqual({ removed: true });
    expect(await protection().undeny({ cidr: "2001:db8:dead::/48" })).toEqual({ removed: false });
    expect(await authorize("2001:db8:dead:1::9")).toMatchObject({ allowed: true, status: 200 });
    await protection().undeny({ cidr: "192.0.2.128/25" });
  });

  it("an expiring denial is removed by the alarm at its time (twice changes nothing), and the range is admitted again", async () => {
    const until = Date.now() + 10 * MINUTE_MS;
    await protection().deny({ cidr: "198.51.100.0/24", untilMs: until, reason: "cool-off" });
    expect(await authorize("198.51.100.42")).toMatchObject({ status: 403, code: "IP_DENIED" });
    await evictDurableObject(object());
    expect((await protection().denyList()).entries).toEqual([expect.objectContaining({ cidr: "198.51.100.0/24", until })]);
    const denialTasks = async () => (await object().tasks()).filter((task) => task.kind === "expire-denials");
    expect(await denialTasks()).toEqual([expect.objectContaining({ dueMs: until })]);

    // Not yet due: nothing changes.
    await object().runAlarmAt(until - 1);
    expect(await authorize("198.51.100.42")).toMatchObject({ status: 403 });
    await object().runAlarmAt(until);
    const after = await object().stored();
    await object().runAlarmAt(until);
    expect(await object().stored()).toBe(after);
    expect((await protection().denyList()).entries).toEqual([]);
    expect(await denialTasks()).toEqual([]);
    expect(await authorize("198.51.100.42")).toMatchObject({ allowed: true, status: 200 });
  });

  it("an expired denial no longer applies even before the alarm has removed it", async () => {
    const stub = object();
    await stub.pinClock(Date.now() - 2 * MINUTE_MS);
    await stub.deny({ cidr: "198.51.100.0/25", untilMs: Date.now() - MINUTE_MS, reason: "already over" });
    await stub.pinClock(null);
    expect(await authorize("198.51.100.1")).toMatchObject({ allowed: true, status: 200 });
    expect((await protection().denyList()).entries).toEqual([]);
    await stub.runAlarmAt(Date.now());
    expect((await stub.tasks()).filter((task) => task.kind === "expire-denials")).toEqual([]);
  });
});

describe("administration", () => {
  it("keeps the lists and the policy across an eviction", async () => {
    await protection().allow({ cidr: "10.0.0.0/8" });
    await protection().allow({ cidr: "10.0.0.0/8", note: "office" });
    await protection().setPolicy({ policy: { rateK: 6, scanMinShare: 0.7 } });
    await evictDurableObject(object());
    expect((await protection().allowList()).entries).toEqual(
      expect.arrayContaining([expect.objectContaining({ cidr: "10.0.0.0/8", note: "office" })]),
    );
    const info = await protection().policy();
    expect(info.override).toEqual({ rateK: 6, scanMinShare: 0.7 });
    expect(info.effective).toMatchObject({ rateK: 6, scanMinShare: 0.7, blockMs: 600_000, block: false });
    expect((await protection().setPolicy({ policy: {} })).override).toEqual({});
    expect(await protection().unallow({ cidr: "10.0.0.0/8" })).toEqual({ removed: true });
  });

  it("refuses bad input with INVALID_ARGUMENT and leaves the stored state unchanged", async () => {
    await protection().allow({ cidr: "172.16.0.0/12" });
    const before = await digestObject(object());
    const now = Date.now();
    const bad: [string, unknown][] = [
      ["allow", { cidr: "172.16.0.1/12" }],
      ["allow", { cidr: "not a range" }],
      ["allow", { cidr: "10.0.0.0/33" }],
      ["allow", { cidr: "10.0.0.0/8", extra: 1 }],
      ["allow", { cidr: "10.0.0.0/8", note: "" }],
      ["unallow", { cidr: 7 }],
      ["deny", { cidr: "10.0.0.0/8", reason: "" }],
      ["deny", { cidr: "10.0.0.0/8", reason: "r", untilMs: now - 1 }],
      ["deny", { cidr: "10.0.0.0/8", reason: "r", untilMs: now + 400 * DAY_MS }],
      ["deny", { cidr: "10.0.0.0/8", reason: "r", untilMs: 1.5 }],
      ["deny", { cidr: "::/129", reason: "r" }],
      ["undeny", {}],
      ["setPolicy", { policy: { alpha: 0 } }],
      ["setPolicy", { policy: { rateK: "4" } }],
      ["setPolicy", { policy: { scanMinShare: 2 } }],
      ["setPolicy", { policy: { blockMs: 10 } }],
      ["setPolicy", { policy: { bogus: true } }],
      ["setPolicy", {}],
      ["flagged", { limit: 0 }],
      ["flagged", { range: "2h" }],
    ];
    for (const [method, input] of bad) {
      const service = protection() as unknown as Record<string, (input: unknown) => Promise<unknown>>;
      expect(await codeOf(service[method]!(input)), `${method} ${JSON.stringify(input)}`).toBe("INVALID_ARGUMENT");
      // The object validates too: a sibling bound to it directly is not trusted either.
      const direct = object() as unknown as Record<string, (input: unknown) => Promise<unknown>>;
      expect(await codeOf(direct[method]!(input)), `direct ${method}`).toBe("INVALID_ARGUMENT");
    }
    expect(
      await codeOf(object().reportFlag({ client: "x", rule: "flood", at: now, blocked: false, allowListed: false, evidence: {} })),
    ).toBe("INVALID_ARGUMENT");
    expect(await digestObject(object())).toBe(before);
    await protection().unallow({ cidr: "172.16.0.0/12" });
  });

  it("the collectors refuse an ingest whose addresses do not match its hits, changing nothing", async () => {
    const stub = env.PATH_COLLECTOR.getByName(shardName(0));
    const before = await digestObject(stub);
    const client = Array.from({ length: 100 }, (_, i) => `c${i}`).find((c) => shardOf(c, SHARDS) === 0)!;
    const hit = { client, method: "GET", path: "/", status: 200, at: Date.now() };
    expect(await codeOf(stub.ingest({ hits: [hit], ips: [] }))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(stub.ingest({ hits: [hit], ips: ["not-an-ip"] }))).toBe("INVALID_ARGUMENT");
    expect(await digestObject(stub)).toBe(before);
  });
});

describe("the flag log's retention", () => {
  it("prunes flags past 30 days by alarm, and a second run changes nothing", async () => {
    const stub = object();
    const at = Date.now() - 1_000;
    const evidence = {
      minuteMs: at - (at % MINUTE_MS),
      requests: 20,
      clientErrors: 20,
      notFound: 20,
      serverErrors: 0,
      rateMean: 10,
      rateSd: 10,
      scanShareMean: 0.05,
      scanShareSd: 0.1,
      threshold: 0.5,
      minutesSeen: 0,
    };
    const { flagId } = await stub.reportFlag({ client: "retention-test", rule: "scan", at, blocked: false, allowListed: false, evidence });
    expect((await stub.flagged({ client: "retention-test" })).flags).toEqual([
      { flagId, at, client: "retention-test", rule: "scan", blocked: false, allowListed: false, evidence },
    ]);
    const prune = (await stub.tasks()).find((task) => task.kind === "prune-flags")!;
    expect(prune.dueMs).toBeGreaterThan(Date.now());
    // A day on, the flag is young: kept, and the next prune is due a day later.
    await stub.runAlarmAt(prune.dueMs);
    expect((await stub.flagged({ client: "retention-test" })).flags).toHaveLength(1);
    const later = at + 31 * DAY_MS;
    await stub.runAlarmAt(later);
    const after = await stub.stored();
    await stub.runAlarmAt(later);
    expect(await stub.stored()).toBe(after);
    expect((await stub.flagged({})).flags).toEqual([]);
    expect((await stub.tasks()).filter((task) => task.kind === "prune-flags")).toEqual([]);
  });
});

describe("backup and restore of the protection object", () => {
  it("is in every backup as a control object (`protection: false` leaves it out); a restore into the wiped object brings back the lists, the policy and the expiry task", async () => {
    const until = Date.now() + 5 * DAY_MS;
    await protection().allow({ cidr: "192.0.2.0/28", note: "backup test" });
    await protection().deny({ cidr: "198.51.100.64/26", untilMs: until, reason: "backup test" });
    await protection().setPolicy({ policy: { scanMinCount: 30 } });
    const before = await object().stored();

    const without = await env.ADMIN.backup({ to: "r2", paths: false, protection: false });
    expect(without.objects.map((o) => o.binding)).not.toContain("PROTECTION");
    expect((await env.ADMIN.backup({ to: "r2", paths: false })).objects.map((o) => o.binding)).toContain("PROTECTION");
    const manifest = await env.ADMIN.backup({ to: "r2", paths: false, control: false, protection: true });
    expect(manifest.objects).toEqual([
      expect.objectContaining({
        binding: "PROTECTION",
        name: PROTECTION_NAME,
        rows: expect.objectContaining({ allow_list: (await protection().allowList()).entries.length, deny_list: 1, policy_override: 1 }),
      }),
    ]);

    // Emptied (every row, the schema kept): a restore goes only into an object without data.
    await runInDurableObject(object(), (_instance: unknown, state: DurableObjectState) => {
      for (const table of ["allow_list", "deny_list", "policy_override", "flags", "_tasks"]) state.storage.sql.exec(`DELETE FROM ${table}`);
    });
    expect((await protection().allowList()).entries).toEqual([]);
    const report = await env.ADMIN.restore({ backupId: manifest.backupId });
    expect(report).toMatchObject({ ok: true, problems: [], objects: 1 });
    expect(await object().stored()).toBe(before);
    expect((await object().tasks()).filter((task) => task.kind === "expire-denials")).toEqual([expect.objectContaining({ dueMs: until })]);
    expect((await protection().policy()).effective.scanMinCount).toBe(30);

    await protection().setPolicy({ policy: {} });
    await protection().unallow({ cidr: "192.0.2.0/28" });
    await protection().undeny({ cidr: "198.51.100.64/26" });
  });
});
