import { sleep } from "./durations";

/**
 * Group commit for state an object keeps in memory and writes back to its SQLite storage.
 *
 * A call changes the in-memory state at once, synchronously (so every decision is exact: the
 * object is single-threaded), then waits for the flush that writes it. At most one flush is in
 * flight: while it becomes durable, later calls gather into the next batch, which one flush then
 * writes for all of them. So a sequential caller pays one write per call, and `c` concurrent
 * callers about one write per `c` calls.
 *
 * Durability: a caller's promise settles only after the flush holding its change has been issued
 * (in one `transactionSync`); the runtime's output gate then holds its answer until that write
 * is durable. No answer is ever computed from a change whose write has not been issued and then
 * released before it: reads go through `read`, which waits for the open batch too.
 *
 * Failure: a flush that throws is rolled back (storage stays as it was), every caller of its
 * batch is rejected with the error, and `discard` is called so the object drops its in-memory
 * state and reloads it from storage: nothing unwritten is ever answered from. A write that
 * fails to become durable rejects the batch gathered meanwhile and discards the same way.
 */
export interface GroupCommitOptions {
  /** Writes every change made since the last flush. Runs inside `transaction`: all or nothing. */
  flush(): void;
  /** One synchronous storage transaction: `(body) => ctx.storage.transactionSync(body)`. */
  transaction(body: () => void): void;
  /** Resolves once everything written so far is durable: `() => ctx.storage.sync()`. */
  durable(): Promise<void>;
  /** A flush failed: forget the in-memory state, so the next call reloads it from storage. */
  discard(error: unknown): void;
}

/** The callers waiting for one flush. */
class Batch {
  readonly written: Promise<void>;
  settle!: (error?: unknown) => void;

  constructor() {
    this.written = new Promise<void>((resolve, reject) => {
      this.settle = (error) => (error === undefined ? resolve() : reject(error));
    });
  }
}

export class GroupCommit {
  readonly #options: GroupCommitOptions;
  /** Changes made and not yet written, and their callers; null when everything is written. */
  #open: Batch | null = null;
  /** A flush was issued and is not yet known durable: the next one waits for it. */
  readonly #inFlight = new WriteInFlight();

  constructor(options: GroupCommitOptions) {
    this.#options = options;
  }

  /**
   * Runs `mutate` (a synchronous change of the in-memory state; it must change all or nothing)
   * now, and resolves with its result once a flush has written it and every change before it.
   * If `mutate` throws, nothing is marked changed and the error is thrown here, synchronously.
   */
  change<T>(mutate: () => T): Promise<T> {
    const result = mutate();
    const batch = (this.#open ??= new Batch());
    const written = batch.written.then(() => result);
    if (!this.#inFlight.writing) this.#flush();
    return written;
  }

  /**
   * Runs `read` now and resolves with its result once every change it may have seen has been
   * written (at once when nothing is waiting for a flush).
   */
  read<T>(read: () => T): Promise<T> {
    const result = read();
    return this.#open === null ? Promise.resolve(result) : this.#open.written.then(() => result);
  }

  /**
   * Rejects the callers whose changes wait for the next flush, with `error`, and discards the
   * in-memory state: for when storage was replaced under them (a restore), so nothing of theirs
   * may be written or answered. A flush in flight is not affected: its callers were answered.
   */
  abandon(error: unknown): void {
    const open = this.#open;
    this.#open = null;
    this.#options.discard(error);
    open?.settle(error);
  }

  #flush(): void {
    const batch = this.#open!;
    this.#open = null;
    try {
      this.#options.transaction(() => this.#options.flush());
    } catch (error) {
      this.#options.discard(error);
      batch.settle(error ?? new Error("flush failed"));
      return;
    }
    batch.settle();
    this.#inFlight.issued(
      this.#options.durable(),
      () => {
        if (this.#open !== null) this.#flush();
      },
      (error) => {
        const open = this.#open;
        this.#open = null;
        this.#options.discard(error);
        open?.settle(error ?? new Error("write failed"));
      },
    );
  }
}

/**
 * The one write a group commit has in flight. `issued` marks it until it is durable and one
 * turn of the event loop has passed (see nextTurn), then calls `next` to run the batch gathered
 * meanwhile, or `failed` with the error if the write did not become durable.
 */
export class WriteInFlight {
  #writing = false;

  get writing(): boolean {
    return this.#writing;
  }

  issued(durable: Promise<void>, next: () => void, failed: (error: unknown) => void): void {
    this.#writing = true;
    durable.then(nextTurn).then(
      () => {
        this.#writing = false;
        next();
      },
      (error: unknown) => {
        this.#writing = false;
        failed(error);
      },
    );
  }
}

/**
 * One turn of the event loop. A group commit waits for it after a write is durable, before the
 * next batch closes: calls already delivered to the object, and not yet run, then join that
 * batch. Without it a write that is durable at once (locally it is) lets each call in alone.
 */
export function nextTurn(): Promise<void> {
  return sleep(0);
}
