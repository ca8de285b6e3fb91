/** How a failing task is retried: exponential from 1 s, capped at 1 h, parked after 8 failures. */
export const RETRY_BASE_MS = 1_000;
export const RETRY_CAP_MS = 3_600_000;
export const MAX_ATTEMPTS = 8;

/** Delay before attempt `failures + 1`, after `failures` failures (failures >= 1). Deterministic. */
export function retryDelayMs(failures: number): number {
  return Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** Math.max(0, failures - 1));
}

/** A task that has failed this many times stops being retried and waits for an operator. */
export function shouldPark(failures: number): boolean {
  return failures >= MAX_ATTEMPTS;
}
