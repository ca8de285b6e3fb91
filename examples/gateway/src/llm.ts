import {
  type AuthorizeResult,
  estimateLlmRequest,
  type GatewayApi,
  type LlmFormat,
  type LlmRequestEstimate,
  meterLlmResponse,
} from "../../../rpc";
import { errorCodeOf } from "../../../rpc/errors";
import { type HeldRequest, settlementFor, settleWithRetries } from "./llm-settle";

/** The gateway's settings for LLM traffic (`[vars]` in wrangler.toml; the key is a secret). */
export interface LlmEnv {
  TOLLGATE: GatewayApi;
  /** The provider (or the fake upstream under `npm start`): `${LLM_UPSTREAM_URL}/v1/chat/completions`, `/v1/messages`. */
  LLM_UPSTREAM_URL?: string;
  /** The gateway's own key at the provider (`wrangler secret put LLM_UPSTREAM_KEY`); clients never see it. */
  LLM_UPSTREAM_KEY?: string;
  /** The price book's operation for LLM calls (default `llm`): prices are looked up by it and the request's `model`. */
  LLM_OPERATION?: string;
  /** The output bound of a request that sets no max_tokens / max_completion_tokens. */
  LLM_DEFAULT_MAX_OUTPUT_TOKENS?: string;
  /** Tokens assumed per image, file or document in a prompt (docs/llm-gateway.md). */
  LLM_ATTACHMENT_TOKENS?: string;
  /** How long a hold stays open without a settle (default 30 minutes: long streams). */
  LLM_HOLD_TTL_MS?: string;
}

export const LLM_ROUTES: Record<string, LlmFormat> = { "/v1/chat/completions": "openai", "/v1/messages": "anthropic" };

/** The price book's names: a model the ledger cannot name is refused before anything is held. */
const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/;
const MAX_BODY_BYTES = 20 * 1024 * 1024;
/** Request headers that are the client's or the hop's, never forwarded to the provider. */
const DROPPED =
  /^(authorization|x-api-key|host|content-length|cookie|cf-.*|x-forwarded-.*|x-real-ip|connection|keep-alive|transfer-encoding)$/i;

/**
 * Relays an OpenAI-compatible or Anthropic Messages request: quotes it from its body,
 * authorizes the quote's worst case as a hold (402 before any upstream call), forwards it with
 * the gateway's own upstream key, meters the response as it streams to the client, and settles
 * what was used after the response (docs/llm-gateway.md).
 */
export async function relayLlm(request: Request, env: LlmEnv, ctx: ExecutionContext, format: LlmFormat, ip: string): Promise<Response> {
  const url = new URL(request.url);
  const apiKey = clientKey(request, format);
  if (apiKey === null)
    return llmError(format, 401, "INVALID_KEY", "use Authorization: Bearer <key>", { "WWW-Authenticate": 'Bearer realm="tollgate"' });
  if (env.LLM_UPSTREAM_URL === undefined || env.LLM_UPSTREAM_URL === "")
    return llmError(format, 503, "UNAVAILABLE", "no LLM upstream is configured");
  if (Number(request.headers.get("Content-Length") ?? 0) > MAX_BODY_BYTES)
    return llmError(format, 413, "TOO_LARGE", "the request body is too large");
  const text = await request.text();
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(text) as Record<string, unknown>;
    if (typeof body !== "object" || body === null || Array.isArray(body)) throw new Error("not an object");
  } catch {
    return llmError(format, 400, "INVALID_REQUEST", "the body must be a JSON object");
  }
  const estimate = estimateLlmRequest(format, body, {
    defaultMaxOutputTokens: positive(env.LLM_DEFAULT_MAX_OUTPUT_TOKENS, 4_096),
    attachmentTokens: positive(env.LLM_ATTACHMENT_TOKENS, 4_096),
  });
  if (estimate.model === undefined || !MODEL_NAME.test(estimate.model))
    return llmError(format, 400, "INVALID_REQUEST", "model must be a name of [A-Za-z0-9._:/-], at most 128 characters");
  const operation = env.LLM_OPERATION || "llm";

  let auth: AuthorizeResult;
  try {
    auth = await env.TOLLGATE.authorize({
      ip,
      method: request.method,
      path: url.pathname,
      scope: "api.write",
      ...(apiKey === undefined
        ? {}
        : { apiKey, usage: quoteUsage(operation, estimate), holdTtlMs: positive(env.LLM_HOLD_TTL_MS, 1_800_000) }),
    });
  } catch (error) {
    // The account's price book has no price for (operation, model) and no fallback: nothing was held.
    if (errorCodeOf(error) === "NOT_FOUND")
      return llmError(format, 400, "MODEL_NOT_PRICED", `there is no price for model ${estimate.model}`);
    console.error("tollgate authorize failed", errorCodeOf(error) ?? "UNKNOWN", error);
    return llmError(format, 503, "UNAVAILABLE", "the gateway cannot authorize requests right now");
  }
  if (!auth.allowed) return llmError(format, auth.status, auth.code ?? "DENIED", `request denied: ${auth.code ?? "DENIED"}`, auth.headers);
  // With a key and a usage, an admitted request always has its hold.
  if (auth.holdId === undefined || auth.accountId === undefined) return llmError(format, 500, "INTERNAL", "no hold was placed");
  const held: HeldRequest = { accountId: auth.accountId, holdId: auth.holdId, operation, model: estimate.model };
  const headers = new Headers(auth.headers);
  headers.set("X-Credits-Held", String(auth.held ?? 0));

  const started = Date.now();
  let upstream: Response;
  try {
    upstream = await fetch(`${env.LLM_UPSTREAM_URL.replace(/\/+$/, "")}${url.pathname}`, {
      method: "POST",
      headers: upstreamHeaders(request, env, format),
      body: format === "openai" && estimate.stream ? withIncludeUsage(body) : text,
    });
  } catch (error) {
    console.error("LLM upstream unreachable", error);
    ctx.waitUntil(settleWithRetries(env.TOLLGATE, { ...settlementBase(held, 502, started), actualCost: 0 }));
    headers.set("X-Credits-Charged", "0");
    return llmError(format, 502, "UPSTREAM_UNREACHABLE", "the upstream could not be reached", Object.fromEntries(headers));
  }
  if (!upstream.ok) {
    // The provider refused or failed before answering: nothing was generated, nothing is charged.
    ctx.waitUntil(settleWithRetries(env.TOLLGATE, { ...settlementBase(held, upstream.status, started), actualCost: 0 }));
    headers.set("X-Credits-Charged", "0");
    return relayed(upstream, upstream.body, headers);
  }

  const metered = meterLlmResponse(upstream, {
    format,
    estimatedInputTokens: estimate.inputTokens,
    maxOutputTokens: estimate.maxOutputTokens,
  });
  const streamed = (upstream.headers.get("Content-Type") ?? "").includes("text/event-stream");
  if (streamed) {
    // The client gets the stream as it comes; the settle waits for its end, after the response.
    ctx.waitUntil(
      metered.usage.then((usage) => settleWithRetries(env.TOLLGATE, settlementFor(held, usage, upstream.status, Date.now() - started))),
    );
    return relayed(metered.response, metered.response.body, headers);
  }
  // A JSON body is complete before its usage can be read: settle first, so the charge is in the headers.
  const bytes = await metered.response.arrayBuffer();
  const usage = await metered.usage;
  const result = await settleWithRetries(env.TOLLGATE, settlementFor(held, usage, upstream.status, Date.now() - started));
  if (result !== undefined) {
    headers.set("X-Credits-Charged", String(result.charged));
    if (result.overrun) headers.set("X-Credits-Overrun", String(result.overrun));
  }
  return relayed(upstream, bytes, headers);
}

/** The hold to place: the estimated prompt, and as cache writes too when the request asks for caching (they may cost more). */
function quoteUsage(operation: string, estimate: LlmRequestEstimate) {
  return {
    operation,
    model: estimate.model!,
    inputTokens: estimate.inputTokens,
    ...(estimate.cacheWrites ? { cacheWriteTokens: estimate.inputTokens } : {}),
    maxOutputTokens: estimate.maxOutputTokens,
  };
}

function settlementBase(held: HeldRequest, status: number, started: number) {
  return { accountId: held.accountId, holdId: held.holdId, status, latencyMs: Math.min(3_600_000, Date.now() - started) };
}

/** The tollgate key: `Authorization: Bearer`, or `x-api-key` as Anthropic clients send it. `null` for another scheme. */
function clientKey(request: Request, format: LlmFormat): string | undefined | null {
  const header = request.headers.get("Authorization");
  if (header !== null) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    return match === null ? null : match[1]!;
  }
  const apiKey = format === "anthropic" ? request.headers.get("x-api-key") : null;
  return apiKey === null || apiKey === "" ? undefined : apiKey;
}

function upstreamHeaders(request: Request, env: LlmEnv, format: LlmFormat): Headers {
  const headers = new Headers();
  for (const [name, value] of request.headers) if (!DROPPED.test(name)) headers.set(name, value);
  headers.set("Content-Type", "application/json");
  const key = env.LLM_UPSTREAM_KEY ?? "";
  if (format === "anthropic") {
    headers.set("x-api-key", key);
    if (!headers.has("anthropic-version")) headers.set("anthropic-version", "2023-06-01");
  } else headers.set("Authorization", `Bearer ${key}`);
  return headers;
}

/** A streamed chat completion asks for the final usage chunk, keeping the client's other stream options. */
function withIncludeUsage(body: Record<string, unknown>): string {
  const options = typeof body.stream_options === "object" && body.stream_options !== null ? body.stream_options : {};
  return JSON.stringify({ ...body, stream_options: { ...options, include_usage: true } });
}

function relayed(upstream: Response, body: BodyInit | null, extra: Headers): Response {
  const headers = new Headers(upstream.headers);
  // fetch() decoded the upstream's body: its encoding and length describe bytes the client will not get.
  headers.delete("Content-Encoding");
  headers.delete("Content-Length");
  for (const [name, value] of extra) headers.set(name, value);
  return new Response(body, { status: upstream.status, statusText: upstream.statusText, headers });
}

/** An error in the format's own shape, so the provider's SDKs read its message; `code` is tollgate's. */
function llmError(format: LlmFormat, status: number, code: string, message: string, headers: Record<string, string> = {}): Response {
  const body =
    format === "anthropic" ? { type: "error", error: { type: code, message } } : { error: { message, type: "tollgate_error", code } };
  return Response.json(body, { status, headers });
}

function positive(raw: string | undefined, fallback: number): number {
  const value = Number(raw);
  return raw !== undefined && raw !== "" && Number.isSafeInteger(value) && value > 0 ? value : fallback;
}
