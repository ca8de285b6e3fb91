import type { AdaptiveStage, AdjustedRule } from "../../../rpc/adaptive";
import type { Rule } from "../../../rpc/rate-limits";

/**
 * What the limiters need from the adaptive controller: per rate-limit policy, per rule, the
 * factor to apply. Plain JSON, so it crosses RPC and is cached per isolate.
 */
export interface RuleFactors {
  factors: Record<string, Record<string, number>>;
}

export const NO_FACTORS: RuleFactors = { factors: {} };

/** A policy's stages and the level it is at. */
export interface Leveled {
  stages: readonly AdaptiveStage[];
  level: number;
}

/**
 * The factor per (policy, rule) of one adaptive policy at its level: applied stages are
 * cumulative, so a rule named by two applied stages gets the product of their factors.
 */
export function factorsOf(leveled: Leveled, policies: ReadonlyMap<string, readonly Rule[]>): Map<string, Map<string, number>> {
  const out = new Map<string, Map<string, number>>();
  for (const stage of leveled.stages.slice(0, leveled.level)) {
    const rules = policies.get(stage.policy);
    if (rules === undefined) continue;
    const named = stage.rules ?? rules.map((rule) => rule.name);
    let byRule = out.get(stage.policy);
    if (byRule === undefined) out.set(stage.policy, (byRule = new Map()));
    for (const name of named) {
      if (!rules.some((rule) => rule.name === name)) continue;
      byRule.set(name, (byRule.get(name) ?? 1) * stage.factor);
    }
  }
  return out;
}

/**
 * Every adaptive policy's factors together. Two adaptive policies that tighten the same rule
 * do not compound: the tightest factor wins, so each policy's effect is what it says.
 */
export function combineFactors(all: readonly Leveled[], policies: ReadonlyMap<string, readonly Rule[]>): RuleFactors {
  const factors: Record<string, Record<string, number>> = {};
  for (const leveled of all) {
    for (const [policy, byRule] of factorsOf(leveled, policies)) {
      const target = (factors[policy] ??= {});
      for (const [rule, factor] of byRule) target[rule] = Math.min(target[rule] ?? 1, factor);
    }
  }
  return { factors };
}

/**
 * A rule with its limit (and burst) scaled by `factor`, never below 1. The small epsilon keeps
 * `100 * 0.29` (28.999…) from losing a unit to float rounding.
 */
export function scaleRule(rule: Rule, factor: number): Rule {
  const scale = (value: number) => Math.max(1, Math.floor(value * factor + 1e-9));
  const scaled: Rule = { ...rule, limit: scale(rule.limit) };
  if (rule.burst !== undefined) scaled.burst = scale(rule.burst);
  return scaled;
}

/** The rules of `policy` as the adaptive factors currently set them. Unnamed rules are unchanged. */
export function adjustRules(policy: string, rules: readonly Rule[], adjustments: RuleFactors): readonly Rule[] {
  const byRule = adjustments.factors[policy];
  if (byRule === undefined) return rules;
  return rules.map((rule) => {
    const factor = byRule[rule.name];
    return factor === undefined || factor >= 1 ? rule : scaleRule(rule, factor);
  });
}

/** The rules `factors` changes, with their limits before and after, in policy and rule order. */
export function describeFactors(factors: RuleFactors, policies: ReadonlyMap<string, readonly Rule[]>): AdjustedRule[] {
  const out: AdjustedRule[] = [];
  for (const policy of Object.keys(factors.factors).sort()) {
    const rules = policies.get(policy) ?? [];
    for (const rule of rules) {
      const factor = factors.factors[policy]![rule.name];
      if (factor === undefined) continue;
      const scaled = scaleRule(rule, factor);
      const adjusted: AdjustedRule = { policy, rule: rule.name, factor, limit: rule.limit, adjustedLimit: scaled.limit };
      if (rule.burst !== undefined) Object.assign(adjusted, { burst: rule.burst, adjustedBurst: scaled.burst! });
      out.push(adjusted);
    }
  }
  return out;
}

/** The same as plain `RuleFactors` for one policy's level (for its state and its history). */
export function toRuleFactors(byPolicy: Map<string, Map<string, number>>): RuleFactors {
  const factors: Record<string, Record<string, number>> = {};
  for (const [policy, byRule] of byPolicy) factors[policy] = Object.fromEntries(byRule);
  return { factors };
}
