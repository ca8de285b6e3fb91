import type { ClientPathStat, ClientStats, StatusClasses } from "../../rpc/path-stats";
import { DAY_MS, floorTo } from "../platform/buckets";
import { isError, type NormalizedHit, pathKey } from "./partial";
import { classOf, emptyClasses } from "./report";
import { all } from "../platform/sql";
import { type BaselineWrite, writeLegacyBaseline } from "./collector-baselines";

/** One (client, method, path, UTC day) counter, or the change to add to it. */
export interface ClientPathCounter {
  client: string;
  method: string;
  path: string;
  dayMs: number;
  requests: number;
  errors: number;
  classes: StatusClasses;
  first: number;
  last: number;
  /** The country (user agent) of the latest hit that carried one, and that hit's time. */
  country?: string;
  countryAt: number;
  userAgent?: string;
  userAgentAt: number;
}

type ClientPathRow = {
  method: string;
  path: string;
  day_ms: number;
  requests: number;
  errors: number;
  s1xx: number;
  s2xx: number;
  s3xx: number;
  s4xx: number;
  s5xx: number;
  s_none: number;
  first_seen_ms: number;
  last_seen_ms: number;
  country: string | null;
  user_agent: string | null;
};

/**
 * Per-client path counters not yet written: hits fold into one delta per (client, method,
 * path, day), so an interval's repeats cost one upsert, not one per hit.
 */
export class ClientDeltas {
  readonly #deltas = new Map<string, ClientPathCounter>();

  get size(): number {
    return this.#deltas.size;
  }

  add(hit: NormalizedHit): void {
    const dayMs = floorTo(hit.at, DAY_MS);
    const key = JSON.stringify([hit.client, hit.method, hit.path, dayMs]);
    let delta = this.#deltas.get(key);
    if (delta === undefined) {
      delta = {
        client: hit.client,
        method: hit.method,
        path: hit.path,
        dayMs,
        requests: 0,
        errors: 0,
        classes: emptyClasses(),
        first: hit.at,
        last: hit.at,
        countryAt: -1,
        userAgentAt: -1,
      };
      this.#deltas.set(key, delta);
    }
    delta.requests += 1;
    if (isError(hit.status)) delta.errors += 1;
    delta.classes[classOf(hit.status)] += 1;
    if (hit.at < delta.first) delta.first = hit.at;
    if (hit.at > delta.last) delta.last = hit.at;
    // Country and user agent: the latest hit that carried each describes the client now.
    if (hit.country !== undefined && hit.at >= delta.countryAt) {
      delta.country = hit.country;
      delta.countryAt = hit.at;
    }
    if (hit.userAgent !== undefined && hit.at >= delta.userAgentAt) {
      delta.userAgent = hit.userAgent;
      delta.userAgentAt = hit.at;
    }
  }

  values(): IterableIterator<ClientPathCounter> {
    return this.#deltas.values();
  }

  /** The (method, path) keys the deltas count, for the template cap. */
  templateKeys(): Set<string> {
    return new Set([...this.#deltas.values()].map((delta) => pathKey(delta.method, delta.path)));
  }
}

/**
 * The per-client path counters of one collector shard (`client_paths`, one row per client,
 * method, path and UTC day): what `clientStats` answers from, together with the deltas the
 * collector still holds in memory. Synchronous SQL only, so the collector can write inside
 * its flush transaction.
 */
export class ClientPaths {
  readonly #sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.#sql = sql;
  }

  /**
   * Adds each delta to its counter: one upsert per delta. Each changed baseline rides on the
   * upsert of its client's latest counter, so it costs no row of its own.
   */
  write(deltas: Iterable<ClientPathCounter>, baselines: ReadonlyMap<string, BaselineWrite>): void {
    const carriers = new Map<string, ClientPathCounter>();
    const counters = [...deltas];
    for (const delta of counters) {
      const carrier = carriers.get(delta.client);
      if (baselines.has(delta.client) && (carrier === undefined || delta.last > carrier.last)) carriers.set(delta.client, delta);
    }
    for (const delta of counters) {
      const baseline = carriers.get(delta.client) === delta ? baselines.get(delta.client)! : undefined;
      // sql.exec, not run(): the flush has no use for a changed-row count.
      this.#sql.exec(
        `INSERT INTO client_paths (client, method, path, day_ms, requests, errors, s1xx, s2xx, s3xx, s4xx, s5xx, s_none,
           first_seen_ms, last_seen_ms, country, user_agent, baseline, baseline_seq)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (client, method, path, day_ms) DO UPDATE SET
           requests = requests + excluded.requests, errors = errors + excluded.errors,
           s1xx = s1xx + excluded.s1xx, s2xx = s2xx + excluded.s2xx, s3xx = s3xx + excluded.s3xx,
           s4xx = s4xx + excluded.s4xx, s5xx = s5xx + excluded.s5xx, s_none = s_none + excluded.s_none,
           first_seen_ms = MIN(first_seen_ms, excluded.first_seen_ms),
           last_seen_ms = MAX(last_seen_ms, excluded.last_seen_ms),
           country = CASE WHEN excluded.last_seen_ms >= last_seen_ms THEN COALESCE(excluded.country, country) ELSE country END,
           user_agent = CASE WHEN excluded.last_seen_ms >= last_seen_ms THEN COALESCE(excluded.user_agent, user_agent) ELSE user_agent END,
           baseline = COALESCE(excluded.baseline, baseline), baseline_seq = COALESCE(excluded.baseline_seq, baseline_seq)`,
        delta.client,
        delta.method,
        delta.path,
        delta.dayMs,
        delta.requests,
        delta.errors,
        delta.classes["1xx"],
        delta.classes["2xx"],
        delta.classes["3xx"],
        delta.classes["4xx"],
        delta.classes["5xx"],
        delta.classes.none,
        delta.first,
        delta.last,
        delta.country ?? null,
        delta.userAgent ?? null,
        baseline?.baseline ?? null,
        baseline?.seq ?? null,
      );
    }
    // A baseline is changed only by hits, which leave counters: this is for safety, not expected.
    for (const [client, baseline] of baselines) if (!carriers.has(client)) writeLegacyBaseline(this.#sql, client, baseline.baseline);
  }

  /** The (method, path) pairs any counter uses: the templates holding a place under the cap. */
  templateKeys(): Set<string> {
    return new Set(
      all<{ method: string; path: string }>(this.#sql, "SELECT DISTINCT method, path FROM client_paths").map((row) =>
        pathKey(row.method, row.path),
      ),
    );
  }

  /**
   * One client's paths over the whole UTC days that overlap `range`: its stored counters with
   * `pending` (the deltas not yet written) added, exactly as the flush will add them.
   */
  stats(client: string, range: { from: number; to: number }, pending: Iterable<ClientPathCounter>): ClientStats {
    const from = floorTo(range.from, DAY_MS);
    const days = new Map<string, ClientPathCounter>();
    const rows = all<ClientPathRow>(
      this.#sql,
      `SELECT method, path, day_ms, requests, errors, s1xx, s2xx, s3xx, s4xx, s5xx, s_none, first_seen_ms, last_seen_ms,
         country, user_agent
       FROM client_paths WHERE client = ? AND day_ms >= ? AND day_ms < ?`,
      client,
      from,
      range.to,
    );
    for (const row of rows) days.set(JSON.stringify([row.method, row.path, row.day_ms]), fromRow(client, row));
    for (const delta of pending) {
      if (delta.client !== client || delta.dayMs < from || delta.dayMs >= range.to) continue;
      const key = JSON.stringify([delta.method, delta.path, delta.dayMs]);
      const stored = days.get(key);
      days.set(key, stored === undefined ? delta : addCounters(stored, delta));
    }
    return summarize(client, days.values());
  }
}

/** `stored` with `delta` added, as the flush's upsert adds it. */
function addCounters(stored: ClientPathCounter, delta: ClientPathCounter): ClientPathCounter {
  const classes = { ...stored.classes };
  for (const name of Object.keys(classes) as (keyof StatusClasses)[]) classes[name] += delta.classes[name];
  const newer = delta.last >= stored.last;
  const sum: ClientPathCounter = {
    ...stored,
    requests: stored.requests + delta.requests,
    errors: stored.errors + delta.errors,
    classes,
    first: Math.min(stored.first, delta.first),
    last: Math.max(stored.last, delta.last),
  };
  if (newer && delta.country !== undefined) sum.country = delta.country;
  if (newer && delta.userAgent !== undefined) sum.userAgent = delta.userAgent;
  return sum;
}

/** One path per (method, path), summed over its days; country and agent from its latest day. */
function summarize(client: string, counters: Iterable<ClientPathCounter>): ClientStats {
  const byPath = new Map<string, { stat: ClientPathStat; latest: ClientPathCounter }>();
  for (const counter of counters) {
    const key = pathKey(counter.method, counter.path);
    const seen = byPath.get(key);
    if (seen === undefined) {
      byPath.set(key, {
        stat: {
          method: counter.method,
          path: counter.path,
          requests: counter.requests,
          errors: counter.errors,
          firstSeen: counter.first,
          lastSeen: counter.last,
          statusClasses: { ...counter.classes },
        },
        latest: counter,
      });
      continue;
    }
    const { stat } = seen;
    stat.requests += counter.requests;
    stat.errors += counter.errors;
    stat.firstSeen = Math.min(stat.firstSeen!, counter.first);
    stat.lastSeen = Math.max(stat.lastSeen!, counter.last);
    for (const name of Object.keys(stat.statusClasses!) as (keyof StatusClasses)[]) stat.statusClasses![name] += counter.classes[name];
    if (counter.last > seen.latest.last) seen.latest = counter;
  }
  const paths = [...byPath.values()].map(({ stat, latest }) => {
    if (latest.country !== undefined) stat.country = latest.country;
    if (latest.userAgent !== undefined) stat.userAgent = latest.userAgent;
    return stat;
  });
  paths.sort((a, b) => b.requests - a.requests || compare(a.method, b.method) || compare(a.path, b.path));
  return {
    ip: client,
    totalRequests: paths.reduce((sum, path) => sum + path.requests, 0),
    uniquePaths: paths.length,
    firstSeen: paths.length === 0 ? null : Math.min(...paths.map((path) => path.firstSeen!)),
    lastSeen: paths.length === 0 ? null : Math.max(...paths.map((path) => path.lastSeen!)),
    paths,
  };
}

const compare = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function fromRow(client: string, row: ClientPathRow): ClientPathCounter {
  const counter: ClientPathCounter = {
    client,
    method: row.method,
    path: row.path,
    dayMs: row.day_ms,
    requests: row.requests,
    errors: row.errors,
    classes: { "1xx": row.s1xx, "2xx": row.s2xx, "3xx": row.s3xx, "4xx": row.s4xx, "5xx": row.s5xx, none: row.s_none },
    first: row.first_seen_ms,
    last: row.last_seen_ms,
    countryAt: row.last_seen_ms,
    userAgentAt: row.last_seen_ms,
  };
  if (row.country !== null) counter.country = row.country;
  if (row.user_agent !== null) counter.userAgent = row.user_agent;
  return counter;
}
