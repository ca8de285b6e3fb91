import { describe, expect, it } from "vitest";
import { cliAgainstTollgate } from "./run-cli";

const TOKEN = "cli-test-admin-token-77aa";
const { cli } = cliAgainstTollgate(TOKEN);

describe("the tollgate CLI", () => {
  it("checks a limit and prints a table, then exits 3 once denied", async () => {
    const first = await cli("limits", "check", "cli:one", "--rule", "minute:fixed_window:1/1h");
    expect(first.code).toBe(0);
    expect(first.out).toMatch(/^ALLOWED {2}remaining 0 of 1/);
    expect(first.out).toMatch(/rule\s+algorithm\s+limit\s+period\s+remaining/);
    const second = await cli("limits", "check", "cli:one", "--rule", "minute:fixed_window:1/1h");
    expect(second.code).toBe(3);
    expect(second.out).toMatch(/^DENIED by minute/);
  });

  it("overrides and blocks a subject, effective on the next call", async () => {
    expect((await cli("limits", "override", "cli:ovr", "--rule", "tight:fixed_window:1/1h")).code).toBe(0);
    expect((await cli("limits", "check", "cli:ovr", "--policy", "per-ip")).out).toMatch(/remaining 0 of 1/);
    expect((await cli("limits", "clear-override", "cli:ovr")).out).toBe("override cleared");
    expect((await cli("limits", "check", "cli:ovr", "--policy", "per-ip")).out).toMatch(/remaining 99 of 100/);

    const blocked = await cli("limits", "block", "cli:ovr", "--for", "10m", "--reason", "abuse");
    expect(blocked.code).toBe(0);
    expect(blocked.out).toMatch(/^blocked until .*: abuse$/);
    expect((await cli("limits", "check", "cli:ovr", "--policy", "per-ip")).code).toBe(3);
    expect((await cli("limits", "unblock", "cli:ovr")).out).toBe("unblocked");
    expect((await cli("limits", "check", "cli:ovr", "--policy", "per-ip")).code).toBe(0);
  });

  it("prints JSON for scripts", async () => {
    const { code, out } = await cli("limits", "peek", "cli:json", "--policy", "per-ip", "--json");
    expect(code).toBe(0);
    expect(JSON.parse(out)).toMatchObject({ allowed: true, remaining: 100, limit: 100 });
  });

  it("reports a tollgate error with its code and details, exit 1", async () => {
    const { code, err } = await cli("limits", "check", "cli:bad", "--rule", "x:fixed_window:0/1m");
    expect(code).toBe(1);
    expect(err).toContain("[INVALID_ARGUMENT]");
    expect(err).toContain("rules.0.limit: must be at least 1");
  });

  it("refuses a wrong token with UNAUTHENTICATED, exit 1", async () => {
    const { code, err } = await cli("whoami", "--token", "wrong");
    expect(code).toBe(1);
    expect(err).toContain("[UNAUTHENTICATED]");
  });

  it("explains usage mistakes, exit 2, without calling tollgate", async () => {
    expect((await cli("limits", "check", "s", "--rule", "nonsense")).code).toBe(2);
    expect((await cli("limits", "check", "s", "--policy", "p", "--rule", "a:fixed_window:1/1s")).code).toBe(2);
    expect((await cli("limits", "frobnicate")).code).toBe(2);
    expect((await cli("limits", "check", "s", "--unknown-flag")).code).toBe(2);
  });

  it("reports an unreachable server, exit 1", async () => {
    const { code, err } = await cli("whoami", "--url", "http://127.0.0.1:9/rpc");
    expect(code).toBe(1);
    expect(err).toContain("could not talk to tollgate");
  });
});
