import * as v from "valibot";
import type { Price } from "../../rpc/credits";
import { ServiceError } from "../errors";
import { priceBookConfigSchema } from "../schemas/credits";

const cache = new Map<string, readonly Price[]>();

/**
 * The default price book from the `CREDIT_PRICES` variable (JSON: Price[]), parsed once per
 * isolate. Unset means no default: `quote` and `charge` then need an account price book.
 */
export function loadDefaultPrices(raw: string | undefined): readonly Price[] {
  const source = raw ?? "[]";
  const cached = cache.get(source);
  if (cached) return cached;
  let parsed: unknown;
  try {
    parsed = JSON.parse(source);
  } catch (error) {
    throw misconfigured(`not JSON: ${(error as Error).message}`);
  }
  const result = v.safeParse(priceBookConfigSchema, parsed);
  if (!result.success) {
    const issue = result.issues[0];
    throw misconfigured(`${v.getDotPath(issue) ?? "root"}: ${issue.message}`);
  }
  cache.set(source, result.output);
  return result.output;
}

function misconfigured(reason: string): ServiceError {
  console.error(`CREDIT_PRICES is invalid: ${reason}`);
  return new ServiceError("INTERNAL", "the default price book is misconfigured");
}
