import { describe, expect, it } from "vitest";
import { cliAgainstTollgate } from "./run-cli";

const TOKEN = "cli-alerts-admin-token-5e07";
const { cli } = cliAgainstTollgate(TOKEN);

describe("the tollgate CLI: alerts", () => {
  it("sets a rule that the real alarm evaluates, lists its alert, acknowledges, mutes and deletes", async () => {
    await cli("accounts", "create", "Alerted", "--id", "alerted");
    await cli("credits", "grant", "alerted", "50", "--reason", "seed", "--key", "seed");
    const rule = JSON.stringify({
      kind: "balance_below",
      ruleId: "alerted-low",
      accountId: "alerted",
      level: 100,
      description: "top up alerted",
    });
    const set = await cli("alerts", "set", rule);
    expect(set.code).toBe(0);
    expect(set.out).toMatch(/alerted-low\s+balance_below\s+alerted < 100\s+ok/);

    // The object's own alarm evaluates the new rule at once: 50 < 100 crosses. No sink runs
    // beside this wrangler dev, so the alert stays pending with the delivery error.
    let listed = { code: 1, out: "", err: "" };
    for (let i = 0; i < 50 && !listed.out.includes("alerted-low#1"); i++) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      listed = await cli("alerts", "list", "--rule", "alerted-low");
    }
    expect(listed.out).toMatch(/alerted-low#1\s+firing\s+pending/);
    const json = JSON.parse((await cli("alerts", "list", "--status", "firing", "--json")).out) as {
      alerts: { alertId: string; value: number; description: string }[];
    };
    expect(json.alerts.find((a) => a.alertId === "alerted-low#1")).toMatchObject({ value: 50, description: "top up alerted" });
    expect((await cli("alerts", "rules")).out).toMatch(/alerted-low\s+balance_below\s+alerted < 100\s+firing\s+50/);

    expect((await cli("alerts", "ack", "alerted-low#1")).out).toMatch(/^alerted-low#1 acknowledged at /);
    expect((await cli("alerts", "list", "--status", "acknowledged")).out).toContain("alerted-low#1");
    expect((await cli("alerts", "mute", "alerted-low", "--for", "2h")).out).toMatch(/^rule alerted-low muted until /);
    expect((await cli("alerts", "rules", "--json")).out).toContain("mutedUntil");
    expect((await cli("alerts", "unmute", "alerted-low")).out).toBe("rule alerted-low unmuted");
    expect((await cli("alerts", "delete", "alerted-low")).out).toBe("rule alerted-low deleted");
    expect((await cli("alerts", "rules")).out).toBe("no alert rules");
  });

  it("reports bad rules and unknown alerts with their codes, and usage errors with exit code 2", async () => {
    const bad = await cli("alerts", "set", JSON.stringify({ kind: "balance_below", ruleId: "x", accountId: "a", level: 1, extra: true }));
    expect(bad.code).toBe(1);
    expect(bad.err).toContain("[INVALID_ARGUMENT]");
    expect((await cli("alerts", "set", "{not json")).code).toBe(2);
    expect((await cli("alerts", "list", "--status", "open")).code).toBe(2);
    expect((await cli("alerts", "mute", "x")).code).toBe(2);
    expect((await cli("alerts", "ack", "nope#1")).err).toContain("[NOT_FOUND]");
  });
});
