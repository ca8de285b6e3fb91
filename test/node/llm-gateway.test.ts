// LLM traffic end to end: tollgate, the example gateway and the fake upstream, each under its
// own `wrangler dev` (the gateway bound to tollgate through a dev registry of the test's own),
// driven from Node with real fetch and AbortController, as a client of an LLM API would.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { outputText, promptTokens } from "../../examples/llm-upstream/src/tokens";
import { connect, type Entry, estimateLlmRequest, type LlmFormat, type Price, utf8Length } from "../../rpc";
import { type DevServer, startTollgate } from "./wrangler-dev";

const TOKEN = "llm-e2e-admin-token-7d41c9";
const UPSTREAM_KEY = "upstream-secret-3b9e";
const DEFAULT_MAX_OUTPUT = 4_096;
const root = join(import.meta.dirname, "..", "..");
/** One credit per input or output token, half a credit per cached token, two per cache-write token. */
const PRICES: Price[] = [
  { operation: "llm", model: "*", inputTokens: 1_000_000, outputTokens: 1_000_000, cachedTokens: 500_000, cacheWriteTokens: 2_000_000 },
];
const ROUTES: Record<LlmFormat, string> = { openai: "/v1/chat/completions", anthropic: "/v1/messages" };

let registry: string;
const servers: DevServer[] = [];
let tollgate: DevServer;
let upstream: DevServer;
let gateway: DevServer;

beforeAll(async () => {
  registry = mkdtempSync(join(tmpdir(), "tollgate-registry-"));
  const env = { WRANGLER_REGISTRY_PATH: registry };
  [tollgate, upstream] = await Promise.all([
    startTollgate({ vars: { TOLLGATE_ADMIN_TOKEN: TOKEN }, env }),
    startTollgate({ cwd: join(root, "examples", "llm-upstream"), vars: { UPSTREAM_KEY, DELAY_MS: "0" }, env }),
  ]);
  servers.push(tollgate, upstream);
  gateway = await startTollgate({
    cwd: join(root, "examples", "gateway"),
    vars: { LLM_UPSTREAM_URL: upstream.url, LLM_UPSTREAM_KEY: UPSTREAM_KEY, LLM_DEFAULT_MAX_OUTPUT_TOKENS: String(DEFAULT_MAX_OUTPUT) },
    env,
  });
  servers.push(gateway);
  await settledDown();
}, 240_000);

afterAll(async () => {
  await Promise.all(servers.map((server) => server.stop()));
  if (registry) rmSync(registry, { recursive: true, force: true });
});

/** wrangler dev reloads once after its first build: wait until the gateway answers through tollgate, twice, a second apart. */
async function settledDown(): Promise<void> {
  let good = 0;
  for (let attempt = 0; attempt < 120 && good < 2; attempt += 1) {
    const ok = await fetch(`${gateway.url}/hello`).then(
      (r) => r.status === 200,
      () => false,
    );
    good = ok ? good + 1 : 0;
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  }
  if (good < 2) throw new Error("the gateway never reached tollgate");
}

const credits = () => connect(`${tollgate.url}/rpc`, { token: TOKEN }).credits();

async function customer(amount: number) {
  const accountId = `llm-${Math.random().toString(16).slice(2, 10)}`;
  await credits().createAccount({ accountId, name: "LLM customer" });
  if (amount > 0) await credits().grant({ accountId, amount, reason: "welcome", idempotencyKey: "welcome" });
  await credits().setPrices({ accountId, prices: PRICES });
  const { key } = await credits().createKey({ accountId, name: "app", scopes: ["api.*"] });
  return { accountId, key };
}

interface Call {
  format: LlmFormat;
  body: Record<string, unknown>;
  key: string;
  fake?: Record<string, string>;
  signal?: AbortSignal;
  headers?: Record<string, string>;
}

function llm({ format, body, key, fake = {}, signal, headers: extra = {} }: Call): Promise<Response> {
  const auth: Record<string, string> = format === "anthropic" ? { "x-api-key": key } : { Authorization: `Bearer ${key}` };
  const headers = {
    "Content-Type": "application/json",
    ...extra,
    ...auth,
    ...Object.fromEntries(Object.entries(fake).map(([k, v]) => [`x-fake-${k}`, v])),
  };
  return fetch(`${gateway.url}${ROUTES[format]}`, { method: "POST", headers, body: JSON.stringify(body), ...(signal ? { signal } : {}) });
}

function chat(stream: boolean, maxTokens: number) {
  return { model: "fake-large", stream, max_tokens: maxTokens, messages: [{ role: "user", content: "say something metered, please" }] };
}

/** The hold the gateway places for `body`, from the same estimator. */
function holdOf(format: LlmFormat, body: object): { hold: number; input: number } {
  const estimate = estimateLlmRequest(format, body, { defaultMaxOutputTokens: DEFAULT_MAX_OUTPUT });
  return { hold: estimate.inputTokens + estimate.maxOutputTokens, input: estimate.inputTokens };
}

/** The settle runs after the response (waitUntil): wait for the hold's closing entry. */
async function settlement(accountId: string): Promise<{ closing: Entry; entries: Entry[] }> {
  for (let attempt = 0; attempt < 150; attempt += 1) {
    const entries = (await credits().entries({ accountId })).items;
    const closing = entries.find((e) => e.kind === "commit" || e.kind === "void" || e.kind === "release");
    if (closing !== undefined) return { closing, entries };
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`no settle for ${accountId}`);
}

async function upstreamCalls(tag: string): Promise<number> {
  return ((await (await fetch(`${upstream.url}/calls?tag=${tag}`)).json()) as { calls: number }).calls;
}

/** Reads SSE text until `events` content events have arrived (or the stream ends). */
async function readContentEvents(response: Response, events: number): Promise<string> {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let text = "";
  while ((text.match(/"(content|text)":"[^"]/g) ?? []).length < events) {
    const { done, value } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
  }
  return text;
}

describe("LLM traffic through the example gateway (wrangler dev)", () => {
  it("charges a completed OpenAI stream exactly from its usage, and holds the quote meanwhile", async () => {
    const { accountId, key } = await customer(10_000);
    const body = chat(true, 50);
    const response = await llm({ format: "openai", body, key, fake: { "output-tokens": "20", "chunk-tokens": "2" } });
    expect(response.status).toBe(200);
    expect(response.headers.get("Content-Type")).toContain("text/event-stream");
    expect(Number(response.headers.get("X-Credits-Held"))).toBe(holdOf("openai", body).hold);
    const text = await response.text();
    // The gateway asked for include_usage: the final usage chunk, then [DONE].
    expect(text).toContain('"choices":[],"usage":{"prompt_tokens"');
    expect(text.trimEnd().endsWith("data: [DONE]")).toBe(true);
    const { closing, entries } = await settlement(accountId);
    const prompt = promptTokens(body);
    expect(closing).toMatchObject({
      kind: "commit",
      amount: prompt + 20,
      usage: { inputTokens: prompt, outputTokens: 20, model: "fake-large" },
    });
    expect(entries.map((e) => e.kind)).toEqual(["grant", "reserve", "commit"]);
    expect(await credits().balance({ accountId })).toMatchObject({ held: 0, consumed: prompt + 20, available: 10_000 - prompt - 20 });
  });

  it("charges a completed Anthropic stream (x-api-key) for input, cache reads, cache writes and output at their prices", async () => {
    const { accountId, key } = await customer(10_000);
    const body = chat(true, 64);
    const response = await llm({
      format: "anthropic",
      body,
      key,
      fake: { "output-tokens": "30", "cached-tokens": "4", "cache-write-tokens": "3" },
    });
    expect(response.status).toBe(200);
    expect(await response.text()).toContain("event: message_stop");
    const { closing } = await settlement(accountId);
    const input = promptTokens(body) - 4 - 3;
    expect(closing).toMatchObject({
      kind: "commit",
      usage: { inputTokens: input, cachedTokens: 4, cacheWriteTokens: 3, outputTokens: 30 },
    });
    expect(closing.amount).toBe(input + 4 / 2 + 3 * 2 + 30);
  });

  it("settles a non-streamed response before answering, with the charge in its headers", async () => {
    for (const format of ["openai", "anthropic"] as const) {
      const { accountId, key } = await customer(10_000);
      const body = chat(false, 64);
      const response = await llm({ format, body, key, fake: { "output-tokens": "12" }, headers: { "Accept-Encoding": "identity" } });
      expect(response.status).toBe(200);
      const charged = promptTokens(body) + 12;
      expect(response.headers.get("X-Credits-Charged")).toBe(String(charged));
      expect(Number(response.headers.get("X-Credits-Held"))).toBe(holdOf(format, body).hold);
      // The gateway relays the decoded body: it must not keep the upstream's Content-Encoding for a client that wants none.
      expect(response.headers.get("Content-Encoding")).toBeNull();
      expect(await response.json()).toHaveProperty("usage");
      expect((await credits().balance({ accountId })).consumed).toBe(charged);
    }
  });

  it("charges a stream the client cuts after N chunks for what was delivered, capped at the hold, and closes the hold", async () => {
    const { accountId, key } = await customer(10_000);
    const body = chat(true, 200);
    const controller = new AbortController();
    const response = await llm({
      format: "openai",
      body,
      key,
      fake: { "output-tokens": "100", "delay-ms": "150" },
      signal: controller.signal,
    });
    expect(response.status).toBe(200);
    await readContentEvents(response, 3);
    controller.abort();
    const { closing, entries } = await settlement(accountId);
    const { hold, input } = holdOf("openai", body);
    // No usage arrived: the input is the estimate, the output the bound of the text the gateway passed on
    // (the 3 chunks the client read, and the few already in flight when it hung up).
    const possible = [3, 4, 5, 6, 7].map((n) => input + utf8Length(outputText(0, n)) + 8);
    expect(possible).toContain(closing.amount);
    expect(closing).toMatchObject({ kind: "commit", usage: { inputTokens: input } });
    expect(closing.amount).toBeLessThan(hold);
    expect(entries.some((e) => e.kind === "overrun")).toBe(false);
    expect(await credits().balance({ accountId })).toMatchObject({ held: 0, consumed: closing.amount });
    expect(await credits().hold({ accountId, holdId: closing.holdId! })).toMatchObject({ status: "committed" });
  });

  it("charges a stream the upstream cuts (closed or broken) for the text delivered, to the token", async () => {
    for (const [format, mode] of [
      ["openai", "close"],
      ["openai", "error"],
      ["anthropic", "close"],
    ] as const) {
      const { accountId, key } = await customer(10_000);
      const body = chat(true, 64);
      const response = await llm({ format, body, key, fake: { "output-tokens": "30", "cut-after": "5", "cut-mode": mode } });
      expect(response.status).toBe(200);
      await response.text().catch(() => "the connection broke");
      const { closing } = await settlement(accountId);
      const output = utf8Length(outputText(0, 5)) + 8;
      // Anthropic reported the input in message_start; OpenAI's usage never came, so its input is the estimate.
      const input = format === "anthropic" ? promptTokens(body) : holdOf(format, body).input;
      expect(closing, `${format} ${mode}`).toMatchObject({
        kind: "commit",
        amount: input + output,
        usage: { inputTokens: input, outputTokens: output },
      });
      expect((await credits().balance({ accountId })).held).toBe(0);
    }
  });

  it("answers 402 before any upstream call when the quote exceeds the balance", async () => {
    const { accountId, key } = await customer(100);
    const tag = `poor-${accountId}`;
    const body = chat(true, 1_000);
    expect(holdOf("openai", body).hold).toBeGreaterThan(100);
    const response = await llm({ format: "openai", body, key, fake: { tag } });
    expect(response.status).toBe(402);
    expect(await response.json()).toMatchObject({ error: { code: "INSUFFICIENT_CREDITS" } });
    expect(await upstreamCalls(tag)).toBe(0);
    expect((await credits().entries({ accountId })).items.map((e) => e.kind)).toEqual(["grant"]);
  });

  it("refuses a model the price book does not cover, holding nothing and calling no upstream", async () => {
    const { accountId, key } = await customer(10_000);
    await credits().setPrices({ accountId, prices: [{ ...PRICES[0]!, model: "fake-small" }] });
    const tag = `unpriced-${accountId}`;
    const response = await llm({ format: "anthropic", body: chat(true, 64), key, fake: { tag } });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ type: "error", error: { type: "MODEL_NOT_PRICED" } });
    expect(await upstreamCalls(tag)).toBe(0);
    expect((await credits().balance({ accountId })).held).toBe(0);
  });

  it("admits one of two concurrent streams on an account that can afford only one hold", async () => {
    const body = chat(true, 100);
    const { hold } = holdOf("openai", body);
    const { accountId, key } = await customer(hold + Math.floor(hold / 2));
    const tag = `pair-${accountId}`;
    const fake = { tag, "output-tokens": "10", "delay-ms": "50" };
    const responses = await Promise.all([llm({ format: "openai", body, key, fake }), llm({ format: "openai", body, key, fake })]);
    expect(responses.map((r) => r.status).sort()).toEqual([200, 402]);
    await Promise.all(responses.map((r) => r.text()));
    expect(await upstreamCalls(tag)).toBe(1);
    const { closing } = await settlement(accountId);
    expect(closing.amount).toBe(promptTokens(body) + 10);
  });

  it("charges nothing when the upstream fails before the first byte", async () => {
    for (const format of ["openai", "anthropic"] as const) {
      const { accountId, key } = await customer(10_000);
      const response = await llm({ format, body: chat(true, 64), key, fake: { fail: "500" } });
      expect(response.status).toBe(500);
      expect(response.headers.get("X-Credits-Charged")).toBe("0");
      const { closing } = await settlement(accountId);
      expect(closing.kind).toBe("void");
      expect(await credits().balance({ accountId })).toMatchObject({ available: 10_000, held: 0, consumed: 0 });
    }
  });

  it("caps a completed stream without reported usage at the hold, charging the estimate", async () => {
    const { accountId, key } = await customer(10_000);
    const body = chat(true, 64);
    const response = await llm({ format: "openai", body, key, fake: { "output-tokens": "10", "no-usage": "1" } });
    expect(await response.text()).toContain("[DONE]");
    const { closing } = await settlement(accountId);
    const { hold, input } = holdOf("openai", body);
    expect(closing.amount).toBe(Math.min(hold, input + utf8Length(outputText(0, 10)) + 8));
  });
});
