import type { LatencySummary, PathStat, StatusClasses } from "../../rpc/path-stats";
import type { DDSketch } from "../sketches/ddsketch";
import type { Aggregate } from "./partial";

/** Quantiles are rounded to 0.01 ms: far below their 1% error, and readable. */
const round = (value: number | null) => (value === null ? null : Math.round(value * 100) / 100);

export function latencySummary(sketch: DDSketch): LatencySummary {
  return {
    p50: round(sketch.quantile(0.5)),
    p90: round(sketch.quantile(0.9)),
    p99: round(sketch.quantile(0.99)),
    min: sketch.min,
    max: sketch.max,
    count: sketch.count,
  };
}

export function emptyClasses(): StatusClasses {
  return { "1xx": 0, "2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0, none: 0 };
}

export function classOf(status: number): keyof StatusClasses {
  return status === 0 ? "none" : (`${Math.floor(status / 100)}xx` as keyof StatusClasses);
}

export function statusClasses(statuses: ReadonlyMap<number, number>): StatusClasses {
  const classes = emptyClasses();
  for (const [status, count] of statuses) classes[classOf(status)] += count;
  return classes;
}

/** The public view of one path's aggregate. */
export function pathStat(method: string, path: string, aggregate: Aggregate, withStatuses = false): PathStat {
  const stat: PathStat = {
    method,
    path,
    requests: aggregate.requests,
    errors: aggregate.errors,
    clients: aggregate.clients.estimate(),
    firstSeen: aggregate.firstSeen,
    lastSeen: aggregate.lastSeen,
    latency: latencySummary(aggregate.latency),
    statusClasses: statusClasses(aggregate.statuses),
  };
  if (withStatuses) stat.statuses = Object.fromEntries([...aggregate.statuses].sort(([a], [b]) => a - b).map(([s, c]) => [String(s), c]));
  return stat;
}
