import type { Decision, PathStatsApi, RateLimitsApi } from "../../../rpc";
import { errorCodeOf } from "../../../rpc/errors";
import { upstream } from "./upstream";

interface Env {
  /** Service binding to tollgate's `RateLimits` entrypoint. */
  LIMITS: RateLimitsApi;
  /** Optional service binding to tollgate's `PathStats` entrypoint: every request is recorded. */
  PATHS?: PathStatsApi;
  IP_POLICY: string;
}

/**
 * A minimal API gateway: every client IP is limited by tollgate's `per-ip` policy. Denied
 * requests get 429 with `Retry-After` and the IETF/legacy rate-limit headers; admitted ones
 * are passed to the upstream and carry the same headers on the way back.
 */
export default {
  async fetch(request: Request, env: Env, ctx: ExecutionContext): Promise<Response> {
    const ip = clientIp(request);
    const started = Date.now();
    // Recorded after the response is sent (waitUntil), so statistics never slow a request.
    const record = (status: number) => {
      if (env.PATHS === undefined) return;
      const { pathname } = new URL(request.url);
      const hit = { ip, method: request.method, path: pathname, status, latencyMs: Date.now() - started };
      ctx.waitUntil(env.PATHS.record(hit).catch((error: unknown) => console.error("tollgate record failed", errorCodeOf(error) ?? "UNKNOWN")));
    };
    let decision: Decision;
    try {
      decision = await env.LIMITS.check({ subject: `ip:${ip}`, policy: env.IP_POLICY });
    } catch (error) {
      // Fail closed: without a decision the gateway cannot know the client is within limits.
      console.error("tollgate check failed", errorCodeOf(error) ?? "UNKNOWN", error);
      return Response.json({ error: { code: "UNAVAILABLE", message: "rate limiter unavailable" } }, { status: 503 });
    }
    if (!decision.allowed) {
      record(429);
      return Response.json(
        { error: { code: "RATE_LIMITED", message: "too many requests", retryAfterMs: decision.retryAfterMs } },
        { status: 429, headers: decision.headers },
      );
    }
    const response = upstream(request);
    const headers = new Headers(response.headers);
    for (const [name, value] of Object.entries(decision.headers)) headers.set(name, value);
    record(response.status);
    return new Response(response.body, { status: response.status, headers });
  },
} satisfies ExportedHandler<Env>;

/** Cloudflare sets CF-Connecting-IP; locally, wrangler dev sets it to the caller's address. */
function clientIp(request: Request): string {
  return request.headers.get("CF-Connecting-IP") ?? "127.0.0.1";
}
