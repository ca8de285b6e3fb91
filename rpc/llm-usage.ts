/**
 * Reads token usage out of LLM responses, in the two formats providers use (see
 * docs/llm-gateway.md): OpenAI-compatible chat completions (streamed chunks and JSON bodies)
 * and Anthropic Messages (streamed events and JSON bodies). It also counts the output text
 * the client was given, so a response that ends without usage can still be estimated.
 */
import { utf8Length } from "./llm-sse";

export type LlmFormat = "openai" | "anthropic";

/** Usage as the provider reported it, in tollgate's dimensions (they do not overlap: each token counts once). */
export interface ReportedUsage {
  /** Input tokens neither read from nor written to the prompt cache (OpenAI: `prompt_tokens − cached_tokens`). */
  inputTokens: number;
  /** Output tokens, reasoning included. */
  outputTokens: number;
  cachedTokens: number;
  cacheWriteTokens: number;
  /** Part of `outputTokens` (OpenAI `completion_tokens_details.reasoning_tokens`); informational. */
  reasoningTokens: number;
}

/** What the client was given so far. */
export interface Delivered {
  /** Response body bytes passed through. */
  bytes: number;
  /** SSE events parsed (0 for a JSON body). */
  events: number;
  /** Events (or, for a JSON body, parts) that carried output: text, reasoning, tool names and arguments. */
  outputEvents: number;
  /** UTF-8 bytes of that output. */
  outputBytes: number;
  /** Distinct output blocks (choices, content blocks, tool calls) they belong to. */
  outputBlocks: number;
}

type Json = Record<string, unknown>;

const isObject = (value: unknown): value is Json => typeof value === "object" && value !== null && !Array.isArray(value);
const count = (value: unknown): number | undefined =>
  typeof value === "number" && Number.isFinite(value) && value >= 0 ? Math.floor(value) : undefined;

const ANTHROPIC_EVENTS = new Set([
  "message_start",
  "content_block_start",
  "content_block_delta",
  "content_block_stop",
  "message_delta",
  "message_stop",
  "ping",
  "error",
]);

/** Accumulates what a response says, event by event (or once, for a JSON body). */
export class UsageReader {
  format: LlmFormat | undefined;
  model: string | undefined;
  /** The response reached its end marker: `[DONE]`, a final usage chunk, a finish reason, `message_stop`, a whole JSON body. */
  finished = false;
  /** The upstream said it failed (an `error` event or body). */
  error: string | undefined;
  readonly delivered: Delivered = { bytes: 0, events: 0, outputEvents: 0, outputBytes: 0, outputBlocks: 0 };
  /** The input side of the usage arrived (OpenAI's final chunk, Anthropic's `message_start`, a JSON body's usage). */
  inputReported = false;
  /** The final output count arrived (OpenAI's final chunk, Anthropic's `message_delta`, a JSON body's usage). */
  outputReported = false;
  readonly usage: ReportedUsage = { inputTokens: 0, outputTokens: 0, cachedTokens: 0, cacheWriteTokens: 0, reasoningTokens: 0 };
  readonly #blocks = new Set<string>();

  constructor(format?: LlmFormat) {
    this.format = format;
  }

  /** One SSE event's `data`. */
  event(data: string): void {
    this.delivered.events += 1;
    if (data.trim() === "[DONE]") {
      this.format ??= "openai";
      this.finished = true;
      return;
    }
    const parsed = parseJson(data);
    if (!isObject(parsed)) return;
    if (this.#isAnthropic(parsed)) this.#anthropicEvent(parsed);
    else this.#openAiChunk(parsed);
  }

  /** A whole (non-streamed) JSON body. */
  body(text: string): void {
    const parsed = parseJson(text);
    if (!isObject(parsed)) return;
    this.finished = true;
    if (isObject(parsed.error) || parsed.type === "error") {
      this.error = errorMessage(parsed.error);
      return;
    }
    if (this.#isAnthropic(parsed) || parsed.type === "message") {
      this.format ??= "anthropic";
      if (typeof parsed.model === "string") this.model = parsed.model;
      if (Array.isArray(parsed.content)) {
        for (const [index, block] of parsed.content.entries()) this.#anthropicBlock(index, block);
      }
      if (isObject(parsed.usage)) this.#anthropicUsage(parsed.usage, true);
      return;
    }
    this.format ??= "openai";
    if (typeof parsed.model === "string") this.model = parsed.model;
    if (Array.isArray(parsed.choices)) {
      for (const choice of parsed.choices) {
        if (!isObject(choice)) continue;
        const index = String(choice.index ?? 0);
        this.#openAiMessage(index, isObject(choice.message) ? choice.message : {});
        if (typeof choice.text === "string") this.#output(`c${index}`, choice.text);
      }
    }
    if (isObject(parsed.usage)) this.#openAiUsage(parsed.usage);
  }

  #isAnthropic(parsed: Json): boolean {
    if (this.format !== undefined) return this.format === "anthropic";
    return typeof parsed.type === "string" && ANTHROPIC_EVENTS.has(parsed.type) && !("choices" in parsed);
  }

  #openAiChunk(chunk: Json): void {
    this.format ??= "openai";
    if (chunk.error !== undefined && chunk.error !== null) {
      this.error = errorMessage(chunk.error);
      return;
    }
    if (typeof chunk.model === "string") this.model = chunk.model;
    // `choices` is an array, empty in the final usage chunk, or null on some servers.
    if (Array.isArray(chunk.choices)) {
      for (const choice of chunk.choices) {
        if (!isObject(choice)) continue;
        const index = String(choice.index ?? 0);
        if (isObject(choice.delta)) this.#openAiMessage(index, choice.delta);
        if (typeof choice.text === "string") this.#output(`c${index}`, choice.text);
        if (typeof choice.finish_reason === "string") this.finished = true;
      }
    }
    if (isObject(chunk.usage)) {
      this.#openAiUsage(chunk.usage);
      this.finished = true;
    }
  }

  /** A streamed `delta` or a JSON body's `message`: content, reasoning, refusal, tool calls. */
  #openAiMessage(index: string, message: Json): void {
    for (const field of ["content", "reasoning_content", "reasoning", "refusal"]) {
      const value = message[field];
      if (typeof value === "string") this.#output(`c${index}`, value);
    }
    const calls = Array.isArray(message.tool_calls) ? message.tool_calls : [];
    calls.forEach((call, position) => {
      if (!isObject(call)) return;
      const fn = isObject(call.function) ? call.function : {};
      const text = `${typeof fn.name === "string" ? fn.name : ""}${typeof fn.arguments === "string" ? fn.arguments : ""}`;
      this.#output(`c${index}t${String(call.index ?? position)}`, text);
    });
  }

  #openAiUsage(usage: Json): void {
    const prompt = count(usage.prompt_tokens) ?? 0;
    const details = isObject(usage.prompt_tokens_details) ? usage.prompt_tokens_details : {};
    // DeepSeek's API names its cache hits prompt_cache_hit_tokens.
    const cached = Math.min(prompt, count(details.cached_tokens) ?? count(usage.prompt_cache_hit_tokens) ?? 0);
    const completionDetails = isObject(usage.completion_tokens_details) ? usage.completion_tokens_details : {};
    Object.assign(this.usage, {
      inputTokens: prompt - cached,
      cachedTokens: cached,
      cacheWriteTokens: 0,
      outputTokens: count(usage.completion_tokens) ?? 0,
      reasoningTokens: count(completionDetails.reasoning_tokens) ?? 0,
    });
    this.inputReported = true;
    this.outputReported = true;
  }

  #anthropicEvent(event: Json): void {
    this.format ??= "anthropic";
    switch (event.type) {
      case "message_start": {
        const message = isObject(event.message) ? event.message : {};
        if (typeof message.model === "string") this.model = message.model;
        if (isObject(message.usage)) this.#anthropicUsage(message.usage, false);
        return;
      }
      case "content_block_start":
        this.#anthropicBlock(event.index, event.content_block);
        return;
      case "content_block_delta": {
        const delta = isObject(event.delta) ? event.delta : {};
        const text = delta.text ?? delta.thinking ?? delta.partial_json;
        if (typeof text === "string") this.#output(`b${String(event.index ?? 0)}`, text);
        return;
      }
      case "message_delta":
        // Cumulative: each message_delta carries the totals so far, so the latest wins (never summed).
        if (isObject(event.usage)) this.#anthropicUsage(event.usage, true);
        return;
      case "message_stop":
        this.finished = true;
        return;
      case "error":
        this.error = errorMessage(event.error);
        return;
    }
  }

  /** A content block: its text, thinking, or tool name and input. */
  #anthropicBlock(index: unknown, block: unknown): void {
    if (!isObject(block)) return;
    const id = `b${String(index ?? 0)}`;
    for (const field of ["text", "thinking", "name"]) {
      const value = block[field];
      if (typeof value === "string") this.#output(id, value);
    }
    // A JSON body's tool input is whole; a streamed block starts with `{}` and grows by input_json_delta.
    if (isObject(block.input) && Object.keys(block.input).length > 0) this.#output(id, JSON.stringify(block.input));
  }

  /** Fields present overwrite; absent ones keep their value (message_delta may carry only output_tokens). */
  #anthropicUsage(usage: Json, final: boolean): void {
    const input = count(usage.input_tokens);
    const cachedRead = count(usage.cache_read_input_tokens);
    const cacheWrite = count(usage.cache_creation_input_tokens);
    const output = count(usage.output_tokens);
    if (input !== undefined) this.usage.inputTokens = input;
    if (cachedRead !== undefined) this.usage.cachedTokens = cachedRead;
    if (cacheWrite !== undefined) this.usage.cacheWriteTokens = cacheWrite;
    if (output !== undefined) this.usage.outputTokens = output;
    if (input !== undefined || cachedRead !== undefined || cacheWrite !== undefined) this.inputReported = true;
    if (final && output !== undefined) this.outputReported = true;
  }

  #output(block: string, text: string): void {
    if (text.length === 0) return;
    this.delivered.outputEvents += 1;
    this.delivered.outputBytes += utf8Length(text);
    if (!this.#blocks.has(block)) {
      this.#blocks.add(block);
      this.delivered.outputBlocks += 1;
    }
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function errorMessage(error: unknown): string {
  if (isObject(error)) {
    const message = error.message ?? error.type ?? error.code;
    if (typeof message === "string") return message.slice(0, 500);
  }
  return typeof error === "string" ? error.slice(0, 500) : "upstream error";
}
