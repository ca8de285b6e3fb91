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
import { loadPathConfig, type PathConfig } from "./config";
import type { Env } from "../platform/env";
import { invalidArgument, ServiceError } from "../platform/errors";
import { csvHeader, csvRow, jsonRow } from "./export-format";
import { normalizeMethod, normalizePath } from "./normalize";
import type { NormalizedHit } from "./partial";
import { clientIdOf } from "./privacy";
import { shardOf } from "./shard";
import { parseInput } from "../platform/schemas";
import { clientStatsSchema, exportSchema, hitSchema, PATH_BOUNDS, recordManySchema } from "./schemas";
import { resolveRange } from "../platform/buckets";
import type * as v from "valibot";
import { AGGREGATOR_NAME, shardName } from "../platform/names";

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
    const client = (await this.#clientId(parsed.ip, config))!;
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
  async #ingest(hits: v.InferOutput<typeof hitSchema>[], prefix: string): Promise<number> {
    const config = loadPathConfig(this.#env);
    const nowMs = Date.now();
    const byShard = new Map<number, NormalizedHit[]>();
    // Each hit's address travels beside it (never stored) so the collector can block a flagged client.
    const ipsByShard = new Map<number, string[]>();
    for (let i = 0; i < hits.length; i += 1) {
      const hit = hits[i]!;
      const where = prefix === "" ? "" : `${prefix}${i}.`;
      const at = hit.at ?? nowMs;
      if (at < nowMs - PATH_BOUNDS.maxAgeMs || at > nowMs + PATH_BOUNDS.maxSkewMs) {
        throw invalidArgument(`${where}at must be within 1 hour before and 1 minute after now`, [
          { path: `${where}at`, message: "outside the accepted window" },
        ]);
      }
      const path = normalizePath(hit.path, config.routes);
      if (path === null) throw invalidArgument(`${where}path is not a path`);
      const client = (await this.#clientId(hit.ip, config))!;
      const normalized: NormalizedHit = { client, method: normalizeMethod(hit.method)!, path, status: hit.status ?? 0, at };
      if (hit.latencyMs !== undefined) normalized.latencyMs = hit.latencyMs;
      if (hit.country !== undefined) normalized.country = hit.country.toUpperCase();
      if (hit.userAgent !== undefined) normalized.userAgent = hit.userAgent;
      const shard = shardOf(client, config.shards);
      let list = byShard.get(shard);
      if (list === undefined) byShard.set(shard, (list = []));
      list.push(normalized);
      let ips = ipsByShard.get(shard);
      if (ips === undefined) ipsByShard.set(shard, (ips = []));
      ips.push(hit.ip);
    }
    const results = await Promise.all(
      [...byShard].map(([shard, shardHits]) =>
        this.#env.PATH_COLLECTOR.getByName(shardName(shard)).ingest({ hits: shardHits, ips: ipsByShard.get(shard)! }),
      ),
    );
    return results.reduce((sum, result) => sum + result.accepted, 0);
  }

  async #clientId(ip: string, config: PathConfig): Promise<string | null> {
    try {
      return await clientIdOf(ip, config.ipMode, config.hashKey);
    } catch (error) {
      console.error(`path statistics: ${(error as Error).message}`);
      throw new ServiceError("INTERNAL", "path statistics are misconfigured");
    }
  }

  #aggregator() {
    return this.#env.AGGREGATOR.getByName(AGGREGATOR_NAME);
  }
}
