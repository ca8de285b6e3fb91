import type { Price } from "../../rpc/credits";
import { priceBookConfigSchema } from "./schemas";
import { parseJsonVar } from "../platform/json-var";

/**
 * The default price book from the `CREDIT_PRICES` variable (JSON: Price[]), parsed once per
 * isolate. Unset means no default: `quote` and `charge` then need an account price book.
 */
export function loadDefaultPrices(raw: string | undefined): readonly Price[] {
  return parseJsonVar("CREDIT_PRICES", raw, "[]", priceBookConfigSchema);
}
