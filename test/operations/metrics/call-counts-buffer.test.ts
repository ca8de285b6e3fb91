import { env } from "cloudflare:workers";
import { abortAllDurableObjects, evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { loadMetricsConfig } from "../../../src/platform/metering/config";

/**
 * An object's call counts wait in memory for at most METRICS_BUFFER_MS (25 ms in the tests,
 * vitest.config.ts; 2 s by default), then one upsert per
 * method, code and latency bucket writes them (docs/metrics.md). These tests read `_metrics`
 * directly, so nothing here writes the counts early.
 */
async function writtenCalls(stub: DurableObjectStub): Promise<number> {
  return runInDurableObject(stub, (_instance: unknown, state: DurableObjectState) => {
    return state.storage.sql.exec<{ n: number }>("SELECT COALESCE(SUM(calls), 0) AS n FROM _metrics").one().n;
  });
}

const bufferMs = loadMetricsConfig(env).bufferMs;
const waitPastTheBuffer = () => new Promise((resolve) => setTimeout(resolve, bufferMs + 500));

describe("buffered call counts", () => {
  it("are buffered in these tests (a 0 would write with every call)", () => {
    expect(bufferMs).toBeGreaterThan(0);
  });

  it("are written within the buffer window, one row for many calls of one kind, with nothing else asking", async () => {
    const probe = env.METRICS_PROBE.getByName("buffer-window");
    for (let i = 0; i < 20; i++) expect(await probe.ok()).toBe("ok");
    await waitPastTheBuffer();
    expect(await writtenCalls(probe)).toBe(20);
    const rows = await runInDurableObject(probe, (_instance: unknown, state: DurableObjectState) => {
      return state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM _metrics WHERE method = 'ok'").one().n;
    });
    // One minute, one code: at most a row per latency bucket (and a minute boundary), never one per call.
    expect(rows).toBeLessThanOrEqual(4);
  });

  it("survive a graceful eviction right after the calls", async () => {
    const probe = env.METRICS_PROBE.getByName("buffer-evicted");
    for (let i = 0; i < 5; i++) await probe.ok();
    await evictDurableObject(probe);
    expect(await writtenCalls(probe)).toBe(5);
  });

  it("lose at most the last window when the object crashes", async () => {
    const probe = env.METRICS_PROBE.getByName("buffer-crash");
    for (let i = 0; i < 6; i++) await probe.ok();
    await waitPastTheBuffer();
    for (let i = 0; i < 4; i++) await probe.ok();
    // Not an eviction: every object of this file is torn down at once, memory lost.
    await abortAllDurableObjects();
    // The old stub is broken with the object; a new one reaches the restarted object.
    const written = await writtenCalls(env.METRICS_PROBE.getByName("buffer-crash"));
    expect(written).toBeGreaterThanOrEqual(6);
    expect(written).toBeLessThanOrEqual(10);
  });
});
