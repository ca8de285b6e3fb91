import * as v from "valibot";
import { ServiceError } from "../../platform/errors";
import type { LimiterState } from "./rule-state";

/**
 * The one stored form of a rule's limiter state, wherever it is kept: the limiter's
 * `subject_state` row and the ledger's `key_rule_states` (API key rules). It is the
 * `LimiterState` as JSON with exactly its algorithm's fields, in a fixed order:
 * - `fixed_window`, `sliding_window`: `{ algorithm, periodMs, windowStartMs, count, previousCount }`;
 * - `sliding_log`: `{ algorithm, periodMs, entries: [{ atMs, cost }, …] }`, oldest first;
 * - `token_bucket`, `gcra`: `{ algorithm, periodMs, level, atMs }`.
 *
 * Decoding checks the shape (a restored dump is not trusted) and drops unknown fields.
 */
const count = v.pipe(v.number(), v.safeInteger());
const windowStateSchema = v.object({
  algorithm: v.picklist(["fixed_window", "sliding_window"]),
  periodMs: count,
  windowStartMs: count,
  count,
  previousCount: count,
});
const logStateSchema = v.object({
  algorithm: v.literal("sliding_log"),
  periodMs: count,
  entries: v.array(v.object({ atMs: count, cost: count })),
});
const levelStateSchema = v.object({
  algorithm: v.picklist(["token_bucket", "gcra"]),
  periodMs: count,
  level: count,
  atMs: count,
});
export const ruleStateSchema = v.variant("algorithm", [windowStateSchema, logStateSchema, levelStateSchema]);

/** A rule's state and when it stops mattering (`expiresAtMs`), as a map entry keeps it. */
export interface StoredRuleState {
  state: LimiterState;
  expiresAtMs: number;
}

export const storedRuleStatesSchema = v.record(v.string(), v.object({ state: ruleStateSchema, expiresAtMs: count }));

/** The stored JSON value of `state`: a fresh object with exactly its algorithm's fields. */
export function ruleStateJson(state: LimiterState): LimiterState {
  switch (state.algorithm) {
    case "fixed_window":
    case "sliding_window":
      return {
        algorithm: state.algorithm,
        periodMs: state.periodMs,
        windowStartMs: state.windowStartMs,
        count: state.count,
        previousCount: state.previousCount,
      };
    case "sliding_log":
      return { algorithm: state.algorithm, periodMs: state.periodMs, entries: state.entries.map(({ atMs, cost }) => ({ atMs, cost })) };
    case "token_bucket":
    case "gcra":
      return { algorithm: state.algorithm, periodMs: state.periodMs, level: state.level, atMs: state.atMs };
  }
}

/** A stored JSON value as a `LimiterState`; INTERNAL if it is not one. */
export function parseRuleState(value: unknown): LimiterState {
  return checked(ruleStateSchema, value, "rule state");
}

/** One rule's state as stored text (`key_rule_states.state`). */
export function encodeRuleState(state: LimiterState): string {
  return JSON.stringify(ruleStateJson(state));
}

export function decodeRuleState(text: string): LimiterState {
  return parseRuleState(JSON.parse(text));
}

/** Rule name -> state and expiry, as stored text (`subject_state.rules`). */
export function encodeRuleStates(states: ReadonlyMap<string, StoredRuleState>): string {
  const stored: Record<string, StoredRuleState> = {};
  for (const [name, { state, expiresAtMs }] of states) stored[name] = { state: ruleStateJson(state), expiresAtMs };
  return JSON.stringify(stored);
}

export function decodeRuleStates(text: string): Map<string, StoredRuleState> {
  return new Map(Object.entries(checked(storedRuleStatesSchema, JSON.parse(text), "rule states")));
}

/** Stored data that does not parse is a fault of the store, not of the caller. */
export function checked<TSchema extends v.GenericSchema>(schema: TSchema, value: unknown, what: string): v.InferOutput<TSchema> {
  const result = v.safeParse(schema, value);
  if (result.success) return result.output;
  // INTERNAL: the public error says only "internal error"; the log of the call keeps this.
  const issue = result.issues[0];
  throw new ServiceError("INTERNAL", `stored ${what} is malformed at ${v.getDotPath(issue) ?? "(root)"}: ${issue.message}`);
}
