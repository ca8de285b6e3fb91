import { ByteReader, ByteWriter } from "./bytes";
import { hash53 } from "./hash";

/** Register-index bits: m = 2^14 registers, standard error 1.04/√m ≈ 0.81%. */
export const HLL_PRECISION = 14;
/** Up to this many distinct items the sketch keeps their hashes and counts exactly. */
export const HLL_EXACT_LIMIT = 1024;

const M = 2 ** HLL_PRECISION;
/** Hash bits left for the rank once the register index is taken (53 − p). */
const Q = 53 - HLL_PRECISION;
const RANK_SPACE = 2 ** Q;
const FORMAT_VERSION = 1;
const EXACT = 0;
const DENSE = 1;

/**
 * A HyperLogLog of distinct items that is exact while small: up to `HLL_EXACT_LIMIT` distinct
 * items it holds their 53-bit hashes (exact up to a hash collision, odds below 1 in 10^10),
 * then switches to 2^14 registers and Ertl's improved estimator (no bias tables, no range
 * switch). Merging is a set union or a register-wise max: exactly associative and
 * commutative, and the representation a merge ends in does not depend on merge order.
 */
export class HyperLogLog {
  #exact: Set<number> | null = new Set();
  #registers: Uint8Array | null = null;

  /** Adds one item (a client id). */
  add(item: string): this {
    return this.addHash(hash53(item));
  }

  addHash(hash: number): this {
    if (this.#exact !== null) {
      this.#exact.add(hash);
      if (this.#exact.size > HLL_EXACT_LIMIT) this.#densify();
    } else {
      setRegister(this.#registers!, hash);
    }
    return this;
  }

  merge(other: HyperLogLog): this {
    if (other.#exact !== null) {
      for (const hash of other.#exact) this.addHash(hash);
      return this;
    }
    if (this.#exact !== null) this.#densify();
    const mine = this.#registers!;
    const theirs = other.#registers!;
    for (let i = 0; i < M; i += 1) if (theirs[i]! > mine[i]!) mine[i] = theirs[i]!;
    return this;
  }

  /** Whether the count is exact (few enough distinct items). */
  get exact(): boolean {
    return this.#exact !== null;
  }

  /** The number of distinct items: exact while small, otherwise within about 2% (2.5 σ). */
  estimate(): number {
    if (this.#exact !== null) return this.#exact.size;
    return Math.round(ertlEstimate(this.#registers!));
  }

  clone(): HyperLogLog {
    return new HyperLogLog().merge(this);
  }

  serialize(): Uint8Array {
    const writer = new ByteWriter().byte(FORMAT_VERSION);
    if (this.#exact !== null) {
      const hashes = [...this.#exact].sort((a, b) => a - b);
      writer.byte(EXACT).uint(hashes.length);
      let previous = 0;
      for (const hash of hashes) {
        writer.uint(hash - previous);
        previous = hash;
      }
      return writer.finish();
    }
    return writer.byte(DENSE).bytes(this.#registers!).finish();
  }

  static deserialize(data: Uint8Array): HyperLogLog {
    const reader = new ByteReader(data);
    if (reader.byte() !== FORMAT_VERSION) throw new RangeError("unknown HyperLogLog format");
    const sketch = new HyperLogLog();
    const mode = reader.byte();
    if (mode === EXACT) {
      const length = reader.uint();
      let hash = 0;
      for (let i = 0; i < length; i += 1) {
        hash += reader.uint();
        sketch.#exact!.add(hash);
      }
      if (sketch.#exact!.size > HLL_EXACT_LIMIT) sketch.#densify();
    } else if (mode === DENSE) {
      sketch.#exact = null;
      sketch.#registers = reader.bytes(M);
      if (sketch.#registers.some((value) => value > Q + 1)) throw new RangeError("corrupt HyperLogLog register");
    } else {
      throw new RangeError("unknown HyperLogLog mode");
    }
    return sketch;
  }

  #densify(): void {
    const registers = new Uint8Array(M);
    for (const hash of this.#exact!) setRegister(registers, hash);
    this.#exact = null;
    this.#registers = registers;
  }
}

function setRegister(registers: Uint8Array, hash: number): void {
  const index = Math.floor(hash / RANK_SPACE);
  const rest = hash % RANK_SPACE;
  // Position of the first 1-bit in the Q-bit remainder, counted from 1; Q + 1 when all zero.
  const rank = rest === 0 ? Q + 1 : Q - highestBit(rest);
  if (rank > registers[index]!) registers[index] = rank;
}

/** The index of the highest 1-bit of a positive integer below 2^53 (integer math: log2 rounds). */
function highestBit(value: number): number {
  const high = Math.floor(value / 2 ** 32);
  return high > 0 ? 63 - Math.clz32(high) : 31 - Math.clz32(value >>> 0);
}

/** Ertl, "New cardinality estimation algorithms for HyperLogLog sketches" (2017), Algorithm 6. */
function ertlEstimate(registers: Uint8Array): number {
  const histogram = new Array<number>(Q + 2).fill(0);
  for (const value of registers) histogram[value]! += 1;
  let z = M * tau(1 - histogram[Q + 1]! / M);
  for (let k = Q; k >= 1; k -= 1) z = 0.5 * (z + histogram[k]!);
  z += M * sigma(histogram[0]! / M);
  return (M * M) / (2 * Math.LN2 * z);
}

function sigma(x: number): number {
  if (x === 1) return Number.POSITIVE_INFINITY;
  let y = 1;
  let z = x;
  for (;;) {
    x *= x;
    const previous = z;
    z += x * y;
    y += y;
    if (z === previous) return z;
  }
}

function tau(x: number): number {
  if (x === 0 || x === 1) return 0;
  let y = 1;
  let z = 1 - x;
  for (;;) {
    x = Math.sqrt(x);
    const previous = z;
    y *= 0.5;
    z -= (1 - x) ** 2 * y;
    if (z === previous) return z / 3;
  }
}
