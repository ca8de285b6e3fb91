import { describe, expect, it } from "vitest";
import { meterLlmResponse } from "../../rpc";
import { ANTHROPIC_STREAM, ANTHROPIC_USAGE, OPENAI_STREAM, OPENAI_USAGE } from "../fixtures/llm-transcripts";

/** The meter has no Workers-only imports: the same transcripts through Node's own Response and streams. */
describe("the LLM meter in Node", () => {
  it("passes a stream through and reads its usage, in both formats", async () => {
    for (const [transcript, usage] of [
      [OPENAI_STREAM, OPENAI_USAGE],
      [ANTHROPIC_STREAM, ANTHROPIC_USAGE],
    ] as const) {
      const bytes = new TextEncoder().encode(transcript);
      const chunks = [bytes.slice(0, 101), bytes.slice(101, 102), bytes.slice(102)];
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          for (const chunk of chunks) controller.enqueue(chunk);
          controller.close();
        },
      });
      const metered = meterLlmResponse(new Response(body, { headers: { "Content-Type": "text/event-stream" } }));
      expect(await metered.response.text()).toBe(transcript);
      expect(await metered.usage).toMatchObject({ end: "completed", source: "reported", ...usage });
    }
  });

  it("resolves as cancelled when the reader cancels", async () => {
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(OPENAI_STREAM.slice(0, 500)));
      },
    });
    const metered = meterLlmResponse(new Response(body, { headers: { "Content-Type": "text/event-stream" } }), { estimatedInputTokens: 9 });
    const reader = metered.response.body!.getReader();
    await reader.read();
    await reader.cancel();
    expect(await metered.usage).toMatchObject({ end: "cancelled", source: "estimated", inputTokens: 9, delivered: { bytes: 500 } });
  });
});
