import type { AuthorizeResult, GatewayApi } from "../../../rpc";
import { errorCodeOf } from "../../../rpc/errors";
import { LLM_ROUTES, type LlmEnv, relayLlm } from "./llm";
import { upstream } from "./upstream";

export { AlertSink } from "./alert-sink";

interface Env extends LlmEnv {
  /** Service binding to tollgate's default entrypoint, `Gateway`. */
  TOLLGATE: GatewayApi;
  /** Paths under this prefix need an API key and are paid for in credits. */
  PAID_PREFIX: string;
  /** Credits held per paid request until the upstream says what it really cost. */
  ESTIMATE: string;
}

const MESSAGES: Record<string, string> = {
  MISSING_KEY: "this route needs an API key: Authorization: Bearer <key>",
  INVALID_KEY: "the API key is not valid",
  KEY_REVOKED: "the API key was revoked",
  KEY_EXPIRED: "the API key has expired",
  INSUFFICIENT_SCOPE: "the API key does not allow this",
  RATE_LIMITED: "too many requests",
  INSUFFICIENT_CREDITS: "not enough credits",
  SPEND_CAP_EXCEEDED: "the API key's spend cap is reached",
  IP_DENIED: "requests from this address are not accepted",
};

/**
 * An API gateway on tollgate. One `authorize` call per request verifies the bearer key and
 * its scope, applies the key's and the client IP's rate limits, and holds credits for paid
 * routes; the gateway answers tollgate's status with a JSON error body, or proxies to the
 * upstream, measures the latency and settles the real cost after responding (`waitUntil`).
 * Public routes need no key and are limited per client IP. `POST /v1/chat/completions` and
 * `POST /v1/messages` relay LLM traffic, priced per token (./llm.ts, docs/llm-gateway.md).
 */
export default {
  async fetch(request: Request, env: Env, ctx: ExecutionContext): Promise<Response> {
    const { pathname } = new URL(request.url);
    // LLM traffic: held by the quote of its body, metered as it streams, settled from its usage (./llm.ts).
    const llmFormat = request.method === "POST" ? LLM_ROUTES[pathname] : undefined;
    if (llmFormat !== undefined) return relayLlm(request, env, ctx, llmFormat, clientIp(request));
    const bearer = bearerKey(request);
    if (bearer === null)
      return errorResponse(401, "INVALID_KEY", "use Authorization: Bearer <key>", { "WWW-Authenticate": 'Bearer realm="tollgate"' });
    const paid = pathname.startsWith(env.PAID_PREFIX);
    let auth: AuthorizeResult;
    try {
      auth = await env.TOLLGATE.authorize({
        ip: clientIp(request),
        method: request.method,
        path: pathname,
        ...(bearer === undefined ? {} : { apiKey: bearer }),
        ...(paid
          ? { scope: request.method === "GET" || request.method === "HEAD" ? "api.read" : "api.write", estimate: Number(env.ESTIMATE) }
          : {}),
      });
    } catch (error) {
      // Fail closed: without an answer the gateway cannot know the caller may pass.
      console.error("tollgate authorize failed", errorCodeOf(error) ?? "UNKNOWN", error);
      return errorResponse(503, "UNAVAILABLE", "the gateway cannot authorize requests right now");
    }
    if (!auth.allowed) {
      const code = auth.code ?? "DENIED";
      const extra = auth.status === 429 ? { retryAfterMs: auth.retryAfterMs } : {};
      return errorResponse(auth.status, code, MESSAGES[code] ?? "request denied", auth.headers, extra);
    }

    const started = Date.now();
    const response = await upstream(request);
    const latencyMs = Date.now() - started;
    if (auth.holdId !== undefined && auth.accountId !== undefined) {
      const units = Number(response.headers.get("X-Usage-Units") ?? "1");
      // A failed upstream call costs nothing: the hold is voided.
      const actualCost = response.status >= 500 || !Number.isSafeInteger(units) || units < 0 ? 0 : units;
      const settle = env.TOLLGATE.settle({
        accountId: auth.accountId,
        holdId: auth.holdId,
        actualCost,
        status: response.status,
        latencyMs,
        idempotencyKey: `settle:${auth.holdId}`,
      });
      // After the response: the client never waits for billing. An unsettled hold is released by tollgate at its expiry.
      ctx.waitUntil(settle.catch((error: unknown) => console.error("tollgate settle failed", errorCodeOf(error) ?? "UNKNOWN")));
    }
    const headers = new Headers(response.headers);
    for (const [name, value] of Object.entries(auth.headers)) headers.set(name, value);
    return new Response(response.body, { status: response.status, headers });
  },
} satisfies ExportedHandler<Env>;

/** The bearer key; `undefined` without an Authorization header, `null` for any other scheme. */
function bearerKey(request: Request): string | undefined | null {
  const header = request.headers.get("Authorization");
  if (header === null) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match === null ? null : match[1]!;
}

function errorResponse(
  status: number,
  code: string,
  message: string,
  headers: Record<string, string> = {},
  extra: Record<string, unknown> = {},
): Response {
  return Response.json({ error: { code, message, ...extra } }, { status, headers });
}

/** Cloudflare sets CF-Connecting-IP; locally, wrangler dev sets it to the caller's address. */
function clientIp(request: Request): string {
  return request.headers.get("CF-Connecting-IP") ?? "127.0.0.1";
}
