import * as v from "valibot";
import type { Rule } from "../../rpc/rate-limits";
import { invalidArgument, notFound } from "../platform/errors";
import { policiesSchema } from "./schemas";
import { parseJsonVar } from "../platform/json-var";

/** The policies as a map, built once with the parse. */
const policyMapSchema = v.pipe(
  policiesSchema,
  v.transform((policies) => new Map(Object.entries(policies))),
);

/**
 * Parses the `RATE_LIMIT_POLICIES` variable (JSON: policy name -> rules) once per isolate.
 * A malformed configuration is an operator error, reported as `INTERNAL` with the reason
 * in the log rather than to callers.
 */
export function loadPolicies(raw: string | undefined): ReadonlyMap<string, readonly Rule[]> {
  return parseJsonVar("RATE_LIMIT_POLICIES", raw, "{}", policyMapSchema);
}

/** The rules of a check: its own `rules`, or the named policy's. Exactly one must be given. */
export function resolveRules(input: { rules?: Rule[]; policy?: string }, policies: ReadonlyMap<string, readonly Rule[]>): readonly Rule[] {
  if (input.rules !== undefined && input.policy !== undefined) {
    throw invalidArgument("give either rules or policy, not both");
  }
  if (input.rules !== undefined) return input.rules;
  if (input.policy === undefined) throw invalidArgument("give rules or a policy name");
  const rules = policies.get(input.policy);
  if (rules === undefined) throw notFound(`unknown policy "${input.policy}"`);
  return rules;
}
