import type { Algorithm } from "../../../rpc/rate-limits";

/**
 * What a window algorithm remembers for one rule of one subject. Windows are aligned to
 * the epoch (`windowStartMs` is a multiple of `periodMs`), so a restart never shifts them.
 */
export interface WindowState {
  algorithm: "fixed_window" | "sliding_window";
  periodMs: number;
  windowStartMs: number;
  count: number;
  /** sliding_window only: the count of the window before `windowStartMs`. */
  previousCount: number;
}

/** One admitted call of `sliding_log`: when, and how many units. */
export interface LogEntry {
  atMs: number;
  cost: number;
}

/** `sliding_log`: every admitted call still inside the trailing period, oldest first. */
export interface LogState {
  algorithm: "sliding_log";
  periodMs: number;
  entries: LogEntry[];
}

/**
 * `token_bucket` and `gcra` both remember one integer level at one instant:
 * - token_bucket: `level` tokens left, `atMs` the start of the current refill cycle;
 * - gcra: `level` is the debt in units x periodMs at `atMs` (the theoretical arrival time
 *   is `atMs + level / limit`, kept as an integer pair so no float can drift).
 */
export interface LevelState {
  algorithm: "token_bucket" | "gcra";
  periodMs: number;
  level: number;
  atMs: number;
}

export type LimiterState = WindowState | LogState | LevelState;

/** One rule's verdict on one call, and the state to store if the whole check is admitted. */
export interface RuleOutcome {
  allowed: boolean;
  /** Units admissible after this call (after charging, when allowed). */
  remaining: number;
  resetAt: number;
  retryAfterMs: number;
  /** State after charging `cost`; stored only if every enforced rule admits. */
  charged: LimiterState;
  /** When `charged` stops mattering and may be deleted. */
  expiresAtMs: number;
}

/** A rule's new state, and when it stops mattering. */
export interface StateChange {
  state: LimiterState;
  expiresAtMs: number;
}

/** What a refund gave back to one rule, and the state to store. */
export interface RefundOutcome extends StateChange {
  refunded: number;
}

/** The start of the epoch-aligned window containing `nowMs`. */
export function windowStart(nowMs: number, periodMs: number): number {
  return nowMs - (nowMs % periodMs);
}

/** The kind of state an algorithm keeps. */
export type StateOf<A extends Algorithm> = A extends "fixed_window" | "sliding_window"
  ? WindowState
  : A extends "sliding_log"
    ? LogState
    : LevelState;

/** Stored state still applies only to the same algorithm and period; otherwise it starts afresh. */
export function compatibleState<A extends Algorithm>(
  state: LimiterState | undefined,
  algorithm: A,
  periodMs: number,
): StateOf<A> | undefined {
  return state && state.algorithm === algorithm && state.periodMs === periodMs ? (state as StateOf<A>) : undefined;
}

/** `ceil(a / b)` for non-negative safe integers, exactly (a float quotient can round up). */
export function ceilDiv(a: number, b: number): number {
  return Number((BigInt(a) + BigInt(b) - 1n) / BigInt(b));
}

/** `floor(a / b)` for non-negative safe integers, exactly. */
export function floorDiv(a: number, b: number): number {
  return Number(BigInt(a) / BigInt(b));
}
