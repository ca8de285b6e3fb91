import { ServiceError } from "../platform/errors";
import { compileRoutes, type RoutePattern } from "./normalize";
import { DEFAULT_SHARDS, MAX_SHARDS } from "./shard";
import { IP_MODES, type IpMode } from "./privacy";
import { DAY_MS } from "../platform/buckets";
import { parseNamedDurations } from "../platform/durations";
import { DEFAULT_ROLLUP_RETENTION, MIN_ROLLUP_RETENTION } from "../platform/rollup-compaction";

/** Re-exported: the duration format every retention-like variable shares. */
export { parseDuration } from "../platform/durations";

/** The variables path statistics read (wrangler.toml `[vars]`, plus the hash-key secret). */
export interface PathStatsVars {
  PATH_SHARDS?: string;
  PATH_IP_MODE?: string;
  PATH_IP_HASH_KEY?: string;
  PATH_ROUTES?: string;
  PATH_MAX_TEMPLATES?: string;
  PATH_RETENTION?: string;
}

/** How long each granularity is kept (ms). */
export interface Retention {
  minutes: number;
  hours: number;
  days: number;
  /** Per-client path counters in the collectors. */
  clients: number;
}

export interface PathConfig {
  shards: number;
  ipMode: IpMode;
  hashKey: string | undefined;
  routes: RoutePattern[];
  maxTemplates: number;
  retention: Retention;
}

export const DEFAULT_MAX_TEMPLATES = 1_000;
export const DEFAULT_RETENTION: Retention = { ...DEFAULT_ROLLUP_RETENTION, clients: 30 * DAY_MS };
/** Floors of each retention: the rollups' (see MIN_ROLLUP_RETENTION), and a day of client counters. */
export const MIN_RETENTION: Retention = { ...MIN_ROLLUP_RETENTION, clients: DAY_MS };

const cache = new Map<string, PathConfig>();

/**
 * Reads and checks the path-statistics configuration once per isolate. A malformed value is
 * an operator error: `INTERNAL` to callers, the reason in the log.
 */
export function loadPathConfig(vars: PathStatsVars): PathConfig {
  const key = JSON.stringify([
    vars.PATH_SHARDS,
    vars.PATH_IP_MODE,
    vars.PATH_IP_HASH_KEY,
    vars.PATH_ROUTES,
    vars.PATH_MAX_TEMPLATES,
    vars.PATH_RETENTION,
  ]);
  const cached = cache.get(key);
  if (cached) return cached;
  try {
    const config: PathConfig = {
      shards: intVar("PATH_SHARDS", vars.PATH_SHARDS, DEFAULT_SHARDS, 1, MAX_SHARDS),
      ipMode: ipMode(vars.PATH_IP_MODE),
      hashKey: vars.PATH_IP_HASH_KEY,
      routes: routes(vars.PATH_ROUTES),
      maxTemplates: intVar("PATH_MAX_TEMPLATES", vars.PATH_MAX_TEMPLATES, DEFAULT_MAX_TEMPLATES, 1, 100_000),
      retention: retention(vars.PATH_RETENTION),
    };
    cache.set(key, config);
    return config;
  } catch (error) {
    console.error(`path statistics misconfigured: ${(error as Error).message}`);
    throw new ServiceError("INTERNAL", "path statistics are misconfigured");
  }
}

function intVar(name: string, raw: string | undefined, fallback: number, min: number, max: number): number {
  if (raw === undefined || raw.trim() === "") return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < min || value > max) throw new Error(`${name} must be an integer in ${min}..${max}`);
  return value;
}

function ipMode(raw: string | undefined): IpMode {
  const mode = (raw ?? "truncate").trim();
  if (!(IP_MODES as readonly string[]).includes(mode)) throw new Error(`PATH_IP_MODE must be one of ${IP_MODES.join(", ")}`);
  return mode as IpMode;
}

function routes(raw: string | undefined): RoutePattern[] {
  if (raw === undefined || raw.trim() === "") return [];
  const parsed: unknown = JSON.parse(raw);
  if (!Array.isArray(parsed) || parsed.length > 500 || !parsed.every((p) => typeof p === "string" && p.length <= 512)) {
    throw new Error("PATH_ROUTES must be a JSON array of at most 500 route patterns");
  }
  return compileRoutes(parsed as string[]);
}

function retention(raw: string | undefined): Retention {
  return parseNamedDurations(raw, {
    variable: "PATH_RETENTION",
    defaults: DEFAULT_RETENTION,
    bounds: (name) => ({ min: MIN_RETENTION[name] }),
  });
}
