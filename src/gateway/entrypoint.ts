import { WorkerEntrypoint } from "cloudflare:workers";
import type { AuthorizeInput, AuthorizeResult, GatewayApi, SettleInput, SettleResult } from "../../rpc/gateway";
import { serveRpc } from "./serve-rpc";
import type { Env } from "../platform/env";
import { GatewayService } from "./service";

/**
 * `Gateway`, the default entrypoint: the hot path for API gateways (`authorize`/`settle`),
 * and the Worker's HTTP surface: capnweb at `/rpc`, the dashboard's static files under
 * `/dashboard/` (public/, served by the assets binding). Every other path is 404.
 */
export class Gateway extends WorkerEntrypoint<Env> implements GatewayApi {
  readonly #service = new GatewayService(this.env, (promise) => this.ctx.waitUntil(promise));

  override async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/rpc") return serveRpc(request, this.env, this.ctx);
    // The page holds no secret (the operator types the token), so it is served to anyone.
    if ((url.pathname === "/dashboard" || url.pathname.startsWith("/dashboard/")) && this.env.ASSETS !== undefined) {
      if (request.method !== "GET" && request.method !== "HEAD") return notFound();
      const asset = await this.env.ASSETS.fetch(request);
      // A missing file answers like any unknown route: the same JSON 404.
      return asset.status === 404 ? notFound() : asset;
    }
    return notFound();
  }

  authorize(input: AuthorizeInput): Promise<AuthorizeResult> {
    return this.#service.authorize(input);
  }

  settle(input: SettleInput): Promise<SettleResult> {
    return this.#service.settle(input);
  }
}

function notFound(): Response {
  return Response.json(
    { error: { code: "NOT_FOUND", message: "no such route; tollgate serves capnweb at /rpc and its dashboard at /dashboard/" } },
    { status: 404 },
  );
}
