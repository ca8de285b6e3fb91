import type { Decision, Rule, RuleState } from "../../rpc/rate-limits";
import { ServiceError } from "../errors";
import { evaluateFixedWindow } from "./fixed-window";
import { rateLimitHeaders } from "./headers";
import type { RuleOutcome, WindowState } from "./rule-state";
import { evaluateSlidingWindow } from "./sliding-window";

export interface Evaluation {
  decision: Decision;
  /** Rule name -> state to store. Empty when the check was denied or cost nothing. */
  writes: Map<string, { state: WindowState; expiresAtMs: number }>;
}

/**
 * Evaluates every rule against its stored state, all or nothing: the call is admitted only
 * if every enforced (non-shadow) rule admits it, and only then is any rule charged. A shadow
 * rule is charged alongside when it would have admitted, so its state shows what enforcing
 * it would have done; it never denies.
 *
 * With `charge: false` (a peek) nothing is written and each rule reports what remains
 * before the call.
 */
export function evaluateRules(
  rules: readonly Rule[],
  states: ReadonlyMap<string, WindowState>,
  nowMs: number,
  cost: number,
  charge = true,
): Evaluation {
  const outcomes = rules.map((rule) => ({ rule, outcome: evaluateRule(rule, states.get(rule.name), nowMs, cost) }));
  const enforced = outcomes.filter(({ rule }) => !rule.shadow);
  const denying = enforced.filter(({ outcome }) => !outcome.allowed);
  const allowed = denying.length === 0;

  const writes = new Map<string, { state: WindowState; expiresAtMs: number }>();
  const charged = allowed && charge && cost > 0;
  if (charged) {
    for (const { rule, outcome } of outcomes) {
      if (outcome.allowed) writes.set(rule.name, { state: outcome.charged, expiresAtMs: outcome.expiresAtMs });
    }
  }

  // Reported state: what each rule shows after this call. When nothing was charged, a rule
  // that would have admitted shows its pre-call remaining (a denying rule never charges).
  const ruleStates: RuleState[] = outcomes.map(({ rule, outcome }) => {
    const reported = charged || !outcome.allowed ? outcome : evaluateRule(rule, states.get(rule.name), nowMs, 0);
    return {
      name: rule.name,
      algorithm: rule.algorithm,
      limit: rule.limit,
      periodMs: rule.periodMs,
      allowed: outcome.allowed,
      remaining: reported.remaining,
      resetAt: reported.resetAt,
      retryAfterMs: outcome.retryAfterMs,
      shadow: rule.shadow === true,
    };
  });

  const binding = tightest(ruleStates.filter((state) => !state.shadow)) ?? tightest(ruleStates)!;
  const retryAfterMs = Math.max(0, ...denying.map(({ outcome }) => outcome.retryAfterMs));
  const decision: Decision = {
    allowed,
    remaining: binding.remaining,
    limit: binding.limit,
    resetAt: binding.resetAt,
    retryAfterMs,
    deniedBy: denying.map(({ rule }) => rule.name),
    rules: ruleStates,
    headers: {},
  };
  decision.headers = rateLimitHeaders(decision, nowMs);
  return { decision, writes };
}

export function evaluateRule(rule: Rule, state: WindowState | undefined, nowMs: number, cost: number): RuleOutcome {
  switch (rule.algorithm) {
    case "fixed_window":
      return evaluateFixedWindow(rule, state, nowMs, cost);
    case "sliding_window":
      return evaluateSlidingWindow(rule, state, nowMs, cost);
    default:
      throw new ServiceError("UNIMPLEMENTED", `algorithm ${rule.algorithm} is not available yet (rate limiter issue)`);
  }
}

/** The rule with the least remaining; ties go to the one that resets last. */
function tightest(states: RuleState[]): RuleState | undefined {
  let best: RuleState | undefined;
  for (const state of states) {
    if (
      best === undefined ||
      state.remaining < best.remaining ||
      (state.remaining === best.remaining && state.resetAt > best.resetAt)
    ) {
      best = state;
    }
  }
  return best;
}
