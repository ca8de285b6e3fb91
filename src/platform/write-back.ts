/**
 * Write-back of hot rows inside synchronous storage transactions.
 *
 * Cloudflare bills every row a statement writes, so a row that several changes of one
 * transaction touch (a grant many spends draw from, a key's spend counters) should be written
 * once, when the transaction commits, not once per change. `WriteBackRows` keeps such rows in
 * memory while a transaction is open: reads go through it, changes replace the cached row, and
 * `WriteBackTransactions` writes every changed row just before the outermost transaction
 * commits, inside it. Outside a transaction the cache is empty and storage is current, so a
 * read from storage (a report, the audit) never sees a stale row.
 *
 * Nesting: each level of `WriteBackTransactions.run` is a savepoint of the storage transaction.
 * A level that throws rolls its storage changes back and restores the caches to what they held
 * when it began, so a failed call inside a batch leaves nothing of itself in memory either.
 */

/** What a transaction needs of a cache: its bounds, a mark to roll back to, and the write at commit. */
export interface WriteBackCache {
  /** The outermost transaction begins: rows read from now on are cached. */
  begin(): void;
  /** The outermost transaction ended, committed or not: the cache empties and stops caching. */
  end(): void;
  mark(): unknown;
  restore(mark: unknown): void;
  /** Writes every changed row and empties the cache. Runs inside the outermost transaction. */
  writeBack(): void;
}

export interface WriteBackRowsOptions<Row> {
  /** The stored row, or undefined when there is none. */
  load(key: string): Row | undefined;
  /** Writes `row` (which differs from `stored`, the row as loaded; undefined: a new row). */
  store(key: string, row: Row, stored: Row | undefined): void;
}

/**
 * Rows of one table, keyed by a string, cached for the open transaction. Rows are values: a
 * change sets a new object, never mutates a cached one (so a mark is a shallow copy).
 */
export class WriteBackRows<Row> implements WriteBackCache {
  readonly #options: WriteBackRowsOptions<Row>;
  /** The current value of every row read or changed in the open transaction. */
  #current = new Map<string, Row | undefined>();
  /** The same rows as storage holds them. */
  #stored = new Map<string, Row | undefined>();
  /** Inside a transaction: outside one nothing is cached, so a read is always current. */
  #open = false;

  constructor(options: WriteBackRowsOptions<Row>) {
    this.#options = options;
  }

  get(key: string): Row | undefined {
    if (!this.#open) return this.#options.load(key);
    if (!this.#current.has(key)) {
      const row = this.#options.load(key);
      this.#current.set(key, row);
      this.#stored.set(key, row);
    }
    return this.#current.get(key);
  }

  set(key: string, row: Row): void {
    if (!this.#open) throw new Error("a write-back row was changed outside a transaction");
    this.get(key);
    this.#current.set(key, row);
  }

  /**
   * `stored` (rows a query read from storage) with each cached row in place of its stored copy,
   * plus the cached rows the query missed, all filtered by `keep` (the query's condition, on the
   * current values): what the query would return if every change were written.
   */
  overlay(stored: readonly Row[], keyOf: (row: Row) => string, keep: (row: Row) => boolean): Row[] {
    const seen = new Set<string>();
    const rows: Row[] = [];
    for (const row of stored) {
      const key = keyOf(row);
      seen.add(key);
      const current = this.#current.has(key) ? this.#current.get(key) : row;
      if (current !== undefined && keep(current)) rows.push(current);
    }
    for (const [key, row] of this.#current) {
      if (!seen.has(key) && row !== undefined && keep(row)) rows.push(row);
    }
    return rows;
  }

  begin(): void {
    this.#open = true;
  }

  end(): void {
    this.#open = false;
    this.#current = new Map();
    this.#stored = new Map();
  }

  mark(): unknown {
    return new Map(this.#current);
  }

  restore(mark: unknown): void {
    this.#current = mark as Map<string, Row | undefined>;
  }

  writeBack(): void {
    const current = this.#current;
    const stored = this.#stored;
    this.#current = new Map();
    this.#stored = new Map();
    for (const [key, row] of current) {
      const before = stored.get(key);
      if (row !== undefined && row !== before) this.#options.store(key, row, before);
    }
  }
}

/**
 * Nestable synchronous transactions that write back `caches` at the outermost commit. `storage`
 * is the object's `(body) => ctx.storage.transactionSync(body)`, which nests as savepoints.
 */
export class WriteBackTransactions {
  readonly #storage: <T>(body: () => T) => T;
  readonly #caches: readonly WriteBackCache[];
  #depth = 0;

  constructor(storage: <T>(body: () => T) => T, caches: readonly WriteBackCache[]) {
    this.#storage = storage;
    this.#caches = caches;
  }

  run<T>(body: () => T): T {
    const outermost = this.#depth === 0;
    if (outermost) for (const cache of this.#caches) cache.begin();
    const marks = this.#caches.map((cache) => cache.mark());
    this.#depth++;
    try {
      return this.#storage(() => {
        const result = body();
        if (outermost) for (const cache of this.#caches) cache.writeBack();
        return result;
      });
    } catch (error) {
      // Storage rolled this level back; so does memory.
      for (const [i, cache] of this.#caches.entries()) cache.restore(marks[i]);
      throw error;
    } finally {
      this.#depth--;
      if (outermost) for (const cache of this.#caches) cache.end();
    }
  }
}

/**
 * Rows a transaction changes in memory only, written later by `flush` (for counters that are
 * observations, not decisions: a crash loses what was not flushed yet). They still roll back
 * with a failed transaction, like `WriteBackRows`; `writeBack` keeps them for the next flush.
 */
export class DeferredRows<Row> implements WriteBackCache {
  readonly #options: WriteBackRowsOptions<Row>;
  /** Every row read or changed since this object woke: memory is the newer copy of what storage holds. */
  #current = new Map<string, Row | undefined>();
  /** Rows changed and not flushed yet. */
  #dirty = new Set<string>();
  #open = false;

  constructor(options: WriteBackRowsOptions<Row>) {
    this.#options = options;
  }

  get(key: string): Row | undefined {
    if (!this.#current.has(key)) this.#current.set(key, this.#options.load(key));
    return this.#current.get(key);
  }

  set(key: string, row: Row): void {
    if (!this.#open) throw new Error("a deferred row was changed outside a transaction");
    this.get(key);
    this.#current.set(key, row);
    this.#dirty.add(key);
  }

  /** Forgets every row and pending change: storage was replaced under them (a restore). */
  reset(): void {
    this.#current = new Map();
    this.#dirty = new Set();
  }

  /** Whether changes wait for a flush. */
  pending(): boolean {
    return this.#dirty.size > 0;
  }

  /** Writes the changed rows. Runs inside a transaction; if that fails, they stay pending. */
  flush(): void {
    for (const key of this.#dirty) this.#options.store(key, this.#current.get(key)!, undefined);
    this.#dirty = new Set();
  }

  begin(): void {
    this.#open = true;
  }

  end(): void {
    this.#open = false;
  }

  mark(): unknown {
    return { current: new Map(this.#current), dirty: new Set(this.#dirty) };
  }

  restore(mark: unknown): void {
    const { current, dirty } = mark as { current: Map<string, Row | undefined>; dirty: Set<string> };
    this.#current = current;
    this.#dirty = dirty;
  }

  writeBack(): void {}
}

/**
 * Values read inside the open transaction, kept until it ends or a write of what they were read
 * from forgets them: reads one call repeats run once. Nothing is kept outside a transaction, so a
 * read there is always current; a rolled-back level forgets everything (it may have written).
 */
export class TransactionMemo<V> implements WriteBackCache {
  #values: Map<string, V> | null = null;

  get(key: string, load: () => V): V {
    const values = this.#values;
    if (values?.has(key)) return values.get(key) as V;
    const value = load();
    values?.set(key, value);
    return value;
  }

  /**
   * What a write just made the value, so the next read inside the transaction need not query:
   * the writer knows it exactly. Outside a transaction nothing is kept, as with `get`.
   */
  set(key: string, value: V): void {
    this.#values?.set(key, value);
  }

  forget(): void {
    if (this.#values !== null) this.#values = new Map();
  }

  /** Whether a transaction is open: what is read now could still be rolled back. */
  get inTransaction(): boolean {
    return this.#values !== null;
  }

  begin(): void {
    this.#values = new Map();
  }

  end(): void {
    this.#values = null;
  }

  mark(): unknown {
    return null;
  }

  restore(): void {
    this.forget();
  }

  writeBack(): void {}
}
