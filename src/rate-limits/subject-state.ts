import * as v from "valibot";
import type { Block } from "../../rpc/rate-limits";
import { CHECK_COUNT_RETENTION_MS, SHADOW_COUNT_TTL_MS } from "../platform/retention";
import type { Evaluation, StateWrite } from "./algorithms/evaluate-rules";
import type { LimiterState } from "./algorithms/rule-state";
import { checked, decodeRuleStates, encodeRuleStates, type StoredRuleState } from "./algorithms/rule-state-codec";

/**
 * A rule state is dropped this long after it stopped mattering (as the cleanup alarm used to
 * delete it): until then the algorithms read it, and past its expiry it reads as unused anyway.
 */
export const EXPIRED_RULE_SLACK_MS = 60_000;
/** Per-minute check counts ride in the state row this long, then move to the `check_counts` table. */
export const COUNTS_IN_ROW_MS = 3_600_000;
const MINUTE_MS = 60_000;

export interface ShadowCount {
  denied: number;
  lastAtMs: number;
}

export interface MinuteCounts {
  allowed: number;
  denied: number;
}

/** The columns of the one `subject_state` row (all JSON but `id`). */
export interface SubjectStateRow {
  [column: string]: SqlStorageValue;
  rules: string;
  shadow: string;
  block: string | null;
  check_counts: string;
}

/**
 * Everything a subject's checks read and write, in memory: each rule's state (with when it
 * stops mattering), shadow rules' would-have-denied counts, the block, and the check counts of
 * the last hour's minutes. The object keeps it between calls and writes it back as one row per
 * flush (src/platform/group-commit.ts). Expired parts read as absent and are dropped when the
 * row is next written (`trim`): no alarm per subject.
 */
export class SubjectState {
  readonly rules = new Map<string, StoredRuleState>();
  readonly shadow = new Map<string, ShadowCount>();
  block: Block | null = null;
  /** Minute start -> checks counted in it and not yet moved to the `check_counts` table. */
  readonly minutes = new Map<number, MinuteCounts>();

  /** The state of each named rule that has one. */
  ruleStates(names: readonly string[]): Map<string, LimiterState> {
    const states = new Map<string, LimiterState>();
    for (const name of names) {
      const stored = this.rules.get(name);
      if (stored !== undefined) states.set(name, stored.state);
    }
    return states;
  }

  /** Shadow rule name -> calls it would have denied, for those of `names` with a live count. */
  shadowCounts(names: readonly string[], nowMs: number): Map<string, number> {
    const counts = new Map<string, number>();
    for (const name of names) {
      const count = this.#liveShadow(name, nowMs);
      if (count !== undefined) counts.set(name, count.denied);
    }
    return counts;
  }

  /** The block in force at `nowMs`, if any. */
  activeBlock(nowMs: number): Block | undefined {
    return this.block !== null && this.block.untilMs > nowMs ? this.block : undefined;
  }

  /** Applies a charged check's evaluation: rule states, a block it started, shadow denials, and its count. */
  applyCheck(evaluation: Evaluation, nowMs: number): void {
    this.applyWrites(evaluation.writes);
    if (evaluation.newBlock !== undefined) this.block = evaluation.newBlock;
    for (const name of evaluation.shadowDenials) {
      this.shadow.set(name, { denied: (this.#liveShadow(name, nowMs)?.denied ?? 0) + 1, lastAtMs: nowMs });
    }
    const minute = nowMs - (nowMs % MINUTE_MS);
    const counts = this.minutes.get(minute) ?? { allowed: 0, denied: 0 };
    this.minutes.set(
      minute,
      evaluation.decision.allowed ? { ...counts, allowed: counts.allowed + 1 } : { ...counts, denied: counts.denied + 1 },
    );
  }

  applyWrites(writes: ReadonlyMap<string, StateWrite>): void {
    for (const [name, { state, expiresAtMs }] of writes) this.rules.set(name, { state, expiresAtMs });
  }

  /** Clears one rule's state and shadow count (every rule's without `rule`); returns the states cleared. */
  clearRules(rule: string | undefined): number {
    if (rule === undefined) {
      const cleared = this.rules.size;
      this.rules.clear();
      this.shadow.clear();
      return cleared;
    }
    this.shadow.delete(rule);
    return this.rules.delete(rule) ? 1 : 0;
  }

  /** Checks counted in memory in the minutes from `sinceMinuteMs` on, within their retention. */
  countsSince(sinceMinuteMs: number, nowMs: number): MinuteCounts {
    const from = Math.max(sinceMinuteMs, nowMs - CHECK_COUNT_RETENTION_MS);
    const total = { allowed: 0, denied: 0 };
    for (const [minute, counts] of this.minutes) {
      if (minute < from) continue;
      total.allowed += counts.allowed;
      total.denied += counts.denied;
    }
    return total;
  }

  /** Drops what no call can observe any more: expired rule states, shadow counts, block and counts. */
  trim(nowMs: number): void {
    for (const [name, { expiresAtMs }] of this.rules) if (expiresAtMs + EXPIRED_RULE_SLACK_MS <= nowMs) this.rules.delete(name);
    for (const [name, { lastAtMs }] of this.shadow) if (lastAtMs + SHADOW_COUNT_TTL_MS <= nowMs) this.shadow.delete(name);
    if (this.block !== null && this.block.untilMs <= nowMs) this.block = null;
    for (const minute of this.minutes.keys()) if (minute < nowMs - CHECK_COUNT_RETENTION_MS) this.minutes.delete(minute);
  }

  /** Takes the minutes older than `COUNTS_IN_ROW_MS` out of memory, for the `check_counts` table. */
  takeOldMinutes(nowMs: number): [number, MinuteCounts][] {
    const old = [...this.minutes].filter(([minute]) => minute < nowMs - COUNTS_IN_ROW_MS);
    for (const [minute] of old) this.minutes.delete(minute);
    return old;
  }

  isEmpty(): boolean {
    return this.rules.size === 0 && this.shadow.size === 0 && this.block === null && this.minutes.size === 0;
  }

  /** The row's columns (the rule states in the shared codec's form). */
  toRow(): SubjectStateRow {
    return {
      rules: encodeRuleStates(this.rules),
      shadow: JSON.stringify(Object.fromEntries(this.shadow)),
      block: this.block === null ? null : JSON.stringify(blockJson(this.block)),
      check_counts: JSON.stringify([...this.minutes].sort(([a], [b]) => a - b).map(([minute, c]) => [minute, c.allowed, c.denied])),
    };
  }

  /** The state a stored row holds; INTERNAL if the row is malformed. */
  static fromRow(row: SubjectStateRow): SubjectState {
    const state = new SubjectState();
    for (const [name, stored] of decodeRuleStates(row.rules)) state.rules.set(name, stored);
    for (const [name, count] of Object.entries(checked(shadowSchema, JSON.parse(row.shadow), "shadow counts")))
      state.shadow.set(name, count);
    if (row.block !== null) state.block = blockJson(checked(blockSchema, JSON.parse(row.block), "block"));
    for (const [minute, allowed, denied] of checked(countsSchema, JSON.parse(row.check_counts), "check counts")) {
      state.minutes.set(minute, { allowed, denied });
    }
    return state;
  }

  #liveShadow(name: string, nowMs: number): ShadowCount | undefined {
    const count = this.shadow.get(name);
    return count !== undefined && count.lastAtMs + SHADOW_COUNT_TTL_MS > nowMs ? count : undefined;
  }
}

const integer = v.pipe(v.number(), v.safeInteger());
const shadowSchema = v.record(v.string(), v.object({ denied: integer, lastAtMs: integer }));
const blockSchema = v.object({ untilMs: integer, reason: v.string(), rule: v.optional(v.string()) });
const countsSchema = v.array(v.tuple([integer, integer, integer]));

/** A block with exactly its fields (`rule` only when a rule set it). */
function blockJson(block: { untilMs: number; reason: string; rule?: string | undefined }): Block {
  const json: Block = { untilMs: block.untilMs, reason: block.reason };
  if (block.rule !== undefined) json.rule = block.rule;
  return json;
}
