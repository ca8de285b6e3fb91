import * as v from "valibot";
import { invalidArgument, type ErrorDetail } from "./errors";

/** Most details one error carries, so a hostile input cannot make a huge error. */
const MAX_DETAILS = 20;

/**
 * Validates `input` against `schema` and returns the parsed value, or throws
 * `INVALID_ARGUMENT` with every problem flattened to `{ path, message }`. Objects are
 * strict: an unknown field is an error, never silently dropped.
 */
export function parseInput<TSchema extends v.GenericSchema>(schema: TSchema, input: unknown, what: string): v.InferOutput<TSchema> {
  const result = v.safeParse(schema, input, { abortPipeEarly: true });
  if (result.success) return result.output;
  const details: ErrorDetail[] = result.issues.slice(0, MAX_DETAILS).map((issue) => ({
    path: v.getDotPath(issue) ?? "",
    message: issue.message,
  }));
  const first = details[0]!;
  const where = first.path === "" ? "" : ` at ${first.path}`;
  throw invalidArgument(`invalid ${what}${where}: ${first.message}`, details);
}

/** Printable text without control characters, `min`..`max` UTF-16 units. */
export const text = (min: number, max: number) =>
  v.pipe(
    v.string(),
    v.minLength(min, `must be at least ${min} characters`),
    v.maxLength(max, `must be at most ${max} characters`),
    v.regex(/^[^\p{Cc}]*$/u, "must not contain control characters"),
  );

/** A safe integer in `min..max`. Rejects NaN, Infinity, fractions and unsafe integers. */
export const integer = (min: number, max: number) =>
  v.pipe(
    v.number("must be a number"),
    v.safeInteger("must be a safe integer"),
    v.minValue(min, `must be at least ${min}`),
    v.maxValue(max, `must be at most ${max}`),
  );

/** An idempotency key: 1..128 printable characters. */
export const idempotencyKey = text(1, 128);

/** A rate-limit subject or other object name: 1..256 printable characters. */
export const objectName = text(1, 256);
