import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { ImportFromKvReport } from "../../../rpc/backup";
import { errorCodeOf } from "../../../rpc/errors";
import type { Rule } from "../../../rpc/rate-limits";
import { parseLegacyCounter } from "../../../src/operations/backup/legacy-kv";

const MINUTE = 60_000;

/** `yyyyMMddHHmm` (or with seconds) in UTC, as the legacy limiter wrote its keys. */
function stamp(ms: number, seconds = false): string {
  const iso = new Date(ms).toISOString().replace(/[-:T]/g, "");
  return iso.slice(0, seconds ? 14 : 12);
}

describe("legacy KV counter format", () => {
  const now = Date.UTC(2026, 0, 23, 14, 30, 20);
  it("reads minute counters with and without seconds, only for the current minute", () => {
    expect(parseLegacyCounter("ratelimit:key_1:minute:202601231430", "17", now)).toEqual({
      ok: true,
      keyId: "key_1",
      windowStartMs: Date.UTC(2026, 0, 23, 14, 30),
      count: 17,
    });
    expect(parseLegacyCounter("ratelimit:key_1:minute:20260123143000", " 3 ", now)).toMatchObject({ ok: true, count: 3 });
    expect(parseLegacyCounter("ratelimit:key_1:minute:202601231429", "17", now)).toEqual({ ok: false, reason: "window over" });
    expect(parseLegacyCounter("ratelimit:key_1:minute:202601231430", "0", now)).toEqual({ ok: false, reason: "empty" });
  });

  it("refuses malformed keys and values", () => {
    for (const key of [
      "ratelimit:k:hour:202601231430",
      "ratelimit::minute:202601231430",
      "ratelimit:k:minute:202613231430",
      "ratelimit:k:minute:202602301430",
      "ratelimit:k:minute:20260123143",
      "ratelimit:k:minute:20260123143099",
      "other:k:minute:202601231430",
    ]) {
      expect(parseLegacyCounter(key, "1", now), key).toEqual({ ok: false, reason: "malformed key" });
    }
    for (const value of [null, "", "-1", "1.5", "abc", "1e3", "9".repeat(16)]) {
      expect(parseLegacyCounter("ratelimit:k:minute:202601231430", value, now), String(value)).toEqual({
        ok: false,
        reason: "malformed value",
      });
    }
  });
});

describe("Admin.importFromKv", () => {
  it("imports live counters into the subjects' windows, resumably by cursor, and never counts twice", async () => {
    // Keep the whole test inside one minute: the counters only matter in their own minute.
    if (Date.now() % MINUTE > 45_000) await new Promise((resolve) => setTimeout(resolve, MINUTE - (Date.now() % MINUTE) + 100));
    const now = Date.now();
    const kv = env.LEGACY_KV!;
    await kv.put(`ratelimit:alpha:minute:${stamp(now)}`, "7");
    await kv.put(`ratelimit:beta:minute:${stamp(now, true)}`, "50");
    await kv.put(`ratelimit:alpha:minute:${stamp(now - MINUTE)}`, "40");
    await kv.put("ratelimit:gamma:hour:2026012314", "5");
    await kv.put(`ratelimit:delta:minute:${stamp(now)}`, "lots");
    const limit = 20;
    const rules: Rule[] = [{ name: "minute", algorithm: "fixed_window", limit, periodMs: MINUTE }];

    const runAll = async () => {
      const reports: ImportFromKvReport[] = [];
      let cursor: string | undefined;
      do {
        const report = await env.ADMIN.importFromKv({ limit, subjectPrefix: "legacy:", batch: 2, cursor });
        reports.push(report);
        cursor = report.cursor;
      } while (cursor !== undefined);
      return reports;
    };
    const first = await runAll();
    expect(first.length).toBeGreaterThanOrEqual(3); // five keys, two per call
    expect(first.reduce((n, r) => n + r.scanned, 0)).toBe(5);
    const imported = first.flatMap((r) => r.imported).sort((a, b) => a.subject.localeCompare(b.subject));
    expect(imported).toEqual([
      { key: `ratelimit:alpha:minute:${stamp(now)}`, subject: "legacy:alpha", count: 7 },
      { key: `ratelimit:beta:minute:${stamp(now, true)}`, subject: "legacy:beta", count: 20 },
    ]);
    expect(
      first
        .flatMap((r) => r.skipped)
        .map((s) => s.reason)
        .sort(),
    ).toEqual(["malformed key", "malformed value", "window over"]);
    expect((await env.LIMITS.peek({ subject: "legacy:alpha", rules })).remaining).toBe(limit - 7);
    expect((await env.LIMITS.peek({ subject: "legacy:beta", rules })).remaining).toBe(0);

    // Running it again (or resuming after a crash) changes nothing.
    const again = await runAll();
    expect(again.flatMap((r) => r.imported).length).toBe(2);
    expect((await env.LIMITS.peek({ subject: "legacy:alpha", rules })).remaining).toBe(limit - 7);
    expect((await env.LIMITS.peek({ subject: "legacy:beta", rules })).remaining).toBe(0);
  });

  it("refuses bad input", async () => {
    for (const input of [{}, { limit: 0 }, { limit: 5, batch: 1_001 }, { limit: 5, ruleName: "a b" }, { limit: 5, extra: 1 }]) {
      let code: string | undefined;
      try {
        await env.ADMIN.importFromKv(input as never);
      } catch (error) {
        code = errorCodeOf(error);
      }
      expect(code, JSON.stringify(input)).toBe("INVALID_ARGUMENT");
    }
  });
});
