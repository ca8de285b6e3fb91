import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DEFAULT_ATTACHMENT_TOKENS, estimateLlmRequest, FIXED_TOKENS, PER_MESSAGE_TOKENS, TOOL_PROMPT_TOKENS } from "../../rpc/llm-quote";
import { utf8Length } from "../../rpc/llm-sse";

const OPTIONS = { defaultMaxOutputTokens: 1_024 };

/**
 * The most tokens any tokenizer whose tokens are at least one byte can make of a chat request
 * (OpenAI's documented accounting: 3 tokens per message, 1 per name, 3 to prime the reply, and
 * the content's tokens, each at least one UTF-8 byte): what the estimate must never be below.
 */
function tokenBound(messages: { role: string; content: string; name?: string }[]): number {
  return messages.reduce((sum, m) => sum + 4 + utf8Length(m.role) + utf8Length(m.content) + (m.name ? 1 + utf8Length(m.name) : 0), 3);
}

describe("estimateLlmRequest: the input bound", () => {
  it("is never below the bytes of the prompt plus OpenAI's per-message tokens, whatever the text (property)", () => {
    const message = fc.record({
      role: fc.constantFrom("system", "user", "assistant"),
      content: fc.string({ unit: "binary", maxLength: 200 }),
      name: fc.option(fc.string({ unit: "grapheme", minLength: 1, maxLength: 10 }), { nil: undefined }),
    });
    fc.assert(
      fc.property(fc.array(message, { maxLength: 8 }), (messages) => {
        const body = JSON.parse(JSON.stringify({ model: "gpt-4o", messages }));
        const estimate = estimateLlmRequest("openai", body, OPTIONS);
        expect(estimate.inputTokens).toBeGreaterThanOrEqual(tokenBound(messages));
        const anthropic = estimateLlmRequest("anthropic", { ...body, system: "be brief" }, OPTIONS);
        expect(anthropic.inputTokens).toBeGreaterThanOrEqual(tokenBound(messages) + utf8Length("be brief") + 4);
      }),
      { numRuns: 300 },
    );
  });

  it("counts every string and key of the prompt fields, plus the per-message and fixed allowances", () => {
    const body = { model: "gpt-4o", messages: [{ role: "user", content: "Hello, world" }], temperature: 0.2, stream: true };
    // "messages" + "role" + "user" + "content" + "Hello, world"; temperature and stream are not prompt.
    const bytes = 8 + 4 + 4 + 7 + 12;
    expect(estimateLlmRequest("openai", body, OPTIONS)).toEqual({
      format: "openai",
      model: "gpt-4o",
      stream: true,
      inputTokens: bytes + PER_MESSAGE_TOKENS + FIXED_TOKENS,
      maxOutputTokens: 1_024,
      cacheWrites: false,
      attachments: 0,
    });
  });

  it("adds the tool preamble, and the hidden definitions of Anthropic's server tools", () => {
    const tool = { name: "get_weather", description: "Weather of a city", input_schema: { type: "object", properties: {} } };
    const plain = estimateLlmRequest("anthropic", { messages: [] }, OPTIONS).inputTokens;
    const withTool = estimateLlmRequest("anthropic", { messages: [], tools: [tool] }, OPTIONS).inputTokens;
    // "tools" and the tool's keys and strings: name get_weather description Weather of a city input_schema type object properties.
    expect(withTool - plain).toBe(TOOL_PROMPT_TOKENS + 5 + (4 + 11) + (11 + 17) + 12 + (4 + 6) + 10);
    const server = estimateLlmRequest("anthropic", { messages: [], tools: [{ type: "bash_20250124", name: "bash" }] }, OPTIONS);
    expect(server.inputTokens - plain).toBeGreaterThanOrEqual(1_500);
  });

  it("counts an image at the attachment allowance, not its base64 size; a PDF at the allowance plus its bytes", () => {
    const image = { type: "image", source: { type: "base64", media_type: "image/png", data: "A".repeat(100_000) } };
    const withImage = estimateLlmRequest("anthropic", { messages: [{ role: "user", content: [image] }] }, OPTIONS);
    const without = estimateLlmRequest("anthropic", { messages: [{ role: "user", content: [] }] }, OPTIONS);
    expect(withImage.inputTokens - without.inputTokens).toBe(DEFAULT_ATTACHMENT_TOKENS);
    expect(withImage.attachments).toBe(1);
    const url = { type: "image_url", image_url: { url: "https://example.com/cat.png", detail: "high" } };
    const openai = estimateLlmRequest("openai", { messages: [{ role: "user", content: [url] }] }, { ...OPTIONS, attachmentTokens: 1_445 });
    expect(openai).toMatchObject({ attachments: 1 });
    expect(openai.inputTokens).toBeGreaterThanOrEqual(1_445);
    const pdf = { type: "document", source: { type: "base64", media_type: "application/pdf", data: "B".repeat(5_000) } };
    const withPdf = estimateLlmRequest("anthropic", { messages: [{ role: "user", content: [pdf] }] }, OPTIONS);
    expect(withPdf.inputTokens - without.inputTokens).toBe(DEFAULT_ATTACHMENT_TOKENS + 5_000);
  });

  it("notices cache_control anywhere in the prompt: its tokens may be billed as cache writes", () => {
    const cached = { type: "text", text: "a long system prompt", cache_control: { type: "ephemeral" } };
    expect(estimateLlmRequest("anthropic", { system: [cached], messages: [] }, OPTIONS).cacheWrites).toBe(true);
    expect(estimateLlmRequest("anthropic", { system: "plain", messages: [] }, OPTIONS).cacheWrites).toBe(false);
  });

  it("treats a body that is not an object as an empty prompt", () => {
    expect(estimateLlmRequest("openai", "not json", OPTIONS)).toMatchObject({ inputTokens: FIXED_TOKENS, model: undefined, stream: false });
  });
});

describe("estimateLlmRequest: the output bound", () => {
  it("takes max_completion_tokens over max_tokens, times n, plus predicted output; else the default", () => {
    const output = (body: object) => estimateLlmRequest("openai", { messages: [], ...body }, OPTIONS).maxOutputTokens;
    expect(output({})).toBe(1_024);
    expect(output({ max_tokens: 50 })).toBe(50);
    expect(output({ max_tokens: 50, max_completion_tokens: 70 })).toBe(70);
    expect(output({ max_completion_tokens: 70, n: 3 })).toBe(210);
    expect(output({ max_tokens: -1 })).toBe(1_024);
    expect(output({ max_tokens: 1.5 })).toBe(1_024);
    expect(output({ max_tokens: 10, prediction: { type: "content", content: "abc" } })).toBe(13);
  });

  it("takes Anthropic's max_tokens, which bounds thinking too; n and max_completion_tokens mean nothing there", () => {
    const output = (body: object) => estimateLlmRequest("anthropic", { messages: [], ...body }, OPTIONS).maxOutputTokens;
    expect(output({ max_tokens: 4_000, thinking: { type: "enabled", budget_tokens: 2_000 } })).toBe(4_000);
    expect(output({ max_completion_tokens: 70, n: 3 })).toBe(1_024);
  });
});
