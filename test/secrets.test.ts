import { env } from "cloudflare:workers";
import { runInDurableObject, SELF } from "cloudflare:test";
import { newHttpBatchRpcSession, type RpcStub } from "capnweb";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { AdminApi, TollgateRpc } from "../rpc/admin";
import { MINUTE_MS } from "../src/platform/buckets";
import type { Env } from "../src/platform/env";
import { PathStatsService } from "../src/path-stats/service";
import { TEST_ADMIN_TOKEN } from "./fixtures/constants";
import { AGGREGATOR_NAME, shardName } from "../src/platform/names";

/**
 * Secrets never rest in plaintext: API-key secrets and the admin token appear in no stored
 * table (nor the object's synchronous KV) and in no log line; client IPs are stored and
 * answered only in the configured privacy mode, exports included.
 */
const SHARDS = 16; // PATH_SHARDS in vitest.config.ts
const HASH_KEY = "secrets-test-hash-key-0123456789";

/** Every row of every table (internal ones included where readable) and every KV pair, as text; blobs as UTF-8 and hex. */
async function storedText(stub: DurableObjectStub): Promise<string> {
  return runInDurableObject(stub, (_instance: unknown, state: DurableObjectState) => {
    const sql = state.storage.sql;
    const tables = sql.exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").toArray();
    const parts: string[] = [];
    const text = (value: unknown): string => {
      if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) {
        const bytes =
          value instanceof ArrayBuffer ? new Uint8Array(value) : new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
        return `${new TextDecoder().decode(bytes)} ${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
      }
      return typeof value === "string" ? value : JSON.stringify(value);
    };
    for (const { name } of tables) {
      let rows: Record<string, SqlStorageValue>[];
      try {
        rows = sql.exec(`SELECT * FROM "${name}"`).toArray();
      } catch {
        continue; // an internal table the runtime does not let code read
      }
      for (const row of rows) parts.push(`${name}: ${Object.values(row).map(text).join(" | ")}`);
    }
    for (const [key, value] of state.storage.kv.list()) parts.push(`kv ${key}: ${text(value)}`);
    return parts.join("\n");
  });
}

const pathObjects = () => [
  env.AGGREGATOR.getByName(AGGREGATOR_NAME),
  ...Array.from({ length: SHARDS }, (_, s) => env.PATH_COLLECTOR.getByName(shardName(s))),
];

async function flushPaths(): Promise<void> {
  const later = Date.now() + 2 * MINUTE_MS;
  for (const collector of pathObjects().slice(1))
    await (collector as DurableObjectStub<import("./fixtures/test-path-objects").TestPathCollectorDO>).runAlarmAt(later);
  await env.AGGREGATOR.getByName(AGGREGATOR_NAME).runAlarmAt(later + 5_000);
}

let logged: string[] = [];
beforeEach(() => {
  logged = [];
  for (const level of ["log", "info", "warn", "error", "debug", "trace"] as const) {
    const original = console[level].bind(console);
    vi.spyOn(console, level).mockImplementation((...args: unknown[]) => {
      logged.push(
        args
          .map((a) => (a instanceof Error ? `${a.name} ${a.message} ${a.stack ?? ""}` : typeof a === "string" ? a : JSON.stringify(a)))
          .join(" "),
      );
      original(...args);
    });
  }
});
afterEach(() => {
  vi.restoreAllMocks();
});

describe("secrets at rest and in logs", () => {
  it("stores no API-key secret and no admin token, and logs neither, through keys created, rolled, verified, used and mistyped", async () => {
    const accountId = "secrets-acct";
    await env.CREDITS.createAccount({ accountId, name: "Secrets" });
    await env.CREDITS.grant({ accountId, amount: 100, reason: "seed", idempotencyKey: "g" });
    const created = await env.CREDITS.createKey({ accountId, name: "k", scopes: ["*"] });
    const rolled = await env.CREDITS.rollKey({ accountId, keyId: created.keyId, graceMs: 60_000 });
    const keys = [created.key, rolled.key];
    const secrets = keys.map((key) => key.split("_")[3]!);
    expect(secrets.every((s) => /^[0-9a-f]{48}$/.test(s))).toBe(true);

    for (const key of keys) expect(await env.CREDITS.verifyKey({ key, scope: "credits.debit" })).toMatchObject({ valid: true });
    const mistyped = `${keys[1]!.slice(0, -3)}zzz`;
    expect(await env.CREDITS.verifyKey({ key: mistyped })).toMatchObject({ valid: false });
    expect(await env.CREDITS.debit({ accountId, amount: 1, reason: "use", idempotencyKey: "d", keyId: rolled.keyId })).toMatchObject({
      ok: true,
    });
    await env.CREDITS.revokeKey({ accountId, keyId: created.keyId });

    // capnweb: the admin token right and wrong, and an API key offered as a token.
    const realFetch = globalThis.fetch;
    globalThis.fetch = ((input: RequestInfo | URL, init?: RequestInit) => SELF.fetch(input, init)) as typeof fetch;
    try {
      for (const token of [TEST_ADMIN_TOKEN, `${TEST_ADMIN_TOKEN}x`, keys[1]!]) {
        const root = newHttpBatchRpcSession<TollgateRpc>("http://tollgate.test/rpc");
        const admin = root.authenticate(token) as unknown as RpcStub<AdminApi>;
        await admin
          .credits()
          .balance({ accountId })
          .catch(() => undefined);
      }
    } finally {
      globalThis.fetch = realFetch;
    }

    const stored = await storedText(env.CREDIT_LEDGER.getByName(accountId));
    expect(stored).toContain(created.keyId); // the scan does see the key rows
    const haystacks = { stored, logs: logged.join("\n") };
    for (const [where, text] of Object.entries(haystacks)) {
      for (const secret of [...keys, ...secrets, TEST_ADMIN_TOKEN]) expect(text.includes(secret), `${where} holds a secret`).toBe(false);
    }
  });
});

describe("client IPs follow the privacy mode everywhere", () => {
  // Each mode its own addresses: both tests write to the same objects.
  async function everything(service: PathStatsService, v4: string, v6: string): Promise<string> {
    const answers = [
      await service.clientStats({ ip: v4 }),
      await service.clientStats({ ip: v6 }),
      await service.topClients({ range: "1h", limit: 100 }),
      await service.topPaths({ range: "1h" }),
      await service.globalStats({ range: "1h" }),
      await service.pathDetail({ range: "1h", path: "/private/:id" }),
    ].map((a) => JSON.stringify(a));
    for (const format of ["json", "csv"] as const) answers.push(await new Response(await service.export({ range: "1h", format })).text());
    const stored = await Promise.all(pathObjects().map((stub) => storedText(stub)));
    return [...answers, ...stored, ...logged].join("\n");
  }

  it("truncate (the default): only the /24 and /48 networks are stored, answered and exported", async () => {
    const [v4, v6] = ["203.0.113.77", "2001:db8:1:2:3:4:5:6"];
    const service = new PathStatsService(env as unknown as Env);
    for (const ip of [v4, v6])
      await service.recordMany({
        hits: [
          { ip, method: "GET", path: "/private/1", status: 200 },
          { ip, method: "GET", path: "/private/2", status: 500 },
        ],
      });
    await flushPaths();
    const text = await everything(service, v4, v6);
    expect(text).toContain("203.0.113.0/24");
    // The scan reads the stored tables themselves, not only the answers.
    expect((await Promise.all(pathObjects().map((stub) => storedText(stub)))).join("\n")).toContain("203.0.113.0/24");
    expect(text).toContain("2001:db8:1::/48");
    for (const raw of [v4, v6, "2001:db8:1:2:"]) expect(text.includes(raw), raw).toBe(false);
  });

  it("hash: neither the address nor its network appears anywhere, only keyed hashes", async () => {
    const [v4, v6] = ["198.51.100.99", "2001:db8:9:8:7:6:5:4"];
    const service = new PathStatsService({ ...env, PATH_IP_MODE: "hash", PATH_IP_HASH_KEY: HASH_KEY } as unknown as Env);
    for (const ip of [v4, v6])
      await service.recordMany({
        hits: [
          { ip, method: "GET", path: "/private/1", status: 200 },
          { ip, method: "GET", path: "/private/2", status: 500 },
        ],
      });
    await flushPaths();
    const stats = await service.clientStats({ ip: v4 });
    expect(stats).toMatchObject({ totalRequests: 2, ip: expect.stringMatching(/^h:/) });
    const text = await everything(service, v4, v6);
    expect(text).toContain(stats.ip);
    for (const raw of [v4, v6, "198.51.100.", "2001:db8:9:", HASH_KEY]) expect(text.includes(raw), raw).toBe(false);
  });
});

describe("anomaly detection keeps only the stored client id", () => {
  // Networks no test above records to: a client's baseline ignores hits older than its latest
  // minute, so a scan backdated into the minute before another test's hits would go unseen.
  const protection = () => env.PROTECTION.getByName("protection");
  const scan = (ip: string) =>
    Array.from({ length: 25 }, (_, i) => ({ ip, method: "GET", path: `/admin/${i}.php`, status: 404, at: Date.now() - 1_000 }));

  async function scanAndLook(service: PathStatsService, ips: string[]): Promise<{ text: string; flagged: string[] }> {
    await env.ADMIN.protection().setPolicy({ policy: { block: true } });
    try {
      for (const ip of ips) await service.recordMany({ hits: scan(ip) });
    } finally {
      await env.ADMIN.protection().setPolicy({ policy: {} });
    }
    const { flags } = await env.ADMIN.protection().flagged({ range: "1h", limit: 1_000 });
    // The flags were acted on: each scanner's limiter holds a block (keyed by its address, as every per-IP limit is).
    for (const ip of ips) {
      // peek, not authorize: authorize would record a hit in the deployment's own (truncate) mode.
      expect(await env.LIMITS.peek({ subject: `ip:${ip}`, policy: "per-ip" })).toMatchObject({ allowed: false });
      await env.LIMITS.unblock({ subject: `ip:${ip}` });
    }
    const stored = await Promise.all([...pathObjects(), protection()].map((stub) => storedText(stub)));
    return { text: [JSON.stringify(flags), ...stored, ...logged].join("\n"), flagged: flags.map((flag) => flag.client) };
  }

  it("truncate: baselines and flags hold the /24 and /48 networks, never the address", async () => {
    const [v4, v6] = ["192.0.2.177", "2001:db8:77:2:3:4:5:6"];
    const { text, flagged } = await scanAndLook(new PathStatsService(env as unknown as Env), [v4, v6]);
    expect(flagged).toEqual(expect.arrayContaining(["192.0.2.0/24", "2001:db8:77::/48"]));
    expect(text).toContain("192.0.2.0/24");
    for (const raw of [v4, v6, "2001:db8:77:2:"]) expect(text.includes(raw), raw).toBe(false);
  });

  it("hash: baselines and flags hold keyed hashes only", async () => {
    const [v4, v6] = ["198.18.0.177", "2001:db8:88:8:7:6:5:4"];
    const { text, flagged } = await scanAndLook(
      new PathStatsService({ ...env, PATH_IP_MODE: "hash", PATH_IP_HASH_KEY: HASH_KEY } as unknown as Env),
      [v4, v6],
    );
    const hashed = flagged.filter((client) => client.startsWith("h:"));
    expect(hashed.length).toBeGreaterThanOrEqual(2);
    for (const raw of [v4, v6, "198.18.0.", "2001:db8:88:", HASH_KEY]) expect(text.includes(raw), raw).toBe(false);
  });
});
