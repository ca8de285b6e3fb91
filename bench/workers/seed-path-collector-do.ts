import { DurableObject } from "cloudflare:workers";

interface PathEntry {
  pathKey: string;
  count: number;
  country?: string;
}

/**
 * The seeds' per-IP path collector (shared/seeds/api-aggregation.zh.md), as far as its
 * fan-out aggregator uses it: one object per client IP, its paths kept as JSON in storage,
 * answered to `fetch("/paths")`. Bench-only, a baseline: never shipped.
 */
export class SeedPathCollectorDO extends DurableObject {
  override async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname !== "/paths") return new Response("not found", { status: 404 });
    const paths = ((await this.ctx.storage.get<PathEntry[]>("paths")) ?? []).sort((a, b) => b.count - a.count);
    return Response.json({ paths });
  }

  /** Stores this IP's paths in one put (set-up, not measured). */
  async prefill(input: { paths: PathEntry[] }): Promise<number> {
    await this.ctx.storage.put("paths", input.paths);
    return input.paths.length;
  }
}
