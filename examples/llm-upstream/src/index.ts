import { outputText, promptTokens } from "./tokens";

/**
 * A fake LLM provider for the example gateway: OpenAI-compatible `POST /v1/chat/completions`
 * and Anthropic `POST /v1/messages`, streamed (SSE) or not, with deterministic token counts
 * (./tokens.ts). Request headers steer it, so a test or a curl can make any request misbehave:
 *
 * | header | effect |
 * |---|---|
 * | `x-fake-output-tokens: n` | answer n tokens (default `OUTPUT_TOKENS`), at most the request's max_tokens |
 * | `x-fake-chunk-tokens: n` | n tokens per streamed event (default `CHUNK_TOKENS`) |
 * | `x-fake-delay-ms: n` | wait n ms before each streamed event (default `DELAY_MS`) |
 * | `x-fake-cut-after: n` | stop after n content events: no usage, no end marker |
 * | `x-fake-cut-mode: error` | with `x-fake-cut-after`, break the connection instead of closing the stream |
 * | `x-fake-fail: status` | answer that status (e.g. 500) with an error body, before any token |
 * | `x-fake-no-usage: 1` | leave the final usage out (a server that ignores `include_usage`; Anthropic: no `message_delta` usage) |
 * | `x-fake-cached-tokens: n`, `x-fake-cache-write-tokens: n` | report n of the prompt tokens as cache reads / writes |
 * | `x-fake-tag: t` | count the request under t: `GET /calls?tag=t` answers how many arrived |
 *
 * With `UPSTREAM_KEY` set, requests must carry it (`Authorization: Bearer` or `x-api-key`), as
 * a provider checks the gateway's key. The per-tag counts live in the isolate's memory: a
 * restart or reload forgets them.
 */
interface Env {
  UPSTREAM_KEY?: string;
  OUTPUT_TOKENS?: string;
  CHUNK_TOKENS?: string;
  DELAY_MS?: string;
}

const calls = new Map<string, number>();
const encoder = new TextEncoder();

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    if (request.method === "GET" && url.pathname === "/calls")
      return Response.json({ calls: calls.get(url.searchParams.get("tag") ?? "") ?? 0 });
    const format = url.pathname === "/v1/chat/completions" ? "openai" : url.pathname === "/v1/messages" ? "anthropic" : undefined;
    if (format === undefined || request.method !== "POST") return failure("openai", 404, "no such route");
    const tag = request.headers.get("x-fake-tag");
    if (tag !== null) calls.set(tag, (calls.get(tag) ?? 0) + 1);
    const presented = request.headers.get("x-api-key") ?? request.headers.get("Authorization")?.replace(/^Bearer\s+/i, "");
    if (env.UPSTREAM_KEY && presented !== env.UPSTREAM_KEY) return failure(format, 401, "invalid upstream key");
    const fail = int(request.headers.get("x-fake-fail"), 0);
    if (fail >= 400) return failure(format, fail, "the fake upstream was told to fail");
    let body: Record<string, unknown>;
    try {
      body = (await request.json()) as Record<string, unknown>;
    } catch {
      return failure(format, 400, "the body is not JSON");
    }
    const header = (name: string, fallback: number) => int(request.headers.get(name), fallback);
    const limit = int(String(body.max_completion_tokens ?? body.max_tokens ?? ""), Number.MAX_SAFE_INTEGER);
    const wanted = header("x-fake-output-tokens", int(env.OUTPUT_TOKENS, 24));
    const prompt = promptTokens(body);
    const cached = Math.min(prompt, header("x-fake-cached-tokens", 0));
    const answer: Answer = {
      format,
      model: typeof body.model === "string" ? body.model : "fake",
      prompt,
      cached,
      cacheWrite: Math.min(prompt - cached, header("x-fake-cache-write-tokens", 0)),
      output: Math.min(wanted, limit),
      truncated: wanted > limit,
      usage: request.headers.get("x-fake-no-usage") !== "1",
    };
    if (body.stream !== true) return Response.json(format === "openai" ? openAiBody(answer) : anthropicBody(answer));
    const includeUsage = format === "anthropic" || (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true;
    const plan = {
      chunkTokens: Math.max(1, header("x-fake-chunk-tokens", int(env.CHUNK_TOKENS, 1))),
      delayMs: header("x-fake-delay-ms", int(env.DELAY_MS, 0)),
      cutAfter: request.headers.has("x-fake-cut-after") ? header("x-fake-cut-after", 0) : undefined,
      cutWithError: request.headers.get("x-fake-cut-mode") === "error",
    };
    const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
    void stream(writable.getWriter(), { ...answer, usage: answer.usage && includeUsage }, plan);
    return new Response(readable, { headers: { "Content-Type": "text/event-stream", "Cache-Control": "no-cache" } });
  },
} satisfies ExportedHandler<Env>;

interface Answer {
  format: "openai" | "anthropic";
  model: string;
  prompt: number;
  cached: number;
  cacheWrite: number;
  output: number;
  truncated: boolean;
  usage: boolean;
}

interface Plan {
  chunkTokens: number;
  delayMs: number;
  cutAfter: number | undefined;
  cutWithError: boolean;
}

async function stream(writer: WritableStreamDefaultWriter<Uint8Array>, answer: Answer, plan: Plan): Promise<void> {
  const send = async (event: string | undefined, data: unknown) => {
    if (plan.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, plan.delayMs));
    const text = typeof data === "string" ? data : JSON.stringify(data);
    await writer.write(encoder.encode(`${event === undefined ? "" : `event: ${event}\n`}data: ${text}\n\n`));
  };
  try {
    const events = answer.format === "openai" ? openAiEvents(answer, plan.chunkTokens) : anthropicEvents(answer, plan.chunkTokens);
    let content = 0;
    for (const { event, data, isContent } of events) {
      if (plan.cutAfter !== undefined && isContent && content === plan.cutAfter) {
        // The bytes already written leave first (an abort drops what is still queued), then the connection breaks.
        if (plan.cutWithError) {
          await new Promise((resolve) => setTimeout(resolve, 100));
          await writer.abort(new Error("the fake upstream cut the connection"));
        } else await writer.close();
        return;
      }
      if (isContent) content += 1;
      await send(event, data);
    }
    await writer.close();
  } catch {
    // The client went away: nothing to do.
  }
}

type Event = { event?: string; data: unknown; isContent: boolean };

function* openAiEvents(a: Answer, chunkTokens: number): Generator<Event> {
  const base = {
    id: "chatcmpl-fake0001",
    object: "chat.completion.chunk",
    created: 1_767_225_600,
    model: a.model,
    system_fingerprint: "fp_fake",
  };
  const choice = (delta: object, finish: string | null = null) => ({
    ...base,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    usage: null,
  });
  yield { data: choice({ role: "assistant", content: "", refusal: null }), isContent: false };
  for (let at = 0; at < a.output; at += chunkTokens) {
    yield { data: choice({ content: outputText(at, Math.min(a.output, at + chunkTokens)) }), isContent: true };
  }
  yield { data: choice({}, a.truncated ? "length" : "stop"), isContent: false };
  if (a.usage) yield { data: { ...base, choices: [], usage: openAiUsage(a) }, isContent: false };
  yield { data: "[DONE]", isContent: false };
}

function* anthropicEvents(a: Answer, chunkTokens: number): Generator<Event> {
  const message = {
    id: "msg_fake0001",
    type: "message",
    role: "assistant",
    content: [],
    model: a.model,
    stop_reason: null,
    stop_sequence: null,
  };
  yield {
    event: "message_start",
    data: { type: "message_start", message: { ...message, usage: { ...anthropicInput(a), output_tokens: 1 } } },
    isContent: false,
  };
  yield {
    event: "content_block_start",
    data: { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } },
    isContent: false,
  };
  yield { event: "ping", data: { type: "ping" }, isContent: false };
  for (let at = 0; at < a.output; at += chunkTokens) {
    const text = outputText(at, Math.min(a.output, at + chunkTokens));
    yield {
      event: "content_block_delta",
      data: { type: "content_block_delta", index: 0, delta: { type: "text_delta", text } },
      isContent: true,
    };
  }
  yield { event: "content_block_stop", data: { type: "content_block_stop", index: 0 }, isContent: false };
  const delta = { stop_reason: a.truncated ? "max_tokens" : "end_turn", stop_sequence: null };
  const usage = a.usage ? { usage: { output_tokens: a.output } } : {};
  yield { event: "message_delta", data: { type: "message_delta", delta, ...usage }, isContent: false };
  yield { event: "message_stop", data: { type: "message_stop" }, isContent: false };
}

function openAiUsage(a: Answer) {
  return {
    prompt_tokens: a.prompt,
    completion_tokens: a.output,
    total_tokens: a.prompt + a.output,
    prompt_tokens_details: { cached_tokens: a.cached },
    completion_tokens_details: { reasoning_tokens: 0 },
  };
}

/** Anthropic counts cache reads and writes apart from `input_tokens`. */
function anthropicInput(a: Answer) {
  return { input_tokens: a.prompt - a.cached - a.cacheWrite, cache_read_input_tokens: a.cached, cache_creation_input_tokens: a.cacheWrite };
}

function openAiBody(a: Answer) {
  return {
    id: "chatcmpl-fake0001",
    object: "chat.completion",
    created: 1_767_225_600,
    model: a.model,
    choices: [
      {
        index: 0,
        message: { role: "assistant", content: outputText(0, a.output), refusal: null },
        finish_reason: a.truncated ? "length" : "stop",
      },
    ],
    ...(a.usage ? { usage: openAiUsage(a) } : {}),
  };
}

function anthropicBody(a: Answer) {
  return {
    id: "msg_fake0001",
    type: "message",
    role: "assistant",
    model: a.model,
    content: [{ type: "text", text: outputText(0, a.output) }],
    stop_reason: a.truncated ? "max_tokens" : "end_turn",
    stop_sequence: null,
    ...(a.usage ? { usage: { ...anthropicInput(a), output_tokens: a.output } } : {}),
  };
}

function failure(format: "openai" | "anthropic", status: number, message: string): Response {
  const body =
    format === "anthropic"
      ? { type: "error", error: { type: "api_error", message } }
      : { error: { message, type: "server_error", code: null } };
  return Response.json(body, { status });
}

function int(raw: string | null | undefined, fallback: number): number {
  const value = Number(raw);
  return raw !== null && raw !== undefined && raw !== "" && Number.isSafeInteger(value) && value >= 0 ? value : fallback;
}
