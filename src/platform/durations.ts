import { DAY_MS, HOUR_MS } from "./buckets";

/** Parses `"26h"`, `"35d"`, `"90m"` into milliseconds. */
export function parseDuration(text: string): number {
  const match = /^(\d{1,6})([mhd])$/.exec(text.trim());
  if (match === null) throw new Error(`"${text}" is not a duration like 90m, 26h or 35d`);
  const unit = match[2] === "m" ? 60_000 : match[2] === "h" ? HOUR_MS : DAY_MS;
  return Number(match[1]) * unit;
}

/** The range a named duration must fall in (ms); `max` only where a longer value does harm. */
export interface DurationBounds {
  min: number;
  max?: number;
}

/** The wording of a rejected entry, so each variable keeps the messages operators already know. */
export interface DurationMessages {
  unknownName(name: string, known: readonly string[]): string;
  notAString(name: string): string;
  outOfBounds(name: string, bounds: DurationBounds): string;
}

/**
 * Messages that name the entry as `VARIABLE.name`, as PATH_RETENTION and METRICS_RETENTION
 * have always done (their keys are granularities with a floor and no ceiling).
 */
export function granularityMessages(variable: string): DurationMessages {
  return {
    unknownName: (name) => `${variable} has an unknown granularity "${name}"`,
    notAString: (name) => `${variable}.${name} must be a duration string`,
    outOfBounds: (name, { min }) => `${variable}.${name} must be at least ${min / HOUR_MS}h`,
  };
}

export interface NamedDurationsSpec<K extends string> {
  /** The variable read, named in the messages (`PATH_RETENTION`, `RETENTION`, …). */
  variable: string;
  /** Every accepted name with its value when the variable leaves it out. */
  defaults: Readonly<Record<K, number>>;
  bounds: (name: K) => DurationBounds;
  /** Defaults to {@link granularityMessages}. */
  messages?: DurationMessages;
}

/**
 * Parses a variable holding a JSON object of named durations, e.g. `{ "minutes": "30h" }`,
 * over its defaults: a missing name keeps its default, an unknown name, a non-string or a
 * duration out of bounds is an error (thrown; the caller logs it and answers `INTERNAL`).
 * An unset or blank variable is the defaults. Shared by every retention-like variable so
 * they all read the same way.
 */
export function parseNamedDurations<K extends string>(raw: string | undefined, spec: NamedDurationsSpec<K>): Record<K, number> {
  if (raw === undefined || raw.trim() === "") return spec.defaults;
  const messages = spec.messages ?? granularityMessages(spec.variable);
  const parsed: unknown = JSON.parse(raw);
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error(`${spec.variable} must be a JSON object`);
  const out: Record<K, number> = { ...spec.defaults };
  for (const [name, value] of Object.entries(parsed)) {
    // Own keys only: `"__proto__"` or `"toString"` is not a name, however `in` sees it.
    if (!Object.hasOwn(out, name)) throw new Error(messages.unknownName(name, Object.keys(out)));
    if (typeof value !== "string") throw new Error(messages.notAString(name));
    const ms = parseDuration(value);
    const bounds = spec.bounds(name as K);
    if (ms < bounds.min || (bounds.max !== undefined && ms > bounds.max)) throw new Error(messages.outOfBounds(name, bounds));
    out[name as K] = ms;
  }
  return out;
}

/** Resolves after `ms` (a timer of the caller's own request). */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
