import { ByteReader, ByteWriter } from "./bytes";

/** Relative accuracy of every quantile the sketch answers (DDSketch's alpha). */
export const DDSKETCH_RELATIVE_ACCURACY = 0.01;
/** Values below this count as zero (1 µs when values are milliseconds). */
export const DDSKETCH_MIN_VALUE = 1e-3;

const GAMMA = (1 + DDSKETCH_RELATIVE_ACCURACY) / (1 - DDSKETCH_RELATIVE_ACCURACY);
const LOG_GAMMA = Math.log(GAMMA);
const FORMAT_VERSION = 1;

/**
 * The bucket a value falls in, the same mapping the sketch uses: `null` for values below
 * DDSKETCH_MIN_VALUE (counted as zero), otherwise the index `i` of (γ^(i-1), γ^i]. Exported so
 * counts kept per bucket in SQL (metrics) answer quantiles with the sketch's 1% guarantee.
 */
export function ddsketchIndex(value: number): number | null {
  if (!Number.isFinite(value) || value < DDSKETCH_MIN_VALUE) return null;
  return Math.ceil(Math.log(value) / LOG_GAMMA);
}

/** The value reported for bucket `index`: within 1% of every value the bucket holds. */
export function ddsketchValue(index: number): number {
  return (2 * GAMMA ** index) / (GAMMA + 1);
}

/**
 * A DDSketch (Masson, Rim & Lee, VLDB 2019) with logarithmic buckets and no collapsing:
 * every quantile it reports is within 1% of the exact value of that rank. Bucket `i` holds
 * values in (γ^(i-1), γ^i], γ = 1.01/0.99, so the sketch's size grows with log(max/min), not
 * with the number of values (values in 1 µs..1 h need at most about 1,100 buckets).
 *
 * Merging adds bucket counts, so it is exactly associative and commutative.
 */
export class DDSketch {
  #bins = new Map<number, number>();
  #zero = 0;
  #count = 0;
  #min = Number.POSITIVE_INFINITY;
  #max = Number.NEGATIVE_INFINITY;

  get count(): number {
    return this.#count;
  }

  get min(): number | null {
    return this.#count === 0 ? null : this.#min;
  }

  get max(): number | null {
    return this.#count === 0 ? null : this.#max;
  }

  /** Adds `value` (finite, ≥ 0) `times` times. */
  add(value: number, times = 1): this {
    if (!Number.isFinite(value) || value < 0) throw new RangeError(`DDSketch takes finite values ≥ 0, got ${value}`);
    if (!Number.isSafeInteger(times) || times < 1) throw new RangeError(`times must be a positive integer, got ${times}`);
    if (value < DDSKETCH_MIN_VALUE) this.#zero += times;
    else {
      const index = Math.ceil(Math.log(value) / LOG_GAMMA);
      this.#bins.set(index, (this.#bins.get(index) ?? 0) + times);
    }
    this.#count += times;
    if (value < this.#min) this.#min = value;
    if (value > this.#max) this.#max = value;
    return this;
  }

  /** Adds every value of `other` to this sketch. */
  merge(other: DDSketch): this {
    for (const [index, count] of other.#bins) this.#bins.set(index, (this.#bins.get(index) ?? 0) + count);
    this.#zero += other.#zero;
    this.#count += other.#count;
    if (other.#min < this.#min) this.#min = other.#min;
    if (other.#max > this.#max) this.#max = other.#max;
    return this;
  }

  /**
   * The value of rank ⌊q·(n−1)⌋ (0-based, ascending), within 1% relative error; `null` when
   * empty. The exact minimum and maximum are returned for q = 0 and q = 1.
   */
  quantile(q: number): number | null {
    if (!(q >= 0 && q <= 1)) throw new RangeError(`quantile must be in [0, 1], got ${q}`);
    if (this.#count === 0) return null;
    if (q === 0) return this.#min;
    if (q === 1) return this.#max;
    const rank = Math.floor(q * (this.#count - 1));
    if (rank < this.#zero) return 0;
    let seen = this.#zero;
    for (const index of [...this.#bins.keys()].sort((a, b) => a - b)) {
      seen += this.#bins.get(index)!;
      if (seen > rank) {
        const estimate = (2 * GAMMA ** index) / (GAMMA + 1);
        return Math.min(Math.max(estimate, this.#min), this.#max);
      }
    }
    return this.#max;
  }

  clone(): DDSketch {
    return new DDSketch().merge(this);
  }

  /** A compact, canonical encoding: equal sketches serialize to equal bytes. */
  serialize(): Uint8Array {
    const writer = new ByteWriter().byte(FORMAT_VERSION).uint(this.#count).uint(this.#zero);
    const indexes = [...this.#bins.keys()].sort((a, b) => a - b);
    writer.uint(indexes.length);
    let previous = 0;
    for (const index of indexes) {
      writer.int(index - previous).uint(this.#bins.get(index)!);
      previous = index;
    }
    const out = writer.finish();
    if (this.#count === 0) return out;
    const tail = new Uint8Array(16);
    const view = new DataView(tail.buffer);
    view.setFloat64(0, this.#min);
    view.setFloat64(8, this.#max);
    const joined = new Uint8Array(out.length + 16);
    joined.set(out);
    joined.set(tail, out.length);
    return joined;
  }

  static deserialize(data: Uint8Array): DDSketch {
    const reader = new ByteReader(data);
    if (reader.byte() !== FORMAT_VERSION) throw new RangeError("unknown DDSketch format");
    const sketch = new DDSketch();
    sketch.#count = reader.uint();
    sketch.#zero = reader.uint();
    const length = reader.uint();
    let index = 0;
    let inBins = 0;
    for (let i = 0; i < length; i += 1) {
      index += reader.int();
      const count = reader.uint();
      sketch.#bins.set(index, count);
      inBins += count;
    }
    if (inBins + sketch.#zero !== sketch.#count) throw new RangeError("corrupt DDSketch: counts do not add up");
    if (sketch.#count > 0) {
      const view = new DataView(reader.bytes(16).buffer);
      sketch.#min = view.getFloat64(0);
      sketch.#max = view.getFloat64(8);
    }
    return sketch;
  }
}
