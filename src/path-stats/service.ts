import { RpcTarget } from "cloudflare:workers";
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
import { loadPathConfig } from "./config";
import type { Env } from "../platform/env";
import { csvHeader, csvRow, jsonRow } from "./export-format";
import { shardOf } from "./shard";
import { parseInput } from "../platform/schemas";
import { clientStatsSchema, exportSchema, hitSchema, recordManySchema } from "./schemas";
import { resolveRange } from "../platform/buckets";
import { AGGREGATOR_NAME, shardName } from "../platform/names";
import { clientIdFor, type HitInput, routeHits } from "./hit-routing";

/** Rows per export page: one aggregator call each. */
const EXPORT_PAGE = 500;

/**
 * The path-statistics API: validates and normalizes hits, applies the IP privacy mode, routes
 * each hit to its collector shard (`hash(client) mod PATH_SHARDS`), and passes queries on to
 * the aggregator, which validates them (or, for `clientStats`, asks the client's one shard).
 * Served by the `PathStats` entrypoint and by capnweb's `AdminApi.pathStats()`.
 */
export class PathStatsService extends RpcTarget implements PathStatsApi {
  readonly #env: Env;

  constructor(env: Env) {
    super();
    this.#env = env;
  }

  // record, recordMany and clientStats validate here: the collector takes normalized hits and
  // client ids, which only this service computes (privacy mode, shard), never the caller's input.
  async record(input: RecordInput): Promise<void> {
    const hit = parseInput(hitSchema, input, "record input");
    await this.#ingest([hit], "");
  }

  async recordMany(input: RecordManyInput): Promise<{ accepted: number }> {
    const { hits } = parseInput(recordManySchema, input, "recordMany input");
    return { accepted: await this.#ingest(hits, "hits.") };
  }

  async clientStats(input: { ip: string; range?: StatsRange }): Promise<ClientStats> {
    const parsed = parseInput(clientStatsSchema, input, "clientStats input");
    const config = loadPathConfig(this.#env);
    const client = (await clientIdFor(parsed.ip, config))!;
    const query = parsed.range === undefined ? { client } : { client, range: parsed.range };
    return this.#env.PATH_COLLECTOR.getByName(shardName(shardOf(client, config.shards))).clientStats(query);
  }

  async globalStats(input: { range: StatsRange }): Promise<GlobalStats> {
    return this.#aggregator().globalStats(input);
  }

  async timeSeries(input: { range: StatsRange }): Promise<TimeSeries> {
    return this.#aggregator().timeSeries(input);
  }

  async topPaths(input: TopPathsInput): Promise<TopPaths> {
    return this.#aggregator().topPaths(input);
  }

  async topClients(input: { range: StatsRange; limit?: number }): Promise<TopClients> {
    return this.#aggregator().topClients(input);
  }

  async pathDetail(input: { range: StatsRange; path: string; method?: string }): Promise<PathDetail> {
    return this.#aggregator().pathDetail(input);
  }

  /**
   * Streams the range's rows, fetching one page from the aggregator each time the reader
   * wants more, so neither side ever holds the whole export. A named range is fixed to
   * absolute times when the export starts, so every page reads the same range.
   */
  async export(input: { range: StatsRange; format: ExportFormat }): Promise<ReadableStream<Uint8Array>> {
    // Validated here: the stream's pages are asked for later, and a bad input must fail this call, not the stream.
    const parsed = parseInput(exportSchema, input, "export input");
    const range = typeof parsed.range === "string" ? resolveRange(parsed.range, Date.now()) : parsed.range;
    const aggregator = this.#aggregator();
    const encoder = new TextEncoder();
    const csv = parsed.format === "csv";
    let cursor: string | undefined;
    let started = false;
    let first = true;
    return new ReadableStream<Uint8Array>({
      async pull(controller) {
        let chunk = "";
        if (!started) {
          started = true;
          chunk += csv ? csvHeader() : "[";
        }
        const page = await aggregator.exportPage(
          cursor === undefined ? { range, limit: EXPORT_PAGE } : { range, cursor, limit: EXPORT_PAGE },
        );
        for (const row of page.rows) {
          if (csv) chunk += csvRow(row);
          else {
            chunk += `${first ? "\n" : ",\n"}${jsonRow(row)}`;
            first = false;
          }
        }
        cursor = page.cursor;
        if (cursor === undefined) {
          if (!csv) chunk += "\n]\n";
          controller.enqueue(encoder.encode(chunk));
          controller.close();
        } else {
          controller.enqueue(encoder.encode(chunk));
        }
      },
    });
  }

  /**
   * Validates every hit (the clock window included) before anything is written, so bad
   * input changes nothing; then sends each shard its hits, all shards in parallel.
   */
  async #ingest(hits: HitInput[], prefix: string): Promise<number> {
    const byShard = await routeHits(this.#env, hits, prefix);
    const results = await Promise.all(
      [...byShard].map(([shard, batch]) => this.#env.PATH_COLLECTOR.getByName(shardName(shard)).ingest(batch)),
    );
    return results.reduce((sum, result) => sum + result.accepted, 0);
  }

  #aggregator() {
    return this.#env.AGGREGATOR.getByName(AGGREGATOR_NAME);
  }
}
