import { describe, expect, it } from "vitest";
import { connect } from "../../rpc/client";
import { cliAgainstTollgate } from "./run-cli";

const TOKEN = "cli-protection-admin-token-5e1f";
// A run-time policy change reaches the collectors within PROTECTION_CACHE_MS: 0 here, so at once.
const { cli, rpcUrl } = cliAgainstTollgate(TOKEN, { PROTECTION_CACHE_MS: "0" });

describe("the tollgate CLI: protection", () => {
  it("shows and overrides the policy, and resets it", async () => {
    const shown = await cli("protection", "policy");
    expect(shown.code).toBe(0);
    expect(shown.out).toMatch(/^field\s+value\s+set by/);
    expect(shown.out).toContain("no run-time override");
    const set = await cli("protection", "policy", "--set", '{"block":true,"scanMinCount":10}', "--json");
    expect(JSON.parse(set.out)).toMatchObject({
      override: { block: true, scanMinCount: 10 },
      effective: { block: true, scanMinCount: 10, rateK: 4 },
    });
    expect((await cli("protection", "policy")).out).toMatch(/block\s+true\s+override/);
    expect((await cli("protection", "policy", "--set", "{nope")).code).toBe(2);
    const refused = await cli("protection", "policy", "--set", '{"alpha":0}');
    expect(refused.code).toBe(1);
    expect(refused.err).toContain("[INVALID_ARGUMENT]");
  });

  it("adds and removes allow and deny entries and lists them", async () => {
    expect((await cli("protection", "allow", "2001:DB8:AA::/48", "--note", "scanner")).out).toBe("allowed 2001:db8:aa::/48  (scanner)");
    expect((await cli("protection", "deny", "203.0.113.0/24", "--reason", "abuse", "--for", "1h")).out).toMatch(
      /^denied 203\.0\.113\.0\/24 until .*\(in 3600s\): abuse$/,
    );
    expect((await cli("protection", "deny", "198.51.100.7", "--reason", "abuse")).out).toBe("denied 198.51.100.7/32 until removed: abuse");
    const lists = await cli("protection", "lists");
    expect(lists.out).toMatch(/allow list\ncidr\s+note\s+added\n2001:db8:aa::\/48\s+scanner/);
    expect(lists.out).toMatch(/deny list\ncidr\s+until\s+reason\n198\.51\.100\.7\/32\s+until removed\s+abuse\n203\.0\.113\.0\/24/);
    expect((await cli("protection", "undeny", "198.51.100.7/32")).out).toBe("removed");
    expect((await cli("protection", "undeny", "198.51.100.7/32")).out).toBe("not on the deny list");
    expect((await cli("protection", "unallow", "2001:db8:aa::/48")).out).toBe("removed");
    expect((await cli("protection", "deny", "203.0.113.5/24", "--reason", "typo")).code).toBe(1);
    expect((await cli("protection", "deny", "203.0.113.0/24")).code).toBe(2);
    expect((await cli("protection", "allow")).code).toBe(2);
  });

  it("lists a flagged scanner with its evidence and the block", async () => {
    const api = connect(rpcUrl(), { token: TOKEN });
    const at = Date.now() - 1_000;
    await api.pathStats().recordMany({
      hits: Array.from({ length: 12 }, (_, i) => ({ ip: "192.0.2.66", method: "GET" as const, path: `/.env${i}`, status: 404, at })),
    });
    const flagged = await cli("protection", "flagged", "--range", "1h");
    expect(flagged.code).toBe(0);
    expect(flagged.out).toMatch(/^at\s+client\s+rule\s+requests\s+4xx\s+404\s+baseline\s+threshold\s+action\n/);
    expect(flagged.out).toMatch(/192\.0\.2\.0\/24\s+scan\s+10\s+10\s+10\s+5\.0% 4xx\s+50\.0%\s+blocked until /);
    const json = JSON.parse((await cli("protection", "flagged", "--client", "192.0.2.0/24", "--json")).out) as {
      flags: { rule: string; blocked: boolean }[];
    };
    expect(json.flags).toEqual([expect.objectContaining({ rule: "scan", blocked: true })]);
    expect((await cli("protection", "flagged", "--range", "2h")).code).toBe(2);
    await cli("protection", "policy", "--reset");
  });
});
