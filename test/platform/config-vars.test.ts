// Configuration variables are parsed once per isolate and text, and read on every call after
// that (src/platform/json-var.ts, src/platform/metering/config.ts): a cached value must always be
// the one its own text gives.
import { describe, expect, it } from "vitest";
import * as v from "valibot";
import { parseJsonVar } from "../../src/platform/json-var";
import { loadMetricsConfig } from "../../src/platform/metering/config";
import { hasErrorCode } from "../../src/platform/errors";

const schema = v.object({ n: v.number() });

function thrown(body: () => unknown): unknown {
  try {
    body();
  } catch (error) {
    return error;
  }
  throw new Error("expected a throw");
}

describe("parseJsonVar", () => {
  it("answers each text with its own value, parsed once, and keeps names apart", () => {
    const name = `TEST_VAR_${crypto.randomUUID()}`;
    const one = parseJsonVar(name, '{"n":1}', "{}", schema);
    const two = parseJsonVar(name, '{"n":2}', "{}", schema);
    expect(one).toEqual({ n: 1 });
    expect(two).toEqual({ n: 2 });
    // The same text again is the very value parsed before; the other name parses its own.
    expect(parseJsonVar(name, '{"n":1}', "{}", schema)).toBe(one);
    expect(parseJsonVar(`${name}_OTHER`, '{"n":1}', "{}", schema)).not.toBe(one);
    // Unset: the fallback's value.
    expect(parseJsonVar(name, undefined, '{"n":3}', schema)).toEqual({ n: 3 });
  });

  it("refuses a malformed or invalid text as INTERNAL, every time it is read", () => {
    const name = `TEST_VAR_${crypto.randomUUID()}`;
    for (let i = 0; i < 2; i++) {
      expect(
        hasErrorCode(
          thrown(() => parseJsonVar(name, "{", "{}", schema)),
          "INTERNAL",
        ),
      ).toBe(true);
      expect(
        hasErrorCode(
          thrown(() => parseJsonVar(name, '{"n":"x"}', "{}", schema)),
          "INTERNAL",
        ),
      ).toBe(true);
    }
  });
});

describe("loadMetricsConfig", () => {
  it("answers each set of variables with its own configuration, alternating or not", () => {
    const fast = { METRICS_FLUSH_MS: "10", METRICS_BUFFER_MS: "20", METRICS_SHARDS: "2" };
    const slow = { METRICS_FLUSH_MS: "3000", METRICS_BUFFER_MS: "4000" };
    for (let i = 0; i < 2; i++) {
      expect(loadMetricsConfig(fast)).toMatchObject({ flushMs: 10, bufferMs: 20, shards: 2 });
      expect(loadMetricsConfig(slow)).toMatchObject({ flushMs: 3_000, bufferMs: 4_000, shards: 4 });
      expect(loadMetricsConfig({ ...fast })).toMatchObject({ flushMs: 10, bufferMs: 20, shards: 2 });
    }
    // One variable changed on the same object is read again.
    const changing: Record<string, string> = { METRICS_FLUSH_MS: "10" };
    expect(loadMetricsConfig(changing).flushMs).toBe(10);
    changing.METRICS_FLUSH_MS = "11";
    expect(loadMetricsConfig(changing).flushMs).toBe(11);
  });

  it("refuses a value out of bounds as INTERNAL, after a good one was cached", () => {
    expect(loadMetricsConfig({ METRICS_BUFFER_MS: "100" }).bufferMs).toBe(100);
    expect(
      hasErrorCode(
        thrown(() => loadMetricsConfig({ METRICS_BUFFER_MS: "5001" })),
        "INTERNAL",
      ),
    ).toBe(true);
    expect(
      hasErrorCode(
        thrown(() => loadMetricsConfig({ METRICS_SHARDS: "0" })),
        "INTERNAL",
      ),
    ).toBe(true);
  });
});
