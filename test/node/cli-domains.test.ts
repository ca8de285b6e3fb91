import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cliAgainstTollgate } from "./run-cli";

const TOKEN = "cli-domains-admin-token-31bc";
const root = join(import.meta.dirname, "..", "..");
const { cli, rpcUrl } = cliAgainstTollgate(TOKEN);
let scratch: string;

beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), "tollgate-cli-"));
});
afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe("the tollgate CLI: accounts, keys, credits and stats", () => {
  it("creates an account, grants credits idempotently and shows balance and entries", async () => {
    const created = await cli("accounts", "create", "Acme Inc", "--id", "acme");
    expect(created.code).toBe(0);
    expect(created.out).toMatch(/^account acme {2}"Acme Inc"/);
    expect((await cli("credits", "grant", "acme", "500", "--reason", "welcome", "--key", "welcome-1")).out).toMatch(
      /^granted 500; available now 500/,
    );
    // The same --key grants once.
    expect((await cli("credits", "grant", "acme", "500", "--reason", "welcome", "--key", "welcome-1")).out).toMatch(/available now 500/);
    const balance = await cli("credits", "balance", "acme", "--json");
    expect(JSON.parse(balance.out)).toMatchObject({ available: 500, granted: 500 });
    const table = (await cli("credits", "balance", "acme")).out;
    expect(table).toMatch(/^available\s+held\s+granted/);
    const entries = await cli("credits", "entries", "acme");
    expect(entries.out).toMatch(/seq\s+at\s+kind\s+amount/);
    expect(entries.out.split("\n")).toHaveLength(2);
    expect((await cli("accounts", "show", "acme")).out).toContain("500");
  });

  it("creates, lists, rolls and revokes keys", async () => {
    await cli("accounts", "create", "Keys Co", "--id", "keysco");
    const created = await cli(
      "keys",
      "create",
      "keysco",
      "--name",
      "backend",
      "--scope",
      "api.*",
      "--rule",
      "second:token_bucket:10/1s",
      "--cap-day",
      "100",
      "--json",
    );
    expect(created.code).toBe(0);
    const { keyId, key } = JSON.parse(created.out) as { keyId: string; key: string };
    expect(key).toMatch(/^tg_keysco_k[0-9a-f]{16}_/);
    const listed = await cli("keys", "list", "keysco");
    expect(listed.out).toMatch(new RegExp(`${keyId}\\s+backend\\s+api\\.\\*\\s+second 10/1000ms`));
    expect(listed.out).not.toContain(key.split("_")[3]);
    const rolled = await cli("keys", "roll", "keysco", keyId, "--grace", "1h", "--json");
    const next = JSON.parse(rolled.out) as { keyId: string; previous: { rolledTo: string } };
    expect(next.previous.rolledTo).toBe(next.keyId);
    const revoked = await cli("keys", "revoke", "keysco", next.keyId);
    expect(revoked.out).toMatch(new RegExp(`^key ${next.keyId} revoked at `));
    expect((await cli("keys", "list", "keysco")).out).toMatch(new RegExp(`${next.keyId}.*revoked`));
  });

  it("reports NOT_FOUND and usage mistakes with their exit codes", async () => {
    const missing = await cli("credits", "balance", "nobody-here");
    expect(missing.code).toBe(1);
    expect(missing.err).toContain("[NOT_FOUND]");
    expect((await cli("credits", "grant", "acme", "-5", "--reason", "x")).code).toBe(2);
    expect((await cli("keys", "create", "acme")).code).toBe(2);
    expect((await cli("stats", "global", "--range", "2h")).code).toBe(2);
  });

  it("shows the retention of every data class, or one, as a table or JSON", async () => {
    const all = await cli("retention");
    expect(all.code).toBe(0);
    expect(all.out).toMatch(/^data class\s+kept\s+set by\s+deleted by\s+note/);
    expect(all.out).toMatch(/ledger\.entries\s+-\s+fixed\s+never deleted/);
    expect(all.out).toMatch(/limiter\.idempotency\s+24h\s+RETENTION\.limiterIdempotency/);
    expect(all.out).toMatch(/paths\.minutes\s+26h\s+PATH_RETENTION\.minutes/);
    const one = JSON.parse((await cli("retention", "ledger.idempotency", "--json")).out);
    expect(one).toEqual({ classes: [expect.objectContaining({ dataClass: "ledger.idempotency", keptMs: 35 * 86_400_000 })] });
    const unknown = await cli("retention", "everything");
    expect(unknown.code).toBe(1);
    expect(unknown.err).toContain("[INVALID_ARGUMENT]");
  });

  it("shows global stats, top paths and top clients as tables or JSON", async () => {
    const global = await cli("stats", "global", "--range", "24h");
    expect(global.code).toBe(0);
    expect(global.out).toMatch(/^requests\s+errors\s+error rate\s+clients\s+paths\s+p50\s+p90\s+p99/);
    expect(JSON.parse((await cli("stats", "global", "--json")).out)).toMatchObject({
      totalRequests: expect.any(Number),
      latency: expect.any(Object),
    });
    expect((await cli("stats", "paths", "--sort", "p99", "--limit", "5")).code).toBe(0);
    expect(JSON.parse((await cli("stats", "clients", "--json")).out)).toMatchObject({
      clients: expect.any(Array),
      errorBound: expect.any(Number),
    });
  });

  it("shows metrics per entrypoint and object method, and the cost report", async () => {
    await cli("accounts", "create", "Metrics Co", "--id", "metricsco");
    const metrics = await cli("metrics", "--range", "1h");
    expect(metrics.code).toBe(0);
    // The accounts call above went through capnweb's AdminApi (flushed by this isolate's metrics call).
    expect(metrics.out).toMatch(/^entrypoints\n/);
    expect(metrics.out).toMatch(/entrypoint\s+method\s+calls\s+errors\s+codes\s+p50\s+p99/);
    const report = JSON.parse((await cli("metrics", "--json")).out) as { entrypoints: { kind: string }[] };
    expect(report.entrypoints.map((entry) => entry.kind)).toContain("Gateway");
    const cost = await cli("cost", "--range", "24h");
    expect(cost.code).toBe(0);
    expect(cost.out).toMatch(/^item\s+quantity\s+price/);
    expect(cost.out).toMatch(/projected per month/);
    expect(JSON.parse((await cli("cost", "--json")).out)).toMatchObject({ items: expect.any(Array), monthlyTotalUsd: expect.any(Number) });
    expect((await cli("metrics", "--range", "2h")).code).not.toBe(0);
  });

  it("exports a range to a file through a WebSocket session", async () => {
    const file = join(scratch, "export.csv");
    const exported = await cli("stats", "export", "--out", file, "--range", "1h");
    expect(exported.code).toBe(0);
    expect(exported.out).toMatch(new RegExp(`^exported \\d+ lines \\(\\d+ bytes\\) to ${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`));
    expect(readFileSync(file, "utf8")).toMatch(/^bucketStart,granularity,method,path,requests,errors,clients,p50,p90,p99\r\n/);
  });

  it("runs as the real binary (npx tollgate) with settings from the environment", async () => {
    const { stdout } = await promisify(execFile)("node", [join(root, "rpc/cli/bin.mjs"), "credits", "balance", "acme", "--json"], {
      cwd: root,
      env: { ...process.env, TOLLGATE_URL: rpcUrl(), TOLLGATE_TOKEN: TOKEN },
    });
    expect(JSON.parse(stdout)).toMatchObject({ available: 500 });
    const failed = await promisify(execFile)("node", [join(root, "rpc/cli/bin.mjs"), "credits", "balance", "nobody"], {
      cwd: root,
      env: { ...process.env, TOLLGATE_URL: rpcUrl(), TOLLGATE_TOKEN: TOKEN },
    }).then(
      () => undefined,
      (error: { code: number; stderr: string }) => error,
    );
    expect(failed?.code).toBe(1);
    expect(failed?.stderr).toContain("[NOT_FOUND]");
  });
});
