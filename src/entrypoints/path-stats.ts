import { WorkerEntrypoint } from "cloudflare:workers";
import type { PathStatsApi, RecordInput } from "../../rpc/path-stats";
import type { Env } from "../env";
import { PathStatsService } from "../services/path-stats-service";

/** `PathStats`: records hits and answers statistics (arrives with the path-statistics issue). */
export class PathStats extends WorkerEntrypoint<Env> implements PathStatsApi {
  readonly #service = new PathStatsService();

  record(input: RecordInput): Promise<void> {
    return this.#service.record(input);
  }

  recordMany(input: { hits: RecordInput[] }): Promise<{ accepted: number }> {
    return this.#service.recordMany(input);
  }
}
