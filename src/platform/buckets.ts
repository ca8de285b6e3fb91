/** Time buckets, named ranges, and how a range is split over minute, hour and day rollups. Pure. */

export const MINUTE_MS = 60_000;
export const HOUR_MS = 60 * MINUTE_MS;
export const DAY_MS = 24 * HOUR_MS;

export type Granularity = "minute" | "hour" | "day";
export const GRANULARITY_MS: Record<Granularity, number> = { minute: MINUTE_MS, hour: HOUR_MS, day: DAY_MS };

export type NamedRange = "1h" | "24h" | "7d" | "30d";
export const NAMED_RANGES: Record<NamedRange, number> = { "1h": HOUR_MS, "24h": DAY_MS, "7d": 7 * DAY_MS, "30d": 30 * DAY_MS };
/** The longest custom range a query may ask for. */
export const MAX_RANGE_MS = 400 * DAY_MS;

export const floorTo = (ms: number, size: number) => ms - (((ms % size) + size) % size);
export const ceilTo = (ms: number, size: number) => floorTo(ms + size - 1, size);

export interface TimeRange {
  from: number;
  to: number;
}

/**
 * A named range ends at the end of the current minute; a custom one is widened to whole
 * minutes. `from` is inclusive, `to` exclusive.
 */
export function resolveRange(range: NamedRange | TimeRange, nowMs: number): TimeRange {
  if (typeof range === "string") {
    const to = floorTo(nowMs, MINUTE_MS) + MINUTE_MS;
    return { from: to - NAMED_RANGES[range], to };
  }
  return { from: floorTo(range.from, MINUTE_MS), to: ceilTo(range.to, MINUTE_MS) };
}

/** What the aggregator holds: rollups below each watermark are complete; older data is deleted. */
export interface Coverage {
  /** Hours before this are compacted into hour rollups. */
  hourWatermark: number;
  /** Days before this are compacted into day rollups. */
  dayWatermark: number;
  /** Oldest minute still kept. */
  minuteFloor: number;
  /** Oldest hour still kept. */
  hourFloor: number;
}

export interface Plan {
  /** The range actually answered: widened to whole hours/days where finer data has expired. */
  range: TimeRange;
  segments: Record<Granularity, TimeRange[]>;
  /** How many buckets the plan reads (its cost does not depend on the number of clients). */
  buckets: number;
}

/**
 * Covers `range` with as few buckets as possible: whole days from day rollups, whole hours
 * from hour rollups, the rest from minute rollups.
 */
export function planRange(range: TimeRange, coverage: Coverage): Plan {
  let { from, to } = range;
  if (from < coverage.minuteFloor) from = floorTo(from, HOUR_MS);
  if (from < coverage.hourFloor) from = floorTo(from, DAY_MS);
  if (to <= coverage.minuteFloor) to = ceilTo(to, HOUR_MS);
  if (to <= coverage.hourFloor) to = ceilTo(to, DAY_MS);
  const segments: Record<Granularity, TimeRange[]> = { minute: [], hour: [], day: [] };
  let buckets = 0;
  const push = (granularity: Granularity, start: number, size: number) => {
    const list = segments[granularity];
    const last = list.at(-1);
    if (last !== undefined && last.to === start) last.to = start + size;
    else list.push({ from: start, to: start + size });
    buckets += 1;
  };
  let cursor = from;
  while (cursor < to) {
    if (cursor % DAY_MS === 0 && cursor + DAY_MS <= to && cursor + DAY_MS <= coverage.dayWatermark) {
      push("day", cursor, DAY_MS);
      cursor += DAY_MS;
    } else if (cursor % HOUR_MS === 0 && cursor + HOUR_MS <= to && cursor + HOUR_MS <= coverage.hourWatermark) {
      push("hour", cursor, HOUR_MS);
      cursor += HOUR_MS;
    } else {
      push("minute", cursor, MINUTE_MS);
      cursor += MINUTE_MS;
    }
  }
  return { range: { from, to }, segments, buckets };
}
