/**
 * The LLM stream meter: wraps an upstream response so the client gets its bytes untouched and
 * as they come, while the meter reads the usage out of them. `usage` resolves once, when the
 * body ends, the client cancels it, or the upstream fails; the gateway then settles from it
 * (docs/llm-gateway.md). Platform-neutral: Workers, Node 18+ and browsers.
 *
 * ```ts
 * const metered = meterLlmResponse(await fetch(upstream), { estimatedInputTokens, maxOutputTokens });
 * ctx.waitUntil(metered.usage.then((usage) => settle(usage)));
 * return metered.response;
 * ```
 */
import { SseParser } from "./llm-sse";
import { type Delivered, type LlmFormat, type ReportedUsage, UsageReader } from "./llm-usage";

export type { Delivered, LlmFormat, ReportedUsage } from "./llm-usage";
export { SseParser, type SseEvent, utf8Length } from "./llm-sse";

export interface MeterOptions {
  /** The wire format; detected from the events or the body when absent. */
  format?: LlmFormat;
  /** Input tokens to assume when the upstream reports none (the gateway's quote). Default 0. */
  estimatedInputTokens?: number;
  /** The most output tokens the request allows: an output estimate never exceeds it. */
  maxOutputTokens?: number;
  /** A JSON body longer than this is not parsed (and its usage is estimated). Default 16 MiB. */
  maxJsonBytes?: number;
}

/**
 * - `completed`: the response reached its end (`[DONE]`, the final usage chunk or a finish
 *   reason; `message_stop`; a whole JSON body);
 * - `cancelled`: the client cancelled the body (it disconnected);
 * - `upstream_error`: the upstream body failed, or the upstream sent an error event or body;
 * - `cut`: the upstream body ended before the response's end.
 */
export type MeterEnd = "completed" | "cancelled" | "upstream_error" | "cut";

export interface MeteredUsage {
  end: MeterEnd;
  format: LlmFormat | undefined;
  /** The body was an event stream. */
  streamed: boolean;
  /**
   * - `reported`: input and output as the upstream reported them;
   * - `partial`: the input was reported, the output is estimated (Anthropic's stream cut before `message_delta`);
   * - `estimated`: nothing was reported: the input is `estimatedInputTokens`, the output is estimated.
   */
  source: "reported" | "partial" | "estimated";
  /** The usage to bill, in tollgate's dimensions: `Usage` without `operation` and `model`. */
  inputTokens: number;
  outputTokens: number;
  cachedTokens: number;
  cacheWriteTokens: number;
  /** Part of `outputTokens`, when reported. */
  reasoningTokens: number;
  /** The output estimate from what was delivered (see `estimateOutputTokens`), whatever the source. */
  estimatedOutputTokens: number;
  delivered: Delivered;
  /** The model the upstream said it used. */
  model?: string;
  /** The upstream's error message, for `upstream_error`. */
  error?: string;
}

const PER_BLOCK_TOKENS = 8;

/**
 * An upper bound of the output tokens behind the delivered output: every token of a
 * byte-level BPE (or any tokenizer whose tokens are non-empty strings) covers at least one
 * UTF-8 byte, so a text of n bytes is at most n tokens; each block (a choice, a content block,
 * a tool call) may add a few special tokens around it. Hidden reasoning that the upstream
 * does not stream is not in it. Capped at `maxOutputTokens`, which the upstream cannot exceed.
 */
export function estimateOutputTokens(delivered: Delivered, maxOutputTokens?: number): number {
  const bound = delivered.outputBytes + PER_BLOCK_TOKENS * delivered.outputBlocks;
  return maxOutputTokens === undefined ? bound : Math.min(bound, maxOutputTokens);
}

/** Wraps a `Response`: the same status and headers, and a body that meters as it passes. */
export function meterLlmResponse(response: Response, options: MeterOptions = {}): { response: Response; usage: Promise<MeteredUsage> } {
  const metered = meterLlmStream(response.body, response.headers.get("Content-Type"), options);
  const wrapped = new Response(metered.body, { status: response.status, statusText: response.statusText, headers: response.headers });
  return { response: wrapped, usage: metered.usage };
}

/**
 * Wraps a body stream. The returned stream reads the upstream only when its reader asks
 * (no read-ahead, no buffering): each chunk is handed on first, then parsed.
 */
export function meterLlmStream(
  body: ReadableStream<Uint8Array> | null,
  contentType: string | null,
  options: MeterOptions = {},
): { body: ReadableStream<Uint8Array> | null; usage: Promise<MeteredUsage> } {
  const meter = new Meter(contentType, options);
  if (body === null) return { body: null, usage: Promise.resolve(meter.finish(undefined)) };
  const reader = body.getReader();
  let resolve!: (usage: MeteredUsage) => void;
  const usage = new Promise<MeteredUsage>((r) => (resolve = r));
  let done = false;
  const finish = (end: MeterEnd | undefined) => {
    if (done) return;
    done = true;
    resolve(meter.finish(end));
  };
  const stream = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let result: ReadableStreamReadResult<Uint8Array>;
        try {
          result = await reader.read();
        } catch (error) {
          finish("upstream_error");
          controller.error(error);
          return;
        }
        if (result.done) {
          finish(undefined);
          controller.close();
          return;
        }
        controller.enqueue(result.value);
        meter.push(result.value);
      },
      async cancel(reason) {
        finish("cancelled");
        await reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
  return { body: stream, usage };
}

class Meter {
  readonly #reader: UsageReader;
  readonly #options: MeterOptions;
  readonly #maxJsonBytes: number;
  #kind: "sse" | "json" | undefined;
  #sse: SseParser | undefined;
  #json: Uint8Array[] = [];
  #jsonBytes = 0;
  /** Leading whitespace seen before the body's kind could be told. */
  #undecided: Uint8Array[] = [];
  #failed = false;

  constructor(contentType: string | null, options: MeterOptions) {
    this.#reader = new UsageReader(options.format);
    this.#options = options;
    this.#maxJsonBytes = options.maxJsonBytes ?? 16 * 1024 * 1024;
    const type = (contentType ?? "").toLowerCase();
    if (type.includes("text/event-stream")) this.#kind = "sse";
    else if (type.includes("json")) this.#kind = "json";
  }

  push(chunk: Uint8Array): void {
    const delivered = this.#reader.delivered;
    delivered.bytes += chunk.byteLength;
    if (this.#failed) return;
    // A bug in the meter must never break the stream: it stops metering and estimates instead.
    try {
      this.#kind ??= sniff(chunk);
      if (this.#kind === undefined) {
        this.#undecided.push(chunk);
        return;
      }
      const chunks = this.#undecided.length === 0 ? [chunk] : [...this.#undecided, chunk];
      this.#undecided = [];
      for (const part of chunks) this.#parse(part);
    } catch (error) {
      console.error("llm meter: parsing failed", error);
      this.#failed = true;
    }
  }

  #parse(chunk: Uint8Array): void {
    if (this.#kind === "sse") {
      this.#sse ??= new SseParser();
      for (const event of this.#sse.push(chunk)) this.#reader.event(event.data);
    } else if (this.#jsonBytes + chunk.byteLength <= this.#maxJsonBytes) {
      this.#json.push(chunk);
      this.#jsonBytes += chunk.byteLength;
    } else {
      this.#json = [];
      this.#failed = true;
    }
  }

  /** `end` undefined: the body ended by itself. */
  finish(end: MeterEnd | undefined): MeteredUsage {
    const reader = this.#reader;
    if (!this.#failed) {
      try {
        if (this.#sse !== undefined) {
          const rest = this.#sse.end();
          for (const event of rest.events) reader.event(event.data);
          // An event the stream never ended is read only if it is whole (the final usage chunk without its blank line).
          if (rest.unterminated !== undefined && isWhole(rest.unterminated.data)) reader.event(rest.unterminated.data);
        } else if (this.#kind === "json") reader.body(concatText(this.#json));
      } catch (error) {
        console.error("llm meter: parsing failed", error);
      }
    }
    this.#json = [];
    const outcome: MeterEnd = end ?? (reader.error !== undefined ? "upstream_error" : reader.finished ? "completed" : "cut");
    // A JSON body that could not be read whole: all its bytes may be output.
    const delivered =
      this.#kind !== "sse" && !reader.finished && reader.delivered.bytes > 0
        ? { ...reader.delivered, outputBytes: reader.delivered.bytes, outputBlocks: 1 }
        : reader.delivered;
    const estimatedOutputTokens = estimateOutputTokens(delivered, this.#options.maxOutputTokens);
    const reported: ReportedUsage = reader.usage;
    const input = reader.inputReported
      ? { inputTokens: reported.inputTokens, cachedTokens: reported.cachedTokens, cacheWriteTokens: reported.cacheWriteTokens }
      : { inputTokens: this.#options.estimatedInputTokens ?? 0, cachedTokens: 0, cacheWriteTokens: 0 };
    // A count the upstream reported before the end (Anthropic's message_start) is a floor, not the total.
    const outputTokens = reader.outputReported ? reported.outputTokens : Math.max(reported.outputTokens, estimatedOutputTokens);
    const source = reader.inputReported && reader.outputReported ? "reported" : reader.inputReported ? "partial" : "estimated";
    return {
      end: outcome,
      format: reader.format,
      streamed: this.#kind === "sse",
      source,
      ...input,
      outputTokens,
      reasoningTokens: reported.reasoningTokens,
      estimatedOutputTokens,
      delivered: { ...reader.delivered },
      ...(reader.model === undefined ? {} : { model: reader.model }),
      ...(reader.error === undefined ? {} : { error: reader.error }),
    };
  }
}

/** Without a telling Content-Type: a body that starts with `{` is JSON, anything else an event stream. */
function sniff(chunk: Uint8Array): "sse" | "json" | undefined {
  for (const byte of chunk) {
    if (byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09) continue;
    return byte === 0x7b ? "json" : "sse";
  }
  return undefined;
}

function concatText(chunks: Uint8Array[]): string {
  const decoder = new TextDecoder();
  let text = "";
  for (const chunk of chunks) text += decoder.decode(chunk, { stream: true });
  return text + decoder.decode();
}

function isWhole(data: string): boolean {
  if (data.trim() === "[DONE]") return true;
  try {
    JSON.parse(data);
    return true;
  } catch {
    return false;
  }
}
