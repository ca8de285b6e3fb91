/**
 * The fake upstream's deterministic "tokenizer" and "model": a prompt costs one token per
 * whitespace-separated word of its text plus 4 per message and 3 to prime the reply; the
 * answer is a fixed cycle of words, one token each. Tests compute the same numbers from these
 * functions (test/node/llm-gateway.test.ts).
 */

/** The answer's tokens, in order; token i is `WORDS[i % WORDS.length]`. */
export const WORDS = ["Metered ", "tokens ", "flow ", "through ", "tollgate, ", "each ", "one ", "counted. "];

export function outputText(from: number, to: number): string {
  let text = "";
  for (let i = from; i < to; i += 1) text += WORDS[i % WORDS.length];
  return text;
}

type Json = Record<string, unknown>;
const isObject = (value: unknown): value is Json => typeof value === "object" && value !== null && !Array.isArray(value);

/** Words in every string under `value` (message text, tool definitions, anything). */
function words(value: unknown): number {
  if (typeof value === "string") return value.split(/\s+/).filter((w) => w !== "").length;
  if (Array.isArray(value)) return value.reduce((sum: number, item) => sum + words(item), 0);
  if (isObject(value)) return Object.values(value).reduce((sum: number, item) => sum + words(item), 0);
  return 0;
}

/** The prompt tokens of a chat completions or Messages request. */
export function promptTokens(body: Json): number {
  const messages = Array.isArray(body.messages) ? body.messages : [];
  const system = body.system === undefined ? 0 : 4 + words(body.system);
  return messages.reduce((sum: number, message) => sum + 4 + words(message), 3 + system + words(body.tools ?? []));
}
