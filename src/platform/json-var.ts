import * as v from "valibot";
import { ServiceError } from "./errors";

/** Parsed values by variable name, then by text: a lookup builds no key (hot paths read these per call). */
const cache = new Map<string, Map<string, unknown>>();

/**
 * Parses and validates a JSON configuration variable once per isolate (keyed by its name and
 * text). A malformed value is an operator error: callers get a bare `INTERNAL` naming what
 * is misconfigured, and the reason goes to the log.
 */
export function parseJsonVar<TSchema extends v.GenericSchema>(
  name: string,
  raw: string | undefined,
  fallback: string,
  schema: TSchema,
): v.InferOutput<TSchema> {
  const source = raw ?? fallback;
  const parsedByText = cache.get(name) ?? cache.set(name, new Map()).get(name)!;
  if (parsedByText.has(source)) return parsedByText.get(source) as v.InferOutput<TSchema>;
  let parsed: unknown;
  try {
    parsed = JSON.parse(source);
  } catch (error) {
    throw misconfigured(name, `not JSON: ${(error as Error).message}`);
  }
  const result = v.safeParse(schema, parsed);
  if (!result.success) {
    const issue = result.issues[0];
    throw misconfigured(name, `${v.getDotPath(issue) ?? "root"}: ${issue.message}`);
  }
  parsedByText.set(source, result.output);
  return result.output;
}

function misconfigured(name: string, reason: string): ServiceError {
  console.error(`${name} is invalid: ${reason}`);
  return new ServiceError("INTERNAL", `${name} is misconfigured`);
}
