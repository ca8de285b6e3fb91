import type { ClientPathStat, ClientStats, StatusClasses } from "../../rpc/path-stats";
import { DAY_MS, floorTo } from "../platform/buckets";
import { isError, type NormalizedHit } from "./partial";
import { classOf, emptyClasses } from "./report";
import { all } from "../platform/sql";

type ClientPathRow = {
  method: string;
  path: string;
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
 * The per-client path counters of one collector shard (`client_paths`, one row per client,
 * method, path and UTC day): what `clientStats` answers from. Synchronous SQL only, so the
 * collector can count inside its ingest transaction.
 */
export class ClientPaths {
  readonly #sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.#sql = sql;
  }

  /**
   * Folds a call's hits into one delta per (client, method, path, day) and upserts each once,
   * so a batch with repeats writes one row per counter, not one per hit.
   */
  count(hits: readonly NormalizedHit[]): void {
    type Delta = {
      hit: NormalizedHit;
      requests: number;
      errors: number;
      classes: StatusClasses;
      first: number;
      last: number;
      country?: string;
      countryAt: number;
      userAgent?: string;
      userAgentAt: number;
    };
    const deltas = new Map<string, Delta>();
    for (const hit of hits) {
      const day = floorTo(hit.at, DAY_MS);
      const key = JSON.stringify([hit.client, hit.method, hit.path, day]);
      let delta = deltas.get(key);
      if (delta === undefined) {
        delta = { hit, requests: 0, errors: 0, classes: emptyClasses(), first: hit.at, last: hit.at, countryAt: -1, userAgentAt: -1 };
        deltas.set(key, delta);
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
    for (const { hit, requests, errors, classes, first, last, country, userAgent } of deltas.values()) {
      // sql.exec, not run(): the hot path has no use for a changed-row count.
      this.#sql.exec(
        `INSERT INTO client_paths (client, method, path, day_ms, requests, errors, s1xx, s2xx, s3xx, s4xx, s5xx, s_none,
           first_seen_ms, last_seen_ms, country, user_agent)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (client, method, path, day_ms) DO UPDATE SET
           requests = requests + excluded.requests, errors = errors + excluded.errors,
           s1xx = s1xx + excluded.s1xx, s2xx = s2xx + excluded.s2xx, s3xx = s3xx + excluded.s3xx,
           s4xx = s4xx + excluded.s4xx, s5xx = s5xx + excluded.s5xx, s_none = s_none + excluded.s_none,
           first_seen_ms = MIN(first_seen_ms, excluded.first_seen_ms),
           last_seen_ms = MAX(last_seen_ms, excluded.last_seen_ms),
           country = CASE WHEN excluded.last_seen_ms >= last_seen_ms THEN COALESCE(excluded.country, country) ELSE country END,
           user_agent = CASE WHEN excluded.last_seen_ms >= last_seen_ms THEN COALESCE(excluded.user_agent, user_agent) ELSE user_agent END`,
        hit.client,
        hit.method,
        hit.path,
        floorTo(hit.at, DAY_MS),
        requests,
        errors,
        classes["1xx"],
        classes["2xx"],
        classes["3xx"],
        classes["4xx"],
        classes["5xx"],
        classes.none,
        first,
        last,
        country ?? null,
        userAgent ?? null,
      );
    }
  }

  /** One client's paths over the whole UTC days that overlap `range`. */
  stats(client: string, range: { from: number; to: number }): ClientStats {
    const rows = all<ClientPathRow>(
      this.#sql,
      `SELECT method, path, SUM(requests) AS requests, SUM(errors) AS errors, SUM(s1xx) AS s1xx, SUM(s2xx) AS s2xx,
         SUM(s3xx) AS s3xx, SUM(s4xx) AS s4xx, SUM(s5xx) AS s5xx, SUM(s_none) AS s_none,
         MIN(first_seen_ms) AS first_seen_ms, MAX(last_seen_ms) AS last_seen_ms,
         (SELECT country FROM client_paths AS c WHERE c.client = p.client AND c.method = p.method AND c.path = p.path
            ORDER BY last_seen_ms DESC LIMIT 1) AS country,
         (SELECT user_agent FROM client_paths AS c WHERE c.client = p.client AND c.method = p.method AND c.path = p.path
            ORDER BY last_seen_ms DESC LIMIT 1) AS user_agent
       FROM client_paths AS p
       WHERE client = ? AND day_ms >= ? AND day_ms < ?
       GROUP BY method, path
       ORDER BY requests DESC, method, path`,
      client,
      floorTo(range.from, DAY_MS),
      range.to,
    );
    const paths: ClientPathStat[] = rows.map((row) => {
      const stat: ClientPathStat = {
        method: row.method,
        path: row.path,
        requests: row.requests,
        errors: row.errors,
        firstSeen: row.first_seen_ms,
        lastSeen: row.last_seen_ms,
        statusClasses: { "1xx": row.s1xx, "2xx": row.s2xx, "3xx": row.s3xx, "4xx": row.s4xx, "5xx": row.s5xx, none: row.s_none },
      };
      if (row.country !== null) stat.country = row.country;
      if (row.user_agent !== null) stat.userAgent = row.user_agent;
      return stat;
    });
    return {
      ip: client,
      totalRequests: paths.reduce((sum, path) => sum + path.requests, 0),
      uniquePaths: paths.length,
      firstSeen: paths.length === 0 ? null : Math.min(...paths.map((path) => path.firstSeen!)),
      lastSeen: paths.length === 0 ? null : Math.max(...paths.map((path) => path.lastSeen!)),
      paths,
    };
  }
}
