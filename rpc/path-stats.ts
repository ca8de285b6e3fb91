/** Path-statistics contract: entrypoint `PathStats`, objects `PathCollectorDO`, `AggregatorDO`. */

/** A named range ends with the current minute; `{ from, to }` is widened to whole minutes. */
export type StatsRange = "1h" | "24h" | "7d" | "30d" | { from: number; to: number };

export type HttpMethod = "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" | "TRACE" | "CONNECT";

export interface RecordInput {
  /** IPv4 or IPv6; stored raw, truncated (/24, /48) or as a keyed hash, as configured. */
  ip: string;
  /** Case-insensitive; one of {@link HttpMethod}. */
  method: string;
  /** Starts with "/"; the query string is dropped and ids become `:id`. At most 2,048 characters. */
  path: string;
  /** 100..599. Statuses ≥ 500 count as errors. */
  status?: number;
  /** 0..3,600,000. */
  latencyMs?: number;
  /** Two-letter country code (e.g. `request.cf.country`). */
  country?: string;
  /** Truncated to 256 characters. */
  userAgent?: string;
  /** When the request happened (epoch ms); default now. At most 1 h in the past, 1 min in the future. */
  at?: number;
}

export interface RecordManyInput {
  /** At most 1,000 hits. The whole batch is validated before anything is recorded. */
  hits: RecordInput[];
}

export interface LatencySummary {
  /** Within 1% relative error of the exact value at that rank; `null` with no latencies. */
  p50: number | null;
  p90: number | null;
  p99: number | null;
  /** Exact. */
  min: number | null;
  max: number | null;
  /** How many hits carried a latency. */
  count: number;
}

/** Requests by status class; `none` counts hits recorded without a status. */
export interface StatusClasses {
  "1xx": number;
  "2xx": number;
  "3xx": number;
  "4xx": number;
  "5xx": number;
  none: number;
}

export interface PathStat {
  method: string;
  /** The template, e.g. `/users/:id`, or `(other)` past the template cap. */
  path: string;
  /** Exact. */
  requests: number;
  /** Exact: responses with status ≥ 500. */
  errors: number;
  /** Distinct clients: exact up to 1,024, then within 2%. */
  clients?: number;
  firstSeen?: number;
  lastSeen?: number;
  latency?: LatencySummary;
  statusClasses?: StatusClasses;
  /** Status code → count (`"0"`: no status given). Per-path detail only. */
  statuses?: Record<string, number>;
}

/** The range a result actually covers, after rounding to the buckets it was answered from. */
export interface AnsweredRange {
  from: number;
  to: number;
  /** How many minute, hour and day rollups were read. */
  buckets: number;
}

export interface GlobalStats {
  range: AnsweredRange;
  totalRequests: number;
  errors: number;
  /** errors / totalRequests; 0 with no requests. */
  errorRate: number;
  uniqueClients: number;
  /** Whether `uniqueClients` is exact (few enough clients). */
  uniqueClientsExact: boolean;
  uniquePaths: number;
  statusClasses: StatusClasses;
  latency: LatencySummary;
  firstSeen: number | null;
  lastSeen: number | null;
  generatedAt: number;
}

/** One step of a time series: the hits whose minute falls in `[at, at + stepMs)`. */
export interface TimeSeriesPoint {
  at: number;
  /** Exact. */
  requests: number;
  /** Exact: responses with status ≥ 500. */
  errors: number;
  /** Exact: responses with status 429 (what `Gateway.authorize` records for a rate-limit denial). */
  rateLimited: number;
}

export interface TimeSeries {
  /**
   * The width of every point: a minute, an hour or a day, the finest giving at most 400
   * points ("1h" per minute, "24h" and "7d" per hour, "30d" per day), but never finer than
   * the coarsest rollup the range was answered from (a stored day is not split into hours).
   */
  stepMs: number;
  /** One point per step from `range.from` to `range.to`, oldest first; empty steps are zeros. */
  points: TimeSeriesPoint[];
  range: AnsweredRange;
  generatedAt: number;
}

export type PathSort = "requests" | "clients" | "errors" | "p99";

export interface TopPathsInput {
  range: StatsRange;
  /** 1..1,000, default 20. */
  limit?: number;
  sortBy?: PathSort;
}

export interface TopPaths {
  paths: PathStat[];
  range: AnsweredRange;
  generatedAt: number;
  /** True when the order rests on a sketch (clients, p99) rather than exact counts. */
  approximate: boolean;
}

export interface TopClient {
  /** The stored client id (raw, truncated or hashed IP, as configured). */
  client: string;
  /** A guaranteed lower bound of the client's requests. */
  requests: number;
  /** A guaranteed upper bound: `requests + errorBound`. */
  maxRequests: number;
}

export interface TopClients {
  clients: TopClient[];
  /** Every client with more than this many requests is listed; counts are at most this low. */
  errorBound: number;
  totalRequests: number;
  /** False when `errorBound` is 0: every count is exact. */
  approximate: boolean;
  range: AnsweredRange;
  generatedAt: number;
}

export interface ClientPathStat extends PathStat {
  country?: string;
  userAgent?: string;
}

export interface ClientStats {
  /** The stored client id `ip` maps to. */
  ip: string;
  totalRequests: number;
  uniquePaths: number;
  firstSeen: number | null;
  lastSeen: number | null;
  paths: ClientPathStat[];
}

export interface PathDetail {
  path: string;
  /** One entry per method seen, with exact status counts. */
  methods: PathStat[];
  range: AnsweredRange;
  generatedAt: number;
}

export type ExportFormat = "json" | "csv";

/** One exported row: one path in one bucket. */
export interface ExportRow {
  bucketStart: number;
  granularity: "minute" | "hour" | "day";
  method: string;
  path: string;
  requests: number;
  errors: number;
  clients: number;
  p50: number | null;
  p90: number | null;
  p99: number | null;
}

/** The `PathStats` entrypoint (also `AdminApi.pathStats()` over capnweb). */
export interface PathStatsApi {
  /** Records one hit. A sibling Worker calls it inside `ctx.waitUntil` so the response does not wait. */
  record(input: RecordInput): Promise<void>;
  recordMany(input: RecordManyInput): Promise<{ accepted: number }>;
  clientStats(input: { ip: string; range?: StatsRange }): Promise<ClientStats>;
  globalStats(input: { range: StatsRange }): Promise<GlobalStats>;
  /** Requests, errors and 429s over time, for charts. */
  timeSeries(input: { range: StatsRange }): Promise<TimeSeries>;
  topPaths(input: TopPathsInput): Promise<TopPaths>;
  topClients(input: { range: StatsRange; limit?: number }): Promise<TopClients>;
  pathDetail(input: { range: StatsRange; path: string; method?: string }): Promise<PathDetail>;
  /** Streams every (bucket, path) row of the range, page by page, as JSON or CSV (RFC 4180). */
  export(input: { range: StatsRange; format: ExportFormat }): Promise<ReadableStream<Uint8Array>>;
}
