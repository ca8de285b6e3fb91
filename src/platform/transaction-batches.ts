import { WriteInFlight } from "./group-commit";

/**
 * Group commit for objects whose calls read and write storage directly (the ledger), where
 * `GroupCommit` is for state kept in memory (the limiter).
 *
 * A call hands over its body, a synchronous read-decide-write. With no write in flight the body
 * runs at once, in a transaction of its own, exactly as a plain call would. While that write
 * becomes durable, later calls queue; then all of them run, in arrival order, inside ONE
 * transaction, each body in its own nested transaction (a savepoint), so a body that throws
 * undoes only itself. Rows several bodies of a batch touch are written once at its commit (see
 * write-back.ts). So a sequential caller runs as before, and `c` concurrent callers share one
 * commit and its hot-row writes.
 *
 * Gathering: once the write is durable, the next batch waits one turn of the event loop
 * (`setTimeout(0)`) before it closes, so calls already delivered to the object and not yet run
 * join it. Without that turn, a commit that is durable at once (locally, on disk, it is) lets
 * each call in alone; measured in the bench, that turn takes the grants written per gateway
 * request from 0.94 to about 0.1 at 16 callers (docs/cost.md).
 *
 * Exactness: bodies run one at a time and each sees every change before it (single-threaded,
 * no `await` inside a body). Durability: a caller's promise settles once the transaction holding
 * its body has committed; the runtime's output gate then holds its answer until that write is
 * durable, as for any write. A batch whose commit fails rejects all its callers and changes
 * nothing; a write that then fails to become durable rejects the calls queued behind it, which
 * never ran.
 */
export interface TransactionBatchesOptions {
  /** One (nestable) synchronous storage transaction. */
  transaction<T>(body: () => T): T;
  /** Resolves once everything written so far is durable: `() => ctx.storage.sync()`. */
  durable(): Promise<void>;
  /**
   * Captures the caller's context when it hands its body over, so the body runs in it later
   * (metering attributes each SQL cursor to the call it runs for). Default: none.
   */
  scope?: () => <R>(body: () => R) => R;
}

interface Queued {
  body: () => unknown;
  inScope: <R>(body: () => R) => R;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

export class TransactionBatches {
  readonly #options: TransactionBatchesOptions;
  #queue: Queued[] = [];
  /** A batch committed and is not yet known durable: calls queue for the next one. */
  readonly #inFlight = new WriteInFlight();
  /** Inside `together`: calls queue even with no write in flight, and commit as one batch when it ends. */
  #gathering = 0;

  constructor(options: TransactionBatchesOptions) {
    this.#options = options;
  }

  /** Runs `body` in the next batch's transaction and resolves (or rejects) with its outcome. */
  run<T>(body: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const inScope = this.#options.scope?.() ?? ((run) => run());
      this.#queue.push({ body, inScope, resolve: resolve as (value: unknown) => void, reject });
      if (!this.#inFlight.writing && this.#gathering === 0) this.#commit();
    });
  }

  /**
   * Runs `issue`, which hands over several bodies at once (synchronously, through `run`), so that
   * they share one batch: none runs alone first, as the first of them otherwise would. For a call
   * that carries many (the ledger's `commitMany`).
   */
  together<T>(issue: () => T): T {
    this.#gathering += 1;
    try {
      return issue();
    } finally {
      this.#gathering -= 1;
      if (this.#gathering === 0 && !this.#inFlight.writing) this.#commit();
    }
  }

  #commit(): void {
    const batch = this.#queue;
    this.#queue = [];
    if (batch.length === 0) return;
    let outcomes: Outcome[];
    try {
      outcomes = this.#options.transaction(() =>
        batch.map((call): Outcome => {
          try {
            return { ok: true, value: call.inScope(() => this.#options.transaction(call.body)) };
          } catch (error) {
            return { ok: false, error };
          }
        }),
      );
    } catch (error) {
      outcomes = batch.map(() => ({ ok: false, error }));
    }
    batch.forEach((call, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) call.resolve(outcome.value);
      else call.reject(outcome.error);
    });
    this.#inFlight.issued(
      this.#options.durable(),
      () => this.#commit(),
      (error) => {
        const waiting = this.#queue;
        this.#queue = [];
        for (const call of waiting) call.reject(error ?? new Error("write failed"));
      },
    );
  }
}
