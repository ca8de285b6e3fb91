/** Path-statistics contract: entrypoint `PathStats`, objects `PathCollectorDO`, `AggregatorDO`. */

export type StatsRange = "1h" | "24h" | "7d" | "30d" | { from: number; to: number };

export interface RecordInput {
  ip: string;
  method: string;
  path: string;
  status?: number;
  latencyMs?: number;
  country?: string;
  userAgent?: string;
  at?: number;
}

/** The `PathStats` entrypoint. Its methods arrive with the path-statistics issue. */
export interface PathStatsApi {
  record(input: RecordInput): Promise<void>;
  recordMany(input: { hits: RecordInput[] }): Promise<{ accepted: number }>;
}
