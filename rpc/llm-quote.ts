/**
 * Sizes an LLM request before it runs, for the hold that `authorize` places: an upper bound of
 * its prompt tokens read from the request body, and the most output tokens it allows. No
 * tokenizer: none of the providers' tokenizers ships for Workers (and Anthropic's is not
 * public), so the input side is a bound that holds for every tokenizer, at the price of
 * over-estimating. docs/llm-gateway.md says how far off it can be.
 *
 * Why it is a bound: a tokenizer splits text into tokens that are each at least one UTF-8 byte
 * (byte-level BPE as in tiktoken, SentencePiece with byte fallback, Anthropic's BPE), so a text
 * of n bytes is at most n tokens, and at most n + 1 with SentencePiece's leading space. Around
 * the text, the chat template adds special tokens per message (OpenAI documents 3–4, plus 3 to
 * prime the reply), and tool definitions add a preamble (Anthropic documents 159–530 tokens by
 * model). The estimate counts every byte of every string (and key) in the prompt-bearing
 * fields, which JSON escaping can only make longer, plus generous constants for those.
 * Attachments (images, files) are billed by their size in pixels or pages, not bytes: each one
 * adds `attachmentTokens`, which is a bound only when configured for the models served.
 */
import type { LlmFormat } from "./llm-usage";
import { utf8Length } from "./llm-sse";

/** Special tokens per message: role markers and separators (OpenAI: 3–4; Llama 3: 5). */
export const PER_MESSAGE_TOKENS = 8;
/** Per request: begin-of-text, reply priming, a template's default preamble. */
export const FIXED_TOKENS = 64;
/** When the request defines tools: the provider's tool-use preamble (Anthropic: 159–530 by model). */
export const TOOL_PROMPT_TOKENS = 600;
/** Per Anthropic server tool (`type` other than `custom`): its hidden definition (computer use: 735 + 499). */
export const SERVER_TOOL_TOKENS = 1_500;
/** Default per attachment: an image is at most ~1,600 tokens on Claude and 1,445 on GPT-4o (high detail). */
export const DEFAULT_ATTACHMENT_TOKENS = 4_096;

export interface LlmEstimateOptions {
  /** The output bound of a request that sets no `max_tokens` / `max_completion_tokens`. */
  defaultMaxOutputTokens: number;
  /** Tokens assumed per image, file or document on top of its inline bytes. Default 4,096. */
  attachmentTokens?: number;
}

export interface LlmRequestEstimate {
  format: LlmFormat;
  /** The request's `model`, when it is a string. */
  model: string | undefined;
  /** The request asked for a streamed response. */
  stream: boolean;
  /** An upper bound of the prompt tokens (input, cached and cache-write together). */
  inputTokens: number;
  /** The most output tokens the request allows, `n` choices included. */
  maxOutputTokens: number;
  /** The request marks content for the prompt cache (`cache_control`): its input may be billed as cache writes. */
  cacheWrites: boolean;
  /** Images, files and documents counted at `attachmentTokens` each. */
  attachments: number;
}

type Json = Record<string, unknown>;
const isObject = (value: unknown): value is Json => typeof value === "object" && value !== null && !Array.isArray(value);
const positiveInteger = (value: unknown): number | undefined =>
  typeof value === "number" && Number.isSafeInteger(value) && value > 0 ? value : undefined;

/** The fields whose content the provider renders into the prompt. */
const PROMPT_FIELDS: Record<LlmFormat, string[]> = {
  openai: ["messages", "prompt", "tools", "functions", "tool_choice", "response_format"],
  anthropic: ["system", "messages", "tools", "tool_choice"],
};

/** Estimates a chat completions (`openai`) or Messages (`anthropic`) request body. */
export function estimateLlmRequest(format: LlmFormat, body: unknown, options: LlmEstimateOptions): LlmRequestEstimate {
  const request = isObject(body) ? body : {};
  const walk = new PromptWalk(options.attachmentTokens ?? DEFAULT_ATTACHMENT_TOKENS);
  for (const field of PROMPT_FIELDS[format]) if (field in request) walk.bytes += utf8Length(field) + walk.count(request[field]);
  const messages = (Array.isArray(request.messages) ? request.messages.length : 0) + (request.system === undefined ? 0 : 1);
  const tools = [...(Array.isArray(request.tools) ? request.tools : []), ...(Array.isArray(request.functions) ? request.functions : [])];
  const serverTools = format === "anthropic" ? tools.filter((t) => isObject(t) && typeof t.type === "string" && t.type !== "custom") : [];
  const toolTokens = (tools.length > serverTools.length ? TOOL_PROMPT_TOKENS : 0) + SERVER_TOOL_TOKENS * serverTools.length;
  const inputTokens = walk.bytes + walk.attachmentTokens + PER_MESSAGE_TOKENS * messages + FIXED_TOKENS + toolTokens;

  const limit =
    format === "openai"
      ? (positiveInteger(request.max_completion_tokens) ?? positiveInteger(request.max_tokens))
      : positiveInteger(request.max_tokens);
  const choices = format === "openai" ? (positiveInteger(request.n) ?? 1) : 1;
  // OpenAI's predicted outputs: rejected prediction tokens are billed as output too.
  const prediction = format === "openai" && isObject(request.prediction) ? new PromptWalk(0).count(request.prediction.content) : 0;
  return {
    format,
    model: typeof request.model === "string" ? request.model : undefined,
    stream: request.stream === true,
    inputTokens,
    maxOutputTokens: (limit ?? options.defaultMaxOutputTokens) * choices + prediction,
    cacheWrites: walk.cacheControl,
    attachments: walk.attachments,
  };
}

class PromptWalk {
  bytes = 0;
  attachments = 0;
  attachmentTokens = 0;
  cacheControl = false;
  readonly #perAttachment: number;

  constructor(perAttachment: number) {
    this.#perAttachment = perAttachment;
  }

  /** UTF-8 bytes of every string, key and scalar under `value`; attachments are set aside. */
  count(value: unknown): number {
    if (typeof value === "string") return utf8Length(value);
    if (typeof value === "number" || typeof value === "boolean") return String(value).length;
    if (Array.isArray(value)) return value.reduce((sum: number, item) => sum + this.count(item), 0);
    if (!isObject(value)) return 0;
    const attachment = this.#attachment(value);
    if (attachment !== undefined) {
      this.attachments += 1;
      this.attachmentTokens += this.#perAttachment;
      return attachment;
    }
    let bytes = 0;
    for (const [key, item] of Object.entries(value)) {
      if (key === "cache_control") this.cacheControl = true;
      bytes += utf8Length(key) + this.count(item);
    }
    return bytes;
  }

  /**
   * The bytes to count for an image, file or document part (besides the allowance), or
   * undefined for any other object. An image's tokens depend on its pixels, never on its
   * encoded size, so a base64 image counts no bytes; a file or document (a PDF) counts its
   * inline bytes too, as its text is part of the prompt.
   */
  #attachment(part: Json): number | undefined {
    const type = part.type;
    if (type === "image_url" || type === "image" || type === "input_image") return this.#flag(part);
    if (type === "file" || type === "container_upload") {
      const file = isObject(part.file) ? part.file : {};
      return this.#flag(part) + (typeof file.file_data === "string" ? file.file_data.length : 0);
    }
    if (type === "document") {
      const source = isObject(part.source) ? part.source : {};
      // A plain-text document is text: counted like any other.
      if (source.type === "text" || source.type === "content") return undefined;
      return this.#flag(part) + (typeof source.data === "string" ? source.data.length : 0);
    }
    return undefined;
  }

  /** An attachment may itself be marked for the cache. */
  #flag(part: Json): number {
    if ("cache_control" in part) this.cacheControl = true;
    return 0;
  }
}
