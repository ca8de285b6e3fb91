/**
 * The adaptive controller's decision, pure: given a policy's thresholds, its current level and
 * one reading, the next level. Hysteresis (relaxBelow < tightenAbove) and a minimum dwell
 * between changes are what keep it from flapping:
 * - a reading above `tightenAbove` adds one stage, unless the last change was less than
 *   `dwellMs` ago (the very first tightening is immediate);
 * - readings below `relaxBelow` (or no data) for `dwellMs` in a row remove one stage, again at
 *   most one per `dwellMs`;
 * - a reading in between changes nothing and ends a quiet run.
 * Evaluating the same reading twice at the same instant changes nothing the second time.
 */

export interface Thresholds {
  tightenAbove: number;
  relaxBelow: number;
  dwellMs: number;
  stages: number;
}

export interface ControllerState {
  level: number;
  lastChangeAt: number | null;
  /** Start of the current run of quiet readings; `null` when the latest reading was not quiet. */
  belowSince: number | null;
}

export interface Step {
  state: ControllerState;
  /** Set when the level changed. */
  change?: { from: number; to: number; reason: "tightened" | "relaxed" };
}

export function step(policy: Thresholds, state: ControllerState, value: number | null, nowMs: number): Step {
  const above = value !== null && value > policy.tightenAbove;
  const quiet = value === null || value < policy.relaxBelow;
  const belowSince = quiet ? (state.belowSince ?? nowMs) : null;
  const dwelt = state.lastChangeAt === null || nowMs - state.lastChangeAt >= policy.dwellMs;
  if (above && dwelt && state.level < policy.stages) {
    const to = state.level + 1;
    return { state: { level: to, lastChangeAt: nowMs, belowSince }, change: { from: state.level, to, reason: "tightened" } };
  }
  if (quiet && dwelt && state.level > 0 && nowMs - belowSince! >= policy.dwellMs) {
    const to = state.level - 1;
    return { state: { level: to, lastChangeAt: nowMs, belowSince }, change: { from: state.level, to, reason: "relaxed" } };
  }
  return { state: { level: Math.min(state.level, policy.stages), lastChangeAt: state.lastChangeAt, belowSince } };
}
