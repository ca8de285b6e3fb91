import type { Block, Decision, Rule, RuleState } from "../../../rpc/rate-limits";
import { chargeDeniedFixedWindow, evaluateFixedWindow, refundFixedWindow } from "./fixed-window";
import { chargeDeniedGcra, evaluateGcra, refundGcra } from "./gcra";
import { rateLimitHeaders } from "./headers";
import type { LimiterState, RefundOutcome, RuleOutcome, StateChange } from "./rule-state";
import { chargeDeniedSlidingLog, evaluateSlidingLog, refundSlidingLog } from "./sliding-log";
import { chargeDeniedSlidingWindow, evaluateSlidingWindow, refundSlidingWindow } from "./sliding-window";
import { chargeDeniedTokenBucket, evaluateTokenBucket, refundTokenBucket } from "./token-bucket";

/** A rule's state to store, and when it stops mattering. */
export type StateWrite = StateChange;

/** What the subject's object knows besides rule state. */
export interface EvaluationContext {
  /** The subject's block, if any (an expired one is ignored). */
  block?: Block;
  /** Shadow rule name -> calls it would have denied so far. */
  shadowDenied?: ReadonlyMap<string, number>;
}

export interface Evaluation {
  decision: Decision;
  /** Rule name -> state to store. Empty when the check cost nothing, or was denied and no rule has `countDenied`. */
  writes: Map<string, StateWrite>;
  /** A block this call started (a rule with `blockMs` denied it), to store. */
  newBlock?: Block;
  /** Shadow rules that would have denied this (charged) call, to count. */
  shadowDenials: string[];
}

/**
 * Evaluates every rule against its stored state, all or nothing: the call is admitted only
 * if the subject is not blocked and every enforced (non-shadow) rule admits it, and only then
 * is any rule charged. A shadow rule is charged alongside when it would have admitted, so its
 * state shows what enforcing it would have done; it never denies, but the calls it would
 * have denied are counted.
 *
 * Denied calls are not counted, except by rules with `countDenied`, which are charged anyway,
 * never beyond full. A denial by a rule with `blockMs` blocks the subject for that long (the
 * longest, if several).
 * With `charge: false` (a peek) nothing is written and each rule reports what remains
 * before the call.
 */
export function evaluateRules(
  rules: readonly Rule[],
  states: ReadonlyMap<string, LimiterState>,
  nowMs: number,
  cost: number,
  charge = true,
  context: EvaluationContext = {},
): Evaluation {
  const active = context.block !== undefined && context.block.untilMs > nowMs ? context.block : undefined;
  const outcomes = rules.map((rule) => ({ rule, outcome: evaluateRule(rule, states.get(rule.name), nowMs, cost) }));
  const enforced = outcomes.filter(({ rule }) => !rule.shadow);
  const denying = enforced.filter(({ outcome }) => !outcome.allowed);
  const allowed = denying.length === 0 && active === undefined;
  const counts = charge && cost > 0 && active === undefined;

  const writes = new Map<string, StateWrite>();
  const charged = allowed && counts;
  if (charged) {
    for (const { rule, outcome } of outcomes) {
      if (outcome.allowed) writes.set(rule.name, { state: outcome.charged, expiresAtMs: outcome.expiresAtMs });
    }
  }

  // countDenied: a denied (not blocked) call is still charged to the rules that ask for it.
  const penalized = new Map<string, StateChange>();
  if (counts && !allowed) {
    for (const { rule } of outcomes) {
      if (rule.countDenied) penalized.set(rule.name, chargeDenied(rule, states.get(rule.name), nowMs, cost));
    }
    for (const [name, change] of penalized) writes.set(name, change);
  }

  let newBlock: Block | undefined;
  if (counts) {
    for (const { rule } of denying) {
      if (rule.blockMs !== undefined && (newBlock === undefined || nowMs + rule.blockMs > newBlock.untilMs)) {
        newBlock = { untilMs: nowMs + rule.blockMs, reason: `rule "${rule.name}" was exceeded`, rule: rule.name };
      }
    }
  }
  const shadowDenials = counts ? outcomes.filter(({ rule, outcome }) => rule.shadow && !outcome.allowed).map(({ rule }) => rule.name) : [];

  // Reported state: what each rule shows after this call. When nothing was charged, a rule
  // that would have admitted shows its pre-call remaining; a rule charged by countDenied
  // shows its state after that charge.
  const ruleStates: RuleState[] = outcomes.map(({ rule, outcome }) => {
    const penalty = penalized.get(rule.name);
    const reported =
      penalty !== undefined
        ? evaluateRule(rule, penalty.state, nowMs, 0)
        : charged || !outcome.allowed
          ? outcome
          : evaluateRule(rule, states.get(rule.name), nowMs, 0);
    // A denying rule that was charged anyway now needs longer before it admits the same call.
    const retryAfterMs =
      penalty !== undefined && !outcome.allowed ? evaluateRule(rule, penalty.state, nowMs, cost).retryAfterMs : outcome.retryAfterMs;
    const state: RuleState = {
      name: rule.name,
      algorithm: rule.algorithm,
      limit: rule.limit,
      periodMs: rule.periodMs,
      allowed: outcome.allowed,
      remaining: reported.remaining,
      resetAt: reported.resetAt,
      retryAfterMs,
      shadow: rule.shadow === true,
    };
    if (rule.burst !== undefined) state.burst = rule.burst;
    if (rule.shadow) {
      state.wouldHaveDenied = (context.shadowDenied?.get(rule.name) ?? 0) + (shadowDenials.includes(rule.name) ? 1 : 0);
    }
    return state;
  });

  const blocked = active ?? newBlock;
  const binding = tightest(ruleStates.filter((state) => !state.shadow)) ?? tightest(ruleStates)!;
  const deniedBy = denying.map(({ rule }) => rule.name);
  const retryAfterMs = Math.max(
    0,
    ...ruleStates.filter((state) => deniedBy.includes(state.name)).map((state) => state.retryAfterMs),
    blocked === undefined ? 0 : blocked.untilMs - nowMs,
  );
  const decision: Decision = {
    allowed,
    remaining: blocked === undefined ? binding.remaining : 0,
    limit: binding.limit,
    resetAt: binding.resetAt,
    retryAfterMs,
    deniedBy,
    rules: ruleStates,
    headers: {},
  };
  if (blocked !== undefined) decision.blocked = { ...blocked };
  decision.headers = rateLimitHeaders(decision, nowMs);
  const evaluation: Evaluation = { decision, writes, shadowDenials };
  if (newBlock !== undefined) evaluation.newBlock = newBlock;
  return evaluation;
}

export function evaluateRule(rule: Rule, state: LimiterState | undefined, nowMs: number, cost: number): RuleOutcome {
  switch (rule.algorithm) {
    case "fixed_window":
      return evaluateFixedWindow(rule, state, nowMs, cost);
    case "sliding_window":
      return evaluateSlidingWindow(rule, state, nowMs, cost);
    case "sliding_log":
      return evaluateSlidingLog(rule, state, nowMs, cost);
    case "token_bucket":
      return evaluateTokenBucket(rule, state, nowMs, cost);
    case "gcra":
      return evaluateGcra(rule, state, nowMs, cost);
  }
}

/** The `countDenied` charge of a denied call: as if admitted, but never beyond a full rule. */
export function chargeDenied(rule: Rule, state: LimiterState | undefined, nowMs: number, cost: number): StateChange {
  switch (rule.algorithm) {
    case "fixed_window":
      return chargeDeniedFixedWindow(rule, state, nowMs, cost);
    case "sliding_window":
      return chargeDeniedSlidingWindow(rule, state, nowMs, cost);
    case "sliding_log":
      return chargeDeniedSlidingLog(rule, state, nowMs, cost);
    case "token_bucket":
      return chargeDeniedTokenBucket(rule, state, nowMs, cost);
    case "gcra":
      return chargeDeniedGcra(rule, state, nowMs, cost);
  }
}

export interface RefundEvaluation {
  /** Per rule, in order: how many units were given back. */
  rules: { name: string; refunded: number }[];
  /** Rule name -> state to store; only rules that gave something back. */
  writes: Map<string, StateWrite>;
}

/**
 * Gives `cost` units back to every rule (shadow rules too, since they were charged alongside),
 * each rule never more than it currently holds: a refund can restore a rule to empty, never
 * beyond, so it cannot mint quota that was not taken.
 */
export function refundRules(
  rules: readonly Rule[],
  states: ReadonlyMap<string, LimiterState>,
  nowMs: number,
  cost: number,
): RefundEvaluation {
  const writes = new Map<string, StateWrite>();
  const results = rules.map((rule) => {
    const outcome = refundRule(rule, states.get(rule.name), nowMs, cost);
    if (outcome.refunded > 0) writes.set(rule.name, { state: outcome.state, expiresAtMs: outcome.expiresAtMs });
    return { name: rule.name, refunded: outcome.refunded };
  });
  return { rules: results, writes };
}

export function refundRule(rule: Rule, state: LimiterState | undefined, nowMs: number, cost: number): RefundOutcome {
  switch (rule.algorithm) {
    case "fixed_window":
      return refundFixedWindow(rule, state, nowMs, cost);
    case "sliding_window":
      return refundSlidingWindow(rule, state, nowMs, cost);
    case "sliding_log":
      return refundSlidingLog(rule, state, nowMs, cost);
    case "token_bucket":
      return refundTokenBucket(rule, state, nowMs, cost);
    case "gcra":
      return refundGcra(rule, state, nowMs, cost);
  }
}

/** The rule with the least remaining; ties go to the one that resets last. */
function tightest(states: RuleState[]): RuleState | undefined {
  let best: RuleState | undefined;
  for (const state of states) {
    if (best === undefined || state.remaining < best.remaining || (state.remaining === best.remaining && state.resetAt > best.resetAt)) {
      best = state;
    }
  }
  return best;
}
