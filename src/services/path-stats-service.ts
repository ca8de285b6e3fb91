import { RpcTarget } from "cloudflare:workers";
import type { PathStatsApi } from "../../rpc/path-stats";
import { unimplemented } from "../errors";

/** The path-statistics API. Every method answers `UNIMPLEMENTED` until its issue lands. */
export class PathStatsService extends RpcTarget implements PathStatsApi {
  async record(_input: unknown): Promise<void> {
    throw unimplemented("PathStats.record", "path-statistics issue");
  }

  async recordMany(_input: unknown): Promise<{ accepted: number }> {
    throw unimplemented("PathStats.recordMany", "path-statistics issue");
  }
}
