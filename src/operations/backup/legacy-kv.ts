/**
 * The legacy KV rate-limit counters tollgate imports (the format the KV-based limiter used,
 * see docs/operations.md):
 *
 *   key   `ratelimit:<keyId>:minute:<yyyyMMddHHmm>` or `...:<yyyyMMddHHmmss>` (UTC)
 *   value the window's count as a decimal integer, e.g. `"17"` (TTL ≈ 90 s)
 *
 * Pure: no bindings, the clock passed in.
 */
export const LEGACY_PREFIX = "ratelimit:";
const MINUTE_MS = 60_000;
const KEY = /^ratelimit:([^:]{1,200}):minute:(\d{12}|\d{14})$/;

export type LegacyCounter =
  | { ok: true; keyId: string; windowStartMs: number; count: number }
  | { ok: false; reason: "malformed key" | "malformed value" | "window over" | "empty" };

/** Reads one KV pair; only a counter of the minute containing `nowMs` still matters. */
export function parseLegacyCounter(key: string, value: string | null, nowMs: number): LegacyCounter {
  const match = KEY.exec(key);
  if (match === null) return { ok: false, reason: "malformed key" };
  const digits = match[2]!;
  const [year, month, day, hour, minute] = [
    digits.slice(0, 4),
    digits.slice(4, 6),
    digits.slice(6, 8),
    digits.slice(8, 10),
    digits.slice(10, 12),
  ].map(Number) as [number, number, number, number, number];
  const second = digits.length === 14 ? Number(digits.slice(12, 14)) : 0;
  const at = Date.UTC(year, month - 1, day, hour, minute, second);
  const check = new Date(at);
  if (
    Number.isNaN(at) ||
    check.getUTCMonth() !== month - 1 ||
    check.getUTCDate() !== day ||
    check.getUTCHours() !== hour ||
    check.getUTCMinutes() !== minute ||
    second > 59
  ) {
    return { ok: false, reason: "malformed key" };
  }
  if (value === null || !/^\d{1,15}$/.test(value.trim())) return { ok: false, reason: "malformed value" };
  const count = Number(value.trim());
  const windowStartMs = at - (at % MINUTE_MS);
  if (windowStartMs !== nowMs - (nowMs % MINUTE_MS)) return { ok: false, reason: "window over" };
  if (count === 0) return { ok: false, reason: "empty" };
  return { ok: true, keyId: match[1]!, windowStartMs, count };
}
