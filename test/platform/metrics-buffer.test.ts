import { describe, expect, it } from "vitest";
import type { Env } from "../../src/platform/env";
import { MetricsBuffer } from "../../src/platform/metering/metrics-buffer";
import type { ObjectCall } from "../../src/platform/metering/object-calls";
import type { MetricsPush } from "../../src/operations/metrics/schemas";

/**
 * The isolate's buffer of call counts (src/platform/metering/metrics-buffer.ts) against a fake
 * rollup shard: what each push carries, in which order, and what a failed push leaves.
 */
function fakeShard(failures: number) {
  const pushes: MetricsPush[] = [];
  let left = failures;
  const env = {
    METRICS: {
      getByName: () => ({
        push: async (push: MetricsPush) => {
          pushes.push(structuredClone(push));
          if (left > 0) {
            left -= 1;
            throw new Error("shard unavailable");
          }
          return { stored: push.batches.length, duplicates: 0, refusedRows: 0 };
        },
      }),
    },
  } as unknown as Env;
  return { env, pushes };
}

const outcome = (method: string, endMs = 1_700_000_000_000) => ({ method, code: "ok", latencyMs: 0, rowsRead: 0, rowsWritten: 0, endMs });

describe("the isolate's metrics buffer", () => {
  it("pushes a window's counts as one batch, keeps it through a failed push, and resends it with the next window, in order", async () => {
    const buffer = new MetricsBuffer("test");
    const { env, pushes } = fakeShard(1);
    const first = buffer.add("object", "SomeDO", outcome("a"));
    buffer.add("object", "SomeDO", outcome("a"));
    buffer.add("entrypoint", "Some", outcome("b"));
    expect(await buffer.push(env)).toBe(false);
    expect(buffer.isPushed(first)).toBe(false);
    const second = buffer.add("object", "SomeDO", outcome("c"));
    expect(await buffer.push(env)).toBe(true);
    expect(buffer.isPushed(first) && buffer.isPushed(second)).toBe(true);
    expect(pushes.map((push) => push.batches.map((batch) => batch.pushId))).toEqual([[1], [1, 2]]);
    // One source for the whole isolate; each row says its surface; one row per method, not per call.
    expect(new Set(pushes.map((push) => push.source)).size).toBe(1);
    expect(pushes[1]!.batches[0]!.rows.map((row) => [row.surface, row.kind, row.method, row.calls])).toEqual([
      ["object", "SomeDO", "a", 2],
      ["entrypoint", "Some", "b", 1],
    ]);
    // Nothing left: a push sends nothing.
    expect(await buffer.push(env)).toBe(true);
    expect(pushes).toHaveLength(2);
  });

  it("reads a call's rows when it pushes, and rows its scope writes later with the push after, as rows without a call", async () => {
    const buffer = new MetricsBuffer("test");
    const { env, pushes } = fakeShard(0);
    const cursor = (rowsRead: number, rowsWritten: number) => ({ rowsRead, rowsWritten }) as unknown as ObjectCall["cursors"][number];
    const call: ObjectCall = { owner: {}, cursors: [cursor(1, 2)], onLateCursor: null };
    const minuteMs = 1_700_000_040_000;
    buffer.add("object", "SomeDO", outcome("write", minuteMs));
    const source = { minuteMs, kind: "SomeDO", method: "write", code: "ok", call };
    buffer.trackRows(source);
    // Counters grow while a cursor is read: what the push sees is final.
    call.cursors.push(cursor(3, 4));
    await buffer.push(env);
    expect(pushes[0]!.batches[0]!.rows.map((row) => [row.calls, row.rowsRead, row.rowsWritten])).toEqual([[1, 4, 6]]);
    expect(call.cursors).toEqual([]);
    // A later flush in the call's scope: its rows, no call.
    call.cursors.push(cursor(0, 5));
    buffer.trackRows(source);
    await buffer.push(env);
    expect(pushes[1]!.batches[0]!.rows.map((row) => [row.method, row.calls, row.rowsRead, row.rowsWritten])).toEqual([["write", 0, 0, 5]]);
  });

  it("ends a window that counted nothing, so nobody waits on it", async () => {
    const buffer = new MetricsBuffer("test");
    const { env, pushes } = fakeShard(0);
    const call: ObjectCall = { owner: {}, cursors: [], onLateCursor: null };
    buffer.trackRows({ minuteMs: 0, kind: "SomeDO", method: "read", code: "ok", call });
    const waiting = buffer.generation;
    expect(buffer.isPushed(waiting)).toBe(false);
    expect(await buffer.push(env)).toBe(true);
    expect(buffer.isPushed(waiting)).toBe(true);
    expect(pushes).toEqual([]);
  });
});
