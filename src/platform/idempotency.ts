import { conflict } from "./errors";
import { maybeOne, run, write } from "./sql";

/** Most expired records one prune run deletes (retention in small batches, so a backlog never holds an object for long). */
export const PRUNE_BATCH = 1_000;

/** Runs `body` in one synchronous storage transaction (`DurableObjectStorage.transactionSync`). */
export type Transaction = <T>(body: () => T) => T;

/** Where and how one object keeps its idempotency records. */
export interface IdempotencyConfig {
  /** The table: `idempotency_key TEXT PRIMARY KEY, fingerprint, <resultColumn>, created_at_ms, expires_at_ms`. */
  table: string;
  /** The column holding the first answer, as JSON. */
  resultColumn: string;
  /** The replay window, read at every use: the configuration may change under a live object. */
  windowMs: () => number;
  /**
   * Whether a record past its window still replays until it is pruned (the ledger: keys are
   * inserted once), or is dead at once and its key may be used again (the limiter: a new
   * answer replaces it).
   */
  replaysExpired: boolean;
  /** The CONFLICT message for a key reused with a different request (each caller's own wording). */
  conflictMessage: (key: string) => string;
  transaction: Transaction;
  /**
   * Records some calls keep outside the table, in a row they write anyway (`PendingRecord.keep`):
   * the one for `key`, if any. Searched after the table, so a key stays one key across both.
   */
  keptElsewhere?: (key: string) => StoredRecord | undefined;
}

/** A record as stored: the request's fingerprint (its JSON) and the first answer (JSON). */
export type StoredRecord = {
  fingerprint: string;
  result: string;
};

/**
 * The record of the keyed call whose body is running. A body that writes a row anyway may keep
 * the record in it (`keep`, with the answer it is about to return); the store then writes no
 * record of its own. That row must be found by `keptElsewhere`.
 */
export class PendingRecord {
  #kept = false;

  constructor(
    readonly key: string,
    readonly fingerprint: string,
  ) {}

  /** The body keeps the record with its own row: the columns to store, for the answer `result`. */
  keep(result: object): { key: string } & StoredRecord {
    this.#kept = true;
    return { key: this.key, fingerprint: this.fingerprint, result: JSON.stringify(result) };
  }

  get kept(): boolean {
    return this.#kept;
  }
}

/**
 * Each keyed call's first answer, so a retry gets it again. A record is the key, a fingerprint
 * of the request (its JSON) and the answer (JSON); the same key with another request is CONFLICT.
 */
export class IdempotencyStore {
  readonly #sql: SqlStorage;
  readonly #config: IdempotencyConfig;
  readonly #find: string;
  readonly #save: string;
  readonly #prune: string;
  readonly #earliest: string;

  constructor(sql: SqlStorage, config: IdempotencyConfig) {
    this.#sql = sql;
    this.#config = config;
    const { table, resultColumn } = config;
    const live = config.replaysExpired ? "" : " AND expires_at_ms > ?";
    this.#find = `SELECT fingerprint, ${resultColumn} AS result FROM ${table} WHERE idempotency_key = ?${live}`;
    // A dead record may still be in the table until pruned: a new answer replaces it.
    const insert = config.replaysExpired ? "INSERT" : "INSERT OR REPLACE";
    this.#save = `${insert} INTO ${table} (idempotency_key, fingerprint, ${resultColumn}, created_at_ms, expires_at_ms)
       VALUES (?, ?, ?, ?, ?)`;
    this.#prune = `DELETE FROM ${table} WHERE idempotency_key IN
       (SELECT idempotency_key FROM ${table} WHERE expires_at_ms <= ? ORDER BY expires_at_ms LIMIT ?)`;
    this.#earliest = `SELECT MIN(expires_at_ms) AS next FROM ${table}`;
  }

  /**
   * The stored answer to a retried `request` (results are objects, never undefined), or
   * undefined for a new key; CONFLICT if the key was used for another request.
   */
  find<T>(key: string, request: unknown, nowMs: number): T | undefined {
    // Read before anything is written: a malformed window fails the call (INTERNAL) with no change.
    this.#config.windowMs();
    const bindings = this.#config.replaysExpired ? [key] : [key, nowMs];
    const stored = maybeOne<StoredRecord>(this.#sql, this.#find, ...bindings) ?? this.#config.keptElsewhere?.(key);
    if (stored === undefined) return undefined;
    if (stored.fingerprint !== JSON.stringify(request)) throw conflict(this.#config.conflictMessage(key));
    return JSON.parse(stored.result) as T;
  }

  /** Records `result` as the answer to `request`; call it in the transaction that makes the change. */
  save(key: string, request: unknown, result: object, nowMs: number): void {
    write(this.#sql, this.#save, key, JSON.stringify(request), JSON.stringify(result), nowMs, nowMs + this.#config.windowMs());
  }

  /**
   * Runs `body` once per key: a retry returns the stored first result. The result and its record
   * are written in one transaction with the change, so a crash cannot separate them: in the
   * table, or in the body's own row when it keeps the record there (`PendingRecord.keep`).
   */
  run<T extends object>(key: string, request: unknown, nowMs: number, body: (record: PendingRecord) => T): T {
    const replay = this.find<T>(key, request, nowMs);
    if (replay !== undefined) return replay;
    return this.#config.transaction(() => {
      const record = new PendingRecord(key, JSON.stringify(request));
      const result = body(record);
      if (!record.kept) this.save(key, request, result, nowMs);
      return result;
    });
  }

  /** Deletes up to `PRUNE_BATCH` expired records, oldest first; returns how many (a full batch: more are due at once). */
  prune(nowMs: number): number {
    return run(this.#sql, this.#prune, nowMs, PRUNE_BATCH);
  }

  /** When the first remaining record expires, or null when none is left. */
  earliestExpiry(): number | null {
    return maybeOne<{ next: number | null }>(this.#sql, this.#earliest)?.next ?? null;
  }
}
