import type { Algorithm, Rule } from "../rate-limits";

/** A mistake in how the CLI was called: printed with the usage, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

const UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const ALGORITHMS = new Set<Algorithm>(["fixed_window", "sliding_window", "sliding_log", "token_bucket", "gcra"]);

/** `90s`, `1m`, `24h`, `7d`, `250ms` or a bare number of milliseconds. */
export function parseDuration(text: string): number {
  const match = /^(\d+)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!match) throw new UsageError(`not a duration: "${text}" (use e.g. 500ms, 30s, 1m, 24h, 7d)`);
  return Number(match[1]) * UNITS[match[2] ?? "ms"]!;
}

/** A non-negative safe integer. */
export function parseCount(text: string, what: string): number {
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) throw new UsageError(`${what} must be a whole number, got "${text}"`);
  return Number(text);
}

/** `name:algorithm:limit/period`, e.g. `minute:sliding_window:100/1m`. */
export function parseRule(text: string): Rule {
  const match = /^([^:]+):([^:]+):(\d+)\/(.+)$/.exec(text);
  if (!match) throw new UsageError(`not a rule: "${text}" (use name:algorithm:limit/period, e.g. minute:sliding_window:100/1m)`);
  const [, name, algorithm, limit, period] = match as unknown as [string, string, string, string, string];
  if (!ALGORITHMS.has(algorithm as Algorithm)) {
    throw new UsageError(`unknown algorithm "${algorithm}" (one of ${[...ALGORITHMS].join(", ")})`);
  }
  return { name, algorithm: algorithm as Algorithm, limit: parseCount(limit, "limit"), periodMs: parseDuration(period) };
}
