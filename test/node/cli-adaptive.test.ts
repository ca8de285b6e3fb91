import { describe, expect, it } from "vitest";
import { cliAgainstTollgate } from "./run-cli";

const TOKEN = "cli-adaptive-admin-token-5e19";
const { cli } = cliAgainstTollgate(TOKEN);

describe("the tollgate CLI: adaptive limits", () => {
  it("sets, lists, shows and deletes an adaptive policy", async () => {
    const set = await cli(
      "adaptive",
      "set",
      "storm",
      "--signal",
      "error_rate",
      "--tighten-above",
      "0.2",
      "--relax-below",
      "0.05",
      "--dwell",
      "2m",
      "--stage",
      "per-ip:0.1",
      "--stage",
      "per-key/hour:0.5",
      "--window",
      "2m",
      "--every",
      "30s",
    );
    expect(set).toMatchObject({ code: 0, out: "adaptive policy storm set: 2 stage(s), now at level 0" });
    const listed = await cli("adaptive", "list", "--json");
    expect(JSON.parse(listed.out)).toEqual({
      policies: [
        {
          name: "storm",
          signal: { kind: "error_rate", windowMs: 120_000 },
          tightenAbove: 0.2,
          relaxBelow: 0.05,
          dwellMs: 120_000,
          stages: [
            { policy: "per-ip", factor: 0.1 },
            { policy: "per-key", rules: ["hour"], factor: 0.5 },
          ],
          evaluateEveryMs: 30_000,
        },
      ],
    });
    expect((await cli("adaptive", "list")).out).toMatch(/storm\s+error_rate\s+0\.2\s+0\.05\s+120000ms\s+per-ip×0\.1 → per-key\/hour×0\.5/);
    expect((await cli("adaptive", "state")).out).toMatch(/storm\s+0\/2\s+/);
    expect((await cli("adaptive", "history", "--range", "1h")).out).toBe("no level changes");
    expect((await cli("adaptive", "delete", "storm")).out).toBe("adaptive policy storm deleted");
    expect((await cli("adaptive", "state")).out).toBe("no adaptive policies");
  });

  it("exits 2 on a malformed stage or signal, and 1 with the field when tollgate refuses the policy", async () => {
    const base = ["adaptive", "set", "bad", "--signal", "error_rate", "--tighten-above", "0.2", "--relax-below", "0.05", "--dwell", "1m"];
    expect((await cli(...base, "--stage", "per-ip=0.5")).code).toBe(2);
    expect((await cli(...base.map((arg) => (arg === "error_rate" ? "cpu" : arg)), "--stage", "per-ip:0.5")).code).toBe(2);
    const refused = await cli(...base, "--stage", "nope:0.5");
    expect(refused.code).toBe(1);
    expect(refused.err).toContain("stages.0.policy");
    const hysteresis = await cli(...base.map((arg) => (arg === "0.05" ? "0.3" : arg)), "--stage", "per-ip:0.5");
    expect(hysteresis.code).toBe(1);
    expect(hysteresis.err).toContain("relaxBelow");
  });
});
