/** How many heavy hitters a summary tracks. */
export const TOPK_CAPACITY = 100;
const FORMAT_VERSION = 1;

export interface HeavyHitter {
  item: string;
  /** A guaranteed lower bound of the item's true count. */
  count: number;
  /** A guaranteed upper bound: `count + errorBound`. */
  upper: number;
}

/**
 * Heavy hitters in bounded space: the Misra–Gries form of Space-Saving (the two are
 * isomorphic, Agarwal et al., "Mergeable Summaries", PODS 2012), chosen because its merge
 * keeps a proven bound. With k counters over n items, each tracked count undercounts by at
 * most `errorBound = (n − Σcounters)/(k+1) ≤ n/(k+1)`, and every item whose true count
 * exceeds `errorBound` is tracked. Merging is exactly commutative; it is associative in its
 * guarantee (any merge order keeps the bound), not in the exact counters it ends with.
 */
export class TopK {
  #counters = new Map<string, number>();
  #total = 0;

  constructor(readonly capacity: number = TOPK_CAPACITY) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be a positive integer`);
  }

  /** Every item counted, tracked or not. */
  get total(): number {
    return this.#total;
  }

  add(item: string, times = 1): this {
    if (!Number.isSafeInteger(times) || times < 1) throw new RangeError(`times must be a positive integer, got ${times}`);
    this.#counters.set(item, (this.#counters.get(item) ?? 0) + times);
    this.#total += times;
    this.#reduce();
    return this;
  }

  merge(other: TopK): this {
    for (const [item, count] of other.#counters) this.#counters.set(item, (this.#counters.get(item) ?? 0) + count);
    this.#total += other.#total;
    this.#reduce();
    return this;
  }

  /** The most any tracked count can be below the truth; any untracked item's count is at most this. */
  get errorBound(): number {
    let tracked = 0;
    for (const count of this.#counters.values()) tracked += count;
    return Math.floor((this.#total - tracked) / (this.capacity + 1));
  }

  /** Lower bound of `item`'s count (0 when untracked). */
  count(item: string): number {
    return this.#counters.get(item) ?? 0;
  }

  /** Tracked items, largest first (ties by item, so the order is deterministic). */
  top(limit: number = this.capacity): HeavyHitter[] {
    const bound = this.errorBound;
    return [...this.#counters]
      .sort(([a, ca], [b, cb]) => cb - ca || (a < b ? -1 : a > b ? 1 : 0))
      .slice(0, limit)
      .map(([item, count]) => ({ item, count, upper: count + bound }));
  }

  clone(): TopK {
    return new TopK(this.capacity).merge(this);
  }

  serialize(): string {
    const counters = [...this.#counters].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return JSON.stringify({ v: FORMAT_VERSION, k: this.capacity, n: this.#total, c: counters });
  }

  static deserialize(text: string): TopK {
    const parsed = JSON.parse(text) as { v: number; k: number; n: number; c: [string, number][] };
    if (parsed.v !== FORMAT_VERSION) throw new RangeError("unknown TopK format");
    const sketch = new TopK(parsed.k);
    let tracked = 0;
    for (const [item, count] of parsed.c) {
      if (typeof item !== "string" || !Number.isSafeInteger(count) || count < 1) throw new RangeError("corrupt TopK counter");
      sketch.#counters.set(item, count);
      tracked += count;
    }
    if (!Number.isSafeInteger(parsed.n) || parsed.n < tracked || sketch.#counters.size > sketch.capacity) {
      throw new RangeError("corrupt TopK summary");
    }
    sketch.#total = parsed.n;
    return sketch;
  }

  /** Misra–Gries reduction: subtract the (k+1)-th largest counter from all, drop those left ≤ 0. */
  #reduce(): void {
    if (this.#counters.size <= this.capacity) return;
    const sorted = [...this.#counters.values()].sort((a, b) => b - a);
    const cut = sorted[this.capacity]!;
    for (const [item, count] of this.#counters) {
      if (count <= cut) this.#counters.delete(item);
      else this.#counters.set(item, count - cut);
    }
  }
}
