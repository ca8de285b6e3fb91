import * as v from "valibot";
import type { Rule } from "../../rpc/rate-limits";
import { invalidArgument, notFound, ServiceError } from "../errors";
import { policiesSchema } from "../schemas/rate-limits";

const cache = new Map<string, ReadonlyMap<string, readonly Rule[]>>();

/**
 * Parses the `RATE_LIMIT_POLICIES` variable (JSON: policy name -> rules) once per isolate.
 * A malformed configuration is an operator error, reported as `INTERNAL` with the reason
 * in the log rather than to callers.
 */
export function loadPolicies(raw: string | undefined): ReadonlyMap<string, readonly Rule[]> {
  const source = raw ?? "{}";
  const cached = cache.get(source);
  if (cached) return cached;
  let parsed: unknown;
  try {
    parsed = JSON.parse(source);
  } catch (error) {
    throw misconfigured(`not JSON: ${(error as Error).message}`);
  }
  const result = v.safeParse(policiesSchema, parsed);
  if (!result.success) {
    const issue = result.issues[0];
    throw misconfigured(`${v.getDotPath(issue) ?? "root"}: ${issue.message}`);
  }
  const policies = new Map(Object.entries(result.output));
  cache.set(source, policies);
  return policies;
}

/** The rules of a check: its own `rules`, or the named policy's. Exactly one must be given. */
export function resolveRules(
  input: { rules?: Rule[]; policy?: string },
  policies: ReadonlyMap<string, readonly Rule[]>,
): readonly Rule[] {
  if (input.rules !== undefined && input.policy !== undefined) {
    throw invalidArgument("give either rules or policy, not both");
  }
  if (input.rules !== undefined) return input.rules;
  if (input.policy === undefined) throw invalidArgument("give rules or a policy name");
  const rules = policies.get(input.policy);
  if (rules === undefined) throw notFound(`unknown policy "${input.policy}"`);
  return rules;
}

function misconfigured(reason: string): ServiceError {
  console.error(`RATE_LIMIT_POLICIES is invalid: ${reason}`);
  return new ServiceError("INTERNAL", "rate-limit policies are misconfigured");
}
