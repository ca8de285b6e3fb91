import { type DurationMessages, parseNamedDurations } from "./durations";
import { ServiceError } from "./errors";
import { DAY_MS, HOUR_MS } from "./buckets";

/** The variable that sets the configurable idempotency windows (wrangler.toml `[vars]`). */
export interface RetentionVars {
  RETENTION?: string;
}

/** How long each configurable data class outside path statistics is kept (ms). */
export interface DataRetention {
  /** Idempotency records of the limiter's `check` and `refund`: a retry within it replays. */
  limiterIdempotency: number;
  /** Idempotency keys of the ledger's keyed writes: a retry within it answers its first result. */
  ledgerIdempotency: number;
}

export const DEFAULT_DATA_RETENTION: DataRetention = { limiterIdempotency: 24 * HOUR_MS, ledgerIdempotency: 35 * DAY_MS };

/**
 * Bounds of an idempotency window. At least an hour: callers retry after timeouts, queues and
 * deploys, often minutes later, and a window shorter than the slowest retry turns that retry
 * into a second charge. At most 400 days: a record is a row per call, so storage grows with
 * traffic times window, and past a year a repeated key is a new request by any sensible
 * reading.
 */
export const IDEMPOTENCY_WINDOW_BOUNDS = { min: HOUR_MS, max: 400 * DAY_MS } as const;

/** A shadow rule's would-have-denied count lives this long after its last denial. */
export const SHADOW_COUNT_TTL_MS = 24 * HOUR_MS;
/** The limiter's per-minute check counts, read by `denial_rate` alert rules (windows up to a day). */
export const CHECK_COUNT_RETENTION_MS = 25 * HOUR_MS;
/** Resolved alerts with nothing left to deliver: kept this long, and at most this many. */
export const ALERT_RETENTION_MS = 30 * DAY_MS;
export const KEEP_ALERTS = 10_000;
/** The protection flag log: kept this long, and at most this many. */
export const FLAG_RETENTION_MS = 30 * DAY_MS;
export const MAX_FLAGS = 10_000;
/** Adaptive limits' level-change history: kept this long, and at most this many. */
export const CHANGES_TTL_MS = 90 * DAY_MS;
export const KEEP_CHANGES = 10_000;

const cache = new Map<string, DataRetention>();

/**
 * Reads and checks `RETENTION` once per isolate, e.g. `{ "limiterIdempotency": "48h",
 * "ledgerIdempotency": "90d" }` (durations as in `PATH_RETENTION`; a missing class keeps its
 * default). A malformed value is an operator error: `INTERNAL` to callers, the reason in the log.
 */
export function loadDataRetention(vars: RetentionVars): DataRetention {
  const raw = vars.RETENTION;
  if (raw === undefined || raw.trim() === "") return DEFAULT_DATA_RETENTION;
  const cached = cache.get(raw);
  if (cached) return cached;
  try {
    const retention = parseRetention(raw);
    cache.set(raw, retention);
    return retention;
  } catch (error) {
    console.error(`RETENTION is invalid: ${(error as Error).message}`);
    throw new ServiceError("INTERNAL", "retention is misconfigured");
  }
}

/** RETENTION's own wording: its log line already names the variable, so entries go by name. */
const DATA_CLASS_MESSAGES: DurationMessages = {
  unknownName: (name, known) => `unknown data class "${name}" (known: ${known.join(", ")})`,
  notAString: (name) => `${name} must be a duration string like "48h" or "90d"`,
  outOfBounds: (name, { min, max = min }) => `${name} must be between ${min / HOUR_MS}h and ${max / DAY_MS}d`,
};

function parseRetention(raw: string): DataRetention {
  return parseNamedDurations(raw, {
    variable: "RETENTION",
    defaults: DEFAULT_DATA_RETENTION,
    bounds: () => IDEMPOTENCY_WINDOW_BOUNDS,
    messages: DATA_CLASS_MESSAGES,
  });
}
