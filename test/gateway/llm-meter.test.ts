import { describe, expect, it } from "vitest";
import { type MeteredUsage, type MeterOptions, meterLlmResponse, meterLlmStream, utf8Length } from "../../rpc/llm-meter";
import {
  ANTHROPIC_BODY,
  ANTHROPIC_STREAM,
  ANTHROPIC_TEXT,
  ANTHROPIC_THINKING_ERROR_STREAM,
  ANTHROPIC_USAGE,
  eventBoundaries,
  OPENAI_BODY,
  OPENAI_REASONING_STREAM,
  OPENAI_REASONING_USAGE,
  OPENAI_STREAM,
  OPENAI_TEXT,
  OPENAI_TOOL_STREAM,
  OPENAI_USAGE,
} from "../fixtures/llm-transcripts";

/**
 * The stream meter (rpc/llm-meter.ts) on recorded transcripts, in workerd, where gateways run
 * it. test/node/llm-meter-node.test.ts runs a transcript through it in Node too.
 */
const encoder = new TextEncoder();
const SSE = "text/event-stream";
const OPTIONS: MeterOptions = { estimatedInputTokens: 500, maxOutputTokens: 100 };

type Ending = "close" | "cancel" | "error";

/** An upstream body that yields `chunks`, then closes, fails, or waits (for the client to cancel). */
function upstream(chunks: Uint8Array[], ending: Ending = "close"): ReadableStream<Uint8Array> {
  let next = 0;
  return new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        if (next < chunks.length) controller.enqueue(chunks[next++]!);
        else if (ending === "close") controller.close();
        else if (ending === "error") controller.error(new Error("connection reset"));
        else return new Promise<void>(() => {}); // an upstream still thinking
      },
    },
    { highWaterMark: 0 },
  );
}

/** Runs chunks through the meter the way a client reads them, and returns what it got and the usage. */
async function run(chunks: Uint8Array[], contentType: string | null, options = OPTIONS, ending: Ending = "close") {
  const metered = meterLlmStream(upstream(chunks, ending), contentType, options);
  const reader = metered.body!.getReader();
  const received: Uint8Array[] = [];
  for (let i = 0; ending !== "cancel" || i < chunks.length; i += 1) {
    let result: ReadableStreamReadResult<Uint8Array>;
    try {
      result = await reader.read();
    } catch {
      break;
    }
    if (result.done) break;
    received.push(result.value);
  }
  if (ending === "cancel") await reader.cancel("client went away");
  return { received: new TextDecoder().decode(concat(received)), usage: await metered.usage };
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.byteLength;
  }
  return out;
}

/** The transcript's bytes split at the given offsets. */
function split(text: string, cuts: number[]): Uint8Array[] {
  const bytes = encoder.encode(text);
  const edges = [0, ...cuts, bytes.byteLength];
  return edges.slice(1).map((end, i) => bytes.slice(edges[i], end));
}

const tokens = (usage: MeteredUsage) => ({
  inputTokens: usage.inputTokens,
  cachedTokens: usage.cachedTokens,
  cacheWriteTokens: usage.cacheWriteTokens,
  outputTokens: usage.outputTokens,
  reasoningTokens: usage.reasoningTokens,
});

describe("the LLM meter: usage read from complete streams and bodies", () => {
  it("reads the OpenAI include_usage chunk: prompt tokens less cached ones are input, cached tokens apart", async () => {
    const { received, usage } = await run([encoder.encode(OPENAI_STREAM)], SSE);
    expect(received).toBe(OPENAI_STREAM);
    expect(usage).toMatchObject({ end: "completed", format: "openai", streamed: true, source: "reported", model: "gpt-4o-2024-08-06" });
    expect(tokens(usage)).toEqual(OPENAI_USAGE);
    expect(usage.delivered).toEqual({
      bytes: utf8Length(OPENAI_STREAM),
      events: 13,
      outputEvents: 9,
      outputBytes: utf8Length(OPENAI_TEXT),
      outputBlocks: 1,
    });
    expect(usage.estimatedOutputTokens).toBe(utf8Length(OPENAI_TEXT) + 8);
  });

  it("reads choices: null, CRLF lines, comments, a data field over two lines, and reasoning tokens inside completion tokens", async () => {
    const { usage } = await run([encoder.encode(OPENAI_REASONING_STREAM)], SSE);
    expect(usage).toMatchObject({ end: "completed", source: "reported", model: "o3-mini-2025-01-31" });
    expect(tokens(usage)).toEqual(OPENAI_REASONING_USAGE);
    expect(usage.delivered).toMatchObject({ events: 6, outputEvents: 2, outputBytes: utf8Length("The answer is 42.") });
  });

  it("counts a streamed tool call's name and arguments as output", async () => {
    const { usage } = await run([encoder.encode(OPENAI_TOOL_STREAM)], SSE);
    expect(usage).toMatchObject({ end: "completed", source: "reported", inputTokens: 82, outputTokens: 17 });
    expect(usage.delivered).toMatchObject({ outputBytes: utf8Length('get_weather{"location":"Paris"}'), outputBlocks: 1 });
  });

  it("keeps Anthropic's latest cumulative message_delta usage (15), never the sum (28)", async () => {
    const { received, usage } = await run([encoder.encode(ANTHROPIC_STREAM)], SSE);
    expect(received).toBe(ANTHROPIC_STREAM);
    expect(usage).toMatchObject({ end: "completed", format: "anthropic", source: "reported", model: "claude-sonnet-4-5-20250929" });
    expect(tokens(usage)).toEqual(ANTHROPIC_USAGE);
    expect(usage.delivered).toMatchObject({ events: 10, outputEvents: 3, outputBytes: utf8Length(ANTHROPIC_TEXT), outputBlocks: 1 });
  });

  it("ends as upstream_error on an Anthropic error event, with the input reported and the output estimated", async () => {
    const { usage } = await run([encoder.encode(ANTHROPIC_THINKING_ERROR_STREAM)], SSE, { maxOutputTokens: 1_000 });
    const output = utf8Length("The user wants the weather.") + utf8Length("get_weather") + utf8Length('{"location": "Paris"}');
    expect(usage).toMatchObject({
      end: "upstream_error",
      source: "partial",
      error: "Overloaded",
      inputTokens: 472,
      outputTokens: output + 16,
    });
    expect(usage.delivered).toMatchObject({ outputBlocks: 2, outputBytes: output });
  });

  it("reads non-streamed JSON bodies of both formats, with or without a Content-Type", async () => {
    for (const contentType of ["application/json", null]) {
      const openai = await run([encoder.encode(OPENAI_BODY)], contentType);
      expect(openai.received).toBe(OPENAI_BODY);
      expect(openai.usage).toMatchObject({ end: "completed", format: "openai", streamed: false, source: "reported" });
      expect(tokens(openai.usage)).toEqual(OPENAI_USAGE);
      expect(openai.usage.delivered.outputBytes).toBe(utf8Length(OPENAI_TEXT));
      const anthropic = await run([encoder.encode(ANTHROPIC_BODY)], contentType);
      expect(anthropic.usage).toMatchObject({ end: "completed", format: "anthropic", streamed: false, source: "reported" });
      expect(tokens(anthropic.usage)).toEqual(ANTHROPIC_USAGE);
    }
  });

  it("ends as upstream_error on an error body, and resolves at once for a response without a body", async () => {
    const error = JSON.stringify({ error: { message: "Rate limit reached", type: "requests", code: "rate_limit_exceeded" } });
    const { usage } = await run([encoder.encode(error)], "application/json");
    expect(usage).toMatchObject({ end: "upstream_error", error: "Rate limit reached", source: "estimated", inputTokens: 500 });
    const empty = meterLlmResponse(new Response(null, { status: 204 }), OPTIONS);
    expect(empty.response.status).toBe(204);
    expect(await empty.usage).toMatchObject({ end: "cut", source: "estimated", outputTokens: 0, delivered: { bytes: 0 } });
  });
});

describe("the LLM meter: split and cut streams", () => {
  const transcripts = { OPENAI_STREAM, OPENAI_REASONING_STREAM, OPENAI_TOOL_STREAM, ANTHROPIC_STREAM, OPENAI_BODY, ANTHROPIC_BODY };

  it("reads the same usage and passes the same bytes when the transcript is split at every byte boundary", async () => {
    for (const [name, transcript] of Object.entries(transcripts)) {
      const contentType = name.endsWith("BODY") ? "application/json" : SSE;
      const whole = (await run([encoder.encode(transcript)], contentType)).usage;
      const length = encoder.encode(transcript).byteLength;
      for (let cut = 1; cut < length; cut += 1) {
        const { received, usage } = await run(split(transcript, [cut]), contentType);
        expect(received, `${name} split at ${cut}`).toBe(transcript);
        expect(usage, `${name} split at ${cut}`).toEqual(whole);
      }
      const bytes = Array.from({ length: length - 1 }, (_, i) => i + 1);
      expect((await run(split(transcript, bytes), contentType)).usage, `${name} byte by byte`).toEqual(whole);
    }
  });

  it("splits inside multi-byte characters and a CRLF pair without losing or doubling anything", async () => {
    const text = "Grüße, 世界 🎉";
    const stream = `data: {"choices":[{"index":0,"delta":{"content":${JSON.stringify(text)}}}]}\r\n\r\ndata: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\r\n\r\n`;
    const length = encoder.encode(stream).byteLength;
    for (let cut = 1; cut < length; cut += 1) {
      const { usage } = await run(split(stream, [cut]), SSE);
      expect(usage.delivered, `split at ${cut}`).toMatchObject({ events: 2, outputBytes: utf8Length(text) });
    }
    expect(utf8Length(text)).toBe(encoder.encode(text).byteLength);
  });

  it("is completed without [DONE] when the usage chunk came, even unterminated", async () => {
    const withoutDone = OPENAI_STREAM.replace("data: [DONE]\n\n", "");
    for (const transcript of [withoutDone, withoutDone.slice(0, -2)]) {
      const { usage } = await run([encoder.encode(transcript)], SSE);
      expect(usage).toMatchObject({ end: "completed", source: "reported" });
      expect(tokens(usage)).toEqual(OPENAI_USAGE);
    }
  });

  it("charges an OpenAI stream cut at every event boundary for the text delivered (closed, cancelled or failed)", async () => {
    const pieces = ["Hello", "!", " How", " can", " I", " help", " you", " today", "?"];
    const boundaries = [0, ...eventBoundaries(OPENAI_STREAM)];
    for (const [k, offset] of boundaries.entries()) {
      for (const ending of ["close", "cancel", "error"] as const) {
        const prefix = OPENAI_STREAM.slice(0, offset);
        const { received, usage } = await run(offset === 0 ? [] : [encoder.encode(prefix)], SSE, OPTIONS, ending);
        const where = `${ending} after ${k} events`;
        expect(received, where).toBe(prefix);
        const text = pieces.slice(0, Math.max(0, Math.min(9, k - 1))).join("");
        const estimate = text === "" ? 0 : utf8Length(text) + 8;
        expect(usage.estimatedOutputTokens, where).toBe(estimate);
        const end = ending === "cancel" ? "cancelled" : ending === "error" ? "upstream_error" : k >= 11 ? "completed" : "cut";
        expect(usage.end, where).toBe(end);
        if (k >= 12) expect(tokens(usage), where).toEqual(OPENAI_USAGE);
        else expect(usage, where).toMatchObject({ source: "estimated", inputTokens: 500, cachedTokens: 0, outputTokens: estimate });
        expect(usage.delivered.bytes, where).toBe(utf8Length(prefix));
      }
    }
  });

  it("charges an Anthropic stream cut at every event boundary: input from message_start, output the latest count or the estimate", async () => {
    const boundaries = [0, ...eventBoundaries(ANTHROPIC_STREAM)];
    const deltas = ["Hello", "! How can I", " help you today?"];
    for (const [k, offset] of boundaries.entries()) {
      for (const ending of ["close", "cancel", "error"] as const) {
        const { usage } = await run(offset === 0 ? [] : split(ANTHROPIC_STREAM.slice(0, offset), []), SSE, OPTIONS, ending);
        const where = `${ending} after ${k} events`;
        const text = deltas.slice(0, Math.max(0, Math.min(3, k - 3))).join("");
        const estimate = text === "" ? 0 : utf8Length(text) + 8;
        if (k === 0) expect(usage, where).toMatchObject({ source: "estimated", inputTokens: 500, outputTokens: 0 });
        else expect(usage, where).toMatchObject({ inputTokens: 25, cachedTokens: 2_048, cacheWriteTokens: 512 });
        if (k >= 1 && k < 8) expect(usage, where).toMatchObject({ source: "partial", outputTokens: Math.max(1, estimate) });
        if (k === 8) expect(usage, where).toMatchObject({ source: "reported", outputTokens: 12 });
        if (k >= 9) expect(usage, where).toMatchObject({ source: "reported", outputTokens: 15 });
        const end = ending === "cancel" ? "cancelled" : ending === "error" ? "upstream_error" : k === 10 ? "completed" : "cut";
        expect(usage.end, where).toBe(end);
      }
    }
  });

  it("estimates a cut JSON body from its bytes, within maxOutputTokens", async () => {
    const prefix = OPENAI_BODY.slice(0, 60);
    const { usage } = await run([encoder.encode(prefix)], "application/json", { estimatedInputTokens: 7, maxOutputTokens: 1_000 });
    expect(usage).toMatchObject({ end: "cut", source: "estimated", inputTokens: 7, outputTokens: 60 + 8 });
    const capped = await run([encoder.encode(prefix)], "application/json", { maxOutputTokens: 20 }, "cancel");
    expect(capped.usage).toMatchObject({ end: "cancelled", outputTokens: 20 });
  });
});

describe("the LLM meter: pass-through", () => {
  it("hands each chunk on as soon as it arrives, reading the upstream only when the client reads", async () => {
    let pulls = 0;
    let push!: (chunk: Uint8Array) => void;
    const body = new ReadableStream<Uint8Array>(
      {
        pull(controller) {
          pulls += 1;
          return new Promise<void>((resolve) => {
            push = (chunk) => {
              controller.enqueue(chunk);
              resolve();
            };
          });
        },
      },
      { highWaterMark: 0 },
    );
    const metered = meterLlmResponse(new Response(body, { headers: { "Content-Type": SSE, "X-Upstream": "1" } }), OPTIONS);
    expect(metered.response.headers.get("X-Upstream")).toBe("1");
    const reader = metered.response.body!.getReader();
    expect(pulls).toBe(0);
    const first = reader.read();
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(pulls).toBe(1);
    const chunk = encoder.encode(OPENAI_STREAM.slice(0, 40));
    push(chunk);
    // The first bytes reach the client while the upstream is still open: nothing waits for an event's end.
    const got = await first;
    expect(got.value).toEqual(chunk);
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(pulls).toBe(1);
    await reader.cancel();
    expect(await metered.usage).toMatchObject({ end: "cancelled", delivered: { bytes: 40, events: 0 } });
  });
});
