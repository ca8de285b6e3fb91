/**
 * Retention contract: `Admin.retention()` over a Workers binding and over capnweb. Types only.
 * See docs/operations.md ("Retention by data class").
 */

/** One class of stored data and how long it is kept. */
export interface RetentionClass {
  /** `limiter.idempotency`, `ledger.entries`, `paths.minutes`, ... */
  dataClass: string;
  /** How long a record is kept (ms); `null` when not a fixed time (forever, or while it matters: see `note`). */
  keptMs: number | null;
  /** The variable (and field) that sets it, e.g. `RETENTION.ledgerIdempotency`; `null` when fixed. */
  setting: string | null;
  /** What deletes it, and in what batches. */
  appliedBy: string;
  note: string;
}

export interface RetentionInput {
  /** Only this class; default every class. */
  dataClass?: string;
}

/** The effective settings, after defaults and configuration. */
export interface RetentionSettings {
  classes: RetentionClass[];
}

export interface RetentionApi {
  /** The effective retention of every data class (or one). `INTERNAL` when a retention variable is malformed. */
  retention(input?: RetentionInput): Promise<RetentionSettings>;
}
