import type { AlertKind, AlertRule } from "../../../../rpc/alerts";

/**
 * One evaluation's signal. `value` is `null` when there is too little data to judge (no
 * requests in the window, no spend cap, no budget): never past the trigger. `threshold`
 * supplies the trigger when the rule leaves it to the source (a cost rule without its own
 * threshold uses the configured budget).
 */
export interface SignalReading {
  value: number | null;
  threshold?: number;
}

/** Reads one kind's signal. Throws when the signal cannot be read (the rule's state is then left as it was). */
export interface SignalReader<R extends AlertRule = AlertRule> {
  read(rule: R, nowMs: number): Promise<SignalReading>;
}

/** The readers an evaluator can use, by kind. A kind without a reader cannot be set as a rule. */
export type SignalReaders = { [K in AlertKind]?: SignalReader<Extract<AlertRule, { kind: K }>> };

/** Disposes an RPC stub or result, when the runtime gives it a disposer. */
function dispose(value: unknown): void {
  const symbol = (Symbol as { dispose?: symbol }).dispose;
  if (symbol !== undefined && typeof value === "object" && value !== null) (value as Record<symbol, (() => void) | undefined>)[symbol]?.();
}

/**
 * Calls `stub` once, returns the result (its fields stay readable) and disposes the stub, the
 * call and the result, whether the call succeeded or threw. A Workers RPC stub or result keeps
 * its session open until disposed or collected, and an object holding one cannot be evicted.
 */
export async function callOnce<S, T>(stub: S, call: (stub: S) => Promise<T>): Promise<T> {
  const pending = call(stub);
  try {
    const result = await pending;
    dispose(result);
    return result;
  } finally {
    // The call itself too: a failed call has no result to dispose, but holds its session.
    dispose(pending);
    dispose(stub);
  }
}
