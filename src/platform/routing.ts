import * as v from "valibot";
import { invalidArgument } from "./errors";
import { parseInput } from "./schemas";

/** How a service refuses an input it cannot route: with the object's own schema and label, e.g. "check input". */
export interface Refusal {
  schema: v.GenericSchema;
  what: string;
  /** The message when the schema accepts an input without the field (it is optional there). */
  missing?: string;
}

/**
 * The name of the object a call goes to, read from one field of the caller's input. A service
 * only routes: the object validates the whole input. When the field cannot name an object, the
 * input is refused here, before any object is touched, with the object's own schema and label,
 * so the caller gets the very error the object would have given.
 */
export function routeName(input: unknown, field: string, name: v.GenericSchema<string>, refusal: Refusal): string {
  const record = typeof input === "object" && input !== null && !Array.isArray(input);
  const value = record ? (input as Record<string, unknown>)[field] : undefined;
  if (v.is(name, value)) return value;
  parseInput(refusal.schema, input, refusal.what);
  throw invalidArgument(refusal.missing ?? `${field} is required`);
}
