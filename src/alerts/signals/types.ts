import type { AlertKind, AlertRule } from "../../../rpc/alerts";

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
