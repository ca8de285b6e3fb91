import type { Algorithm } from "../../rpc/rate-limits";

/**
 * What a window algorithm remembers for one rule of one subject. Windows are aligned to
 * the epoch (`windowStartMs` is a multiple of `periodMs`), so a restart never shifts them.
 */
export interface WindowState {
  algorithm: Algorithm;
  periodMs: number;
  windowStartMs: number;
  count: number;
  /** sliding_window only: the count of the window before `windowStartMs`. */
  previousCount: number;
}

/** One rule's verdict on one call, and the state to store if the whole check is admitted. */
export interface RuleOutcome {
  allowed: boolean;
  /** Units admissible after this call (after charging, when allowed). */
  remaining: number;
  resetAt: number;
  retryAfterMs: number;
  /** State after charging `cost`; stored only if every enforced rule admits. */
  charged: WindowState;
  /** When `charged` stops mattering and may be deleted. */
  expiresAtMs: number;
}

/** The start of the epoch-aligned window containing `nowMs`. */
export function windowStart(nowMs: number, periodMs: number): number {
  return nowMs - (nowMs % periodMs);
}

/** Stored state still applies only to the same algorithm and period; otherwise it starts afresh. */
export function compatibleState(
  state: WindowState | undefined,
  algorithm: Algorithm,
  periodMs: number,
): WindowState | undefined {
  return state && state.algorithm === algorithm && state.periodMs === periodMs ? state : undefined;
}
