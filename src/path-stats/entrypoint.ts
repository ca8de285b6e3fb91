import { WorkerEntrypoint } from "cloudflare:workers";
import type {
  ClientStats,
  ExportFormat,
  GlobalStats,
  PathDetail,
  PathStatsApi,
  RecordInput,
  RecordManyInput,
  StatsRange,
  TimeSeries,
  TopClients,
  TopPaths,
  TopPathsInput,
} from "../../rpc/path-stats";
import type { Env } from "../platform/env";
import { PathStatsService } from "./service";

/**
 * `PathStats`: records hits and answers path statistics.
 * `services = [{ binding = "PATHS", service = "tollgate", entrypoint = "PathStats" }]`;
 * a gateway records without waiting: `ctx.waitUntil(env.PATHS.record({ ip, method, path, status, latencyMs }))`.
 */
export class PathStats extends WorkerEntrypoint<Env> implements PathStatsApi {
  readonly #service = new PathStatsService(this.env);

  record(input: RecordInput): Promise<void> {
    return this.#service.record(input);
  }

  recordMany(input: RecordManyInput): Promise<{ accepted: number }> {
    return this.#service.recordMany(input);
  }

  clientStats(input: { ip: string; range?: StatsRange }): Promise<ClientStats> {
    return this.#service.clientStats(input);
  }

  globalStats(input: { range: StatsRange }): Promise<GlobalStats> {
    return this.#service.globalStats(input);
  }

  timeSeries(input: { range: StatsRange }): Promise<TimeSeries> {
    return this.#service.timeSeries(input);
  }

  topPaths(input: TopPathsInput): Promise<TopPaths> {
    return this.#service.topPaths(input);
  }

  topClients(input: { range: StatsRange; limit?: number }): Promise<TopClients> {
    return this.#service.topClients(input);
  }

  pathDetail(input: { range: StatsRange; path: string; method?: string }): Promise<PathDetail> {
    return this.#service.pathDetail(input);
  }

  export(input: { range: StatsRange; format: ExportFormat }): Promise<ReadableStream<Uint8Array>> {
    return this.#service.export(input);
  }
}
