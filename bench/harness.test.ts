/**
 * The harness itself, on a real workerd: the ceiling scenario (about a second) and the cost
 * scenario with 20 calls per operation. Checks the shape of what a run returns, never its speed
 * or its costs (those belong to `npm run bench`).
 */
import { describe, expect, it } from "vitest";
import { COST_BUDGETS } from "./harness/cost";
import { renderMarkdown, renderText } from "./harness/report";
import { runBench } from "./harness/runner";
import { allOps, SCENARIOS } from "./scenarios/index";
import { ANSWERING_REFERENCE, shapeOf } from "./scenarios/lean";
import { TARGETS } from "./targets";

describe("bench harness", () => {
  it("registers every scenario's ops once, under unique names", () => {
    const ops = allOps();
    const declared = SCENARIOS.flatMap((scenario) => Object.keys(scenario.ops));
    expect(Object.keys(ops).sort()).toEqual([...declared].sort());
    expect(new Set(SCENARIOS.map((scenario) => scenario.id)).size).toBe(SCENARIOS.length);
  });

  it("runs the ceiling scenario and returns measured rows, memory, machine and every target", async () => {
    const results = await runBench({ mode: "test", only: ["ceiling"] });

    const measured = results.rows.filter((row) => row.measured !== undefined);
    expect(measured.map((row) => row.id)).toEqual([
      "ceiling.noop.entrypoint",
      "ceiling.write.entrypoint",
      "ceiling.noop.do-rpc",
      "ceiling.write.do-rpc",
    ]);
    for (const row of measured) {
      const m = row.measured!;
      expect(m.ops).toBeGreaterThan(0);
      expect(m.errors).toBe(0);
      expect(row.note).toBeUndefined();
      for (const value of [m.opsPerSec, m.meanMs, m.p50Ms, m.p90Ms, m.p99Ms]) expect(Number.isFinite(value)).toBe(true);
      expect(m.p50Ms).toBeLessThanOrEqual(m.p90Ms);
      expect(m.p90Ms).toBeLessThanOrEqual(m.p99Ms);
      expect(row.concurrency).toBe(4);
    }
    // The write ceiling is paired with the no-op ceiling, so it carries a ratio.
    expect(measured.find((row) => row.id === "ceiling.write.do-rpc")!.measured!.ratioToCeiling).toBeGreaterThan(0);

    const bytes = results.rows.find((row) => row.id === "memory.stored-bytes.empty-subject")!;
    expect(bytes.extra?.storedBytes).toBeGreaterThan(0);
    expect(results.memory.workerdPeakRssBytes).toBeGreaterThan(0);
    expect(results.memory.byScenario.map((entry) => entry.scenario)).toEqual(["ceiling"]);

    expect(results.machine.cpus).toBeGreaterThan(0);
    expect(results.machine.workerd).toMatch(/^\d+\.\d+\.\d+/);
    expect(results.targets.map((target) => target.id)).toEqual(TARGETS.map((target) => target.id));
    // Without check rows, the check targets cannot be judged; they say so instead of guessing.
    expect(results.targets.find((target) => target.id === "check-1-rule")!.status).toBe("n/a");
    expect(results.skipped).toEqual([]);

    // Results are plain JSON, and both renderings name every measured row.
    expect(JSON.parse(JSON.stringify(results))).toEqual(results);
    const text = renderText(results);
    const markdown = renderMarkdown(results);
    for (const row of measured) {
      expect(text).toContain(row.label);
      expect(markdown).toContain(row.label);
    }
    expect(text).toContain("n/a (capability not built yet)");
  });

  it("tells values apart by their shape, not their contents", () => {
    expect(shapeOf({ b: [1, { c: "x" }], a: true })).toBe(shapeOf({ a: false, b: [2, { c: "y" }] }));
    expect(shapeOf({ a: 1 })).not.toBe(shapeOf({ a: "1" }));
    expect(shapeOf({ a: 1 })).not.toBe(shapeOf({ a: 1, b: undefined }));
    expect(shapeOf({ rules: [{}] })).not.toBe(shapeOf({ rules: [{}, {}] }));
  });

  it("runs the lean scenario: check beside both write ceilings, the answering one answering check's shape", async () => {
    const results = await runBench({ mode: "test", only: ["lean"] });

    const check = results.rows.find((row) => row.id === "lean.check.one-subject")!;
    expect(check.measured!.errors).toBe(0);
    expect(check.measured!.ratioToCeiling).toBeGreaterThan(0);
    expect(check.extra?.answerShapeMatches).toBe(true);
    expect(check.extra?.[`× ${ANSWERING_REFERENCE}`]).toBeGreaterThan(0);
    const target = results.targets.find((candidate) => candidate.id === "lean-check")!;
    expect(target.detail).toContain("carrying check's input and a decision");
    expect(target.detail).not.toContain("WARNING");
  });

  it("runs the cost scenario: every budget row counted by the bench Worker, judged and rendered", async () => {
    const results = await runBench({ mode: "test", only: ["cost"] });

    for (const budget of COST_BUDGETS) {
      const row = results.rows.find((candidate) => candidate.id === budget.rowId)!;
      expect(row.extra?.calls).toBe(20);
      expect(row.note).toBeUndefined();
      expect(row.extra?.rowsWritten).toBeGreaterThan(0);
      expect(row.extra?.requests).toBeGreaterThan(0);
      expect(row.extra?.usdPerMillion).toBeGreaterThan(0);
      expect(["PASS", "FAIL"]).toContain(results.targets.find((target) => target.id === budget.id)!.status);
    }
    // Every gateway request reaches the limiter and the ledger (twice); its hit reaches a collector in a batch.
    expect(results.rows.find((row) => row.id === "cost.authorize-settle")!.extra?.requests).toBeGreaterThan(3);
    expect(results.rows.find((row) => row.id === "cost.baseline.kv")!.extra?.usdPerMillion).toBe(5.5);
    expect(JSON.parse(JSON.stringify(results))).toEqual(results);
    expect(renderText(results)).toContain("where the rows go");
    expect(renderMarkdown(results)).toContain("A month of gateway requests");
    // Its alarms run on a clock moved forward, and each window waits for the objects' pending timers
    // (observations flushed from memory within seconds: a few seconds per window, some minutes in all).
  }, 420_000);
});
