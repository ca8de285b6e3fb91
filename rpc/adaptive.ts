/**
 * Adaptive limits (docs/adaptive-limits.md): policies that tighten named rate-limit rules while
 * a signal read from path statistics is past a threshold, and relax them afterwards. Types only.
 */
import type { StatsRange } from "./path-stats";

/**
 * What a policy watches, read from the aggregator's rollups over the last `windowMs` of closed
 * minutes (default 60,000; whole minutes, at most an hour):
 * - `error_rate`: 5xx responses / (requests − 429s), a fraction 0..1. Shed calls (429) are left
 *   out, so tightening does not dilute the signal it reacts to.
 * - `request_rate`: all recorded requests per second, 429s included (the offered load).
 * - `p99_latency`: the p99 latency in ms of every request, or of one path template (and method;
 *   without a method, the slowest method's p99): an upstream behind that path.
 * With fewer than `minRequests` (default 20) requests in the window, `error_rate` and
 * `p99_latency` read as "no data", which counts as quiet (below `relaxBelow`).
 */
export type AdaptiveSignal =
  | { kind: "error_rate"; windowMs?: number; minRequests?: number }
  | { kind: "request_rate"; windowMs?: number }
  | { kind: "p99_latency"; path?: string; method?: string; windowMs?: number; minRequests?: number };

/** One step of tightening: some or all rules of one `RATE_LIMIT_POLICIES` policy, scaled by `factor`. */
export interface AdaptiveStage {
  /** A policy name of `RATE_LIMIT_POLICIES`. */
  policy: string;
  /** Rule names of that policy; omitted: all of them. */
  rules?: string[];
  /** 0 < factor < 1: each rule's `limit` (and `burst`) becomes `max(1, floor(value * factor))`. */
  factor: number;
}

export interface AdaptivePolicy {
  /** 1..64 characters `[a-z][a-z0-9_.-]*`. */
  name: string;
  signal: AdaptiveSignal;
  /** A reading above this adds the next stage (at most one per `dwellMs`). */
  tightenAbove: number;
  /** Readings below this for `dwellMs` remove the last stage (one per `dwellMs`). Must be < `tightenAbove`. */
  relaxBelow: number;
  /** The least time between two level changes, and how long the signal must stay below `relaxBelow` to relax. */
  dwellMs: number;
  /** Lowest-priority traffic first: stage 1 is applied first and removed last. 1..8 stages. */
  stages: AdaptiveStage[];
  /** How often the signal is read (default 15,000 ms; 1,000..300,000). */
  evaluateEveryMs?: number;
}

/** A rule as an adaptive level changes it. */
export interface AdjustedRule {
  policy: string;
  rule: string;
  /** The product of the factors of every applied stage that names this rule. */
  factor: number;
  /** The configured limit, and the limit enforced while adjusted. */
  limit: number;
  adjustedLimit: number;
  burst?: number;
  adjustedBurst?: number;
}

export interface AdaptivePolicyState {
  name: string;
  /** 0: normal; n: stages 1..n applied. */
  level: number;
  stages: number;
  /** The latest reading; `null` when there was no data (or it has not been read yet). */
  lastValue: number | null;
  lastEvaluatedAt: number | null;
  lastChangeAt: number | null;
  /** Since when every reading has been below `relaxBelow` (or no data); `null` when the latest was not. */
  belowSince: number | null;
  /** Why the latest reading failed, if it did (the level is then held). */
  lastError: string | null;
  nextEvaluationAt: number | null;
  /** What this policy's level currently does to each rule it names. */
  adjusted: AdjustedRule[];
}

export interface AdaptiveState {
  policies: AdaptivePolicyState[];
  /** The factor enforced per policy and rule, across every adaptive policy (the tightest wins). */
  effective: AdjustedRule[];
}

/** One level change, as recorded. */
export interface LevelChange {
  id: number;
  policy: string;
  at: number;
  /** The reading that caused it (`null`: no data, or a change by `setPolicy`/`deletePolicy`). */
  value: number | null;
  from: number;
  to: number;
  reason: "tightened" | "relaxed" | "policy_changed" | "policy_deleted";
  /** The rules of the stages added or removed, with their limits after the change. */
  rules: AdjustedRule[];
}

export interface AdaptiveHistoryInput {
  range?: StatsRange;
  policy?: string;
  /** 1..1,000, default 100. Newest first. */
  limit?: number;
}

export interface SetAdaptivePolicyResult {
  policy: AdaptivePolicy;
  state: AdaptivePolicyState;
}

/** `Admin.adaptive()`: adaptive policies, their state, and the record of every level change. */
export interface AdaptiveApi {
  /** Creates or replaces a policy. A replaced policy keeps its level, capped at its new stage count. */
  setPolicy(input: AdaptivePolicy): Promise<SetAdaptivePolicyResult>;
  /** Deletes a policy; its stages stop applying at once (within the limiters' refresh). */
  deletePolicy(input: { name: string }): Promise<{ deleted: boolean }>;
  policies(): Promise<{ policies: AdaptivePolicy[] }>;
  state(): Promise<AdaptiveState>;
  history(input?: AdaptiveHistoryInput): Promise<{ changes: LevelChange[] }>;
}
