import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DDSketch, DDSKETCH_RELATIVE_ACCURACY } from "../../src/sketches/ddsketch";
import { HLL_EXACT_LIMIT, HyperLogLog } from "../../src/sketches/hyperloglog";
import { TopK } from "../../src/sketches/top-k";
import { mulberry32 } from "../fixtures/prng";

const latency = fc.double({ min: 0.01, max: 3_600_000, noNaN: true, noDefaultInfinity: true });
const latencies = fc.array(latency, { minLength: 1, maxLength: 300 });
const ids = fc.array(fc.string({ minLength: 1, maxLength: 12 }), { maxLength: 200 });

const ddOf = (values: number[]) => values.reduce((sketch, value) => sketch.add(value), new DDSketch());
const hllOf = (items: string[]) => items.reduce((sketch, item) => sketch.add(item), new HyperLogLog());
const topOf = (items: string[], capacity: number) => items.reduce((sketch, item) => sketch.add(item), new TopK(capacity));

/** The rank the sketch promises: ⌊q·(n−1)⌋ of the sorted values. */
function exactQuantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(q * (sorted.length - 1))]!;
}

describe("DDSketch", () => {
  it("answers every quantile within 1% of the exact value of that rank", () => {
    fc.assert(
      fc.property(latencies, fc.double({ min: 0, max: 1, noNaN: true }), (values, q) => {
        const estimate = ddOf(values).quantile(q)!;
        const exact = exactQuantile(values, q);
        expect(Math.abs(estimate - exact)).toBeLessThanOrEqual(exact * DDSKETCH_RELATIVE_ACCURACY * (1 + 1e-9));
      }),
      { numRuns: 300 },
    );
  });

  it("merges commutatively and associatively, to the same bytes as one sketch of everything", () => {
    fc.assert(
      fc.property(latencies, latencies, latencies, (a, b, c) => {
        const left = ddOf(a).merge(ddOf(b)).merge(ddOf(c)).serialize();
        const right = ddOf(a)
          .merge(ddOf(b).merge(ddOf(c)))
          .serialize();
        const swapped = ddOf(c).merge(ddOf(b)).merge(ddOf(a)).serialize();
        expect(right).toEqual(left);
        expect(swapped).toEqual(left);
        expect(ddOf([...a, ...b, ...c]).serialize()).toEqual(left);
      }),
      { numRuns: 100 },
    );
  });

  it("survives serialization unchanged and stays small", () => {
    fc.assert(
      fc.property(latencies, (values) => {
        const sketch = ddOf(values);
        const bytes = sketch.serialize();
        const back = DDSketch.deserialize(bytes);
        expect(back.serialize()).toEqual(bytes);
        expect(back.count).toBe(values.length);
        expect(back.quantile(0.5)).toBe(sketch.quantile(0.5));
      }),
    );
    const wide = new DDSketch();
    for (let value = 0.001; value < 3_600_000; value *= 1.001) wide.add(value);
    expect(wide.serialize().length).toBeLessThan(4_096);
  });

  it("counts values below 1 µs as zero and rejects negative or non-finite values", () => {
    const sketch = new DDSketch().add(0).add(0.0001).add(5);
    expect(sketch.quantile(0.5)).toBe(0);
    expect(() => sketch.add(-1)).toThrow(RangeError);
    expect(() => sketch.add(Number.NaN)).toThrow(RangeError);
    expect(new DDSketch().quantile(0.5)).toBeNull();
  });
});

describe("HyperLogLog", () => {
  it(`counts exactly up to ${HLL_EXACT_LIMIT} distinct items`, () => {
    fc.assert(
      fc.property(ids, (items) => {
        const sketch = hllOf(items);
        expect(sketch.exact).toBe(true);
        expect(sketch.estimate()).toBe(new Set(items).size);
      }),
    );
  });

  it("merges commutatively and associatively, exact or dense, to the same bytes", () => {
    const sized = fc.integer({ min: 0, max: 1_500 }).map((n) => Array.from({ length: n }, (_, i) => `c${n}-${i}`));
    fc.assert(
      fc.property(sized, sized, ids, (a, b, c) => {
        const left = hllOf(a).merge(hllOf(b)).merge(hllOf(c)).serialize();
        expect(
          hllOf(a)
            .merge(hllOf(b).merge(hllOf(c)))
            .serialize(),
        ).toEqual(left);
        expect(hllOf(c).merge(hllOf(a)).merge(hllOf(b)).serialize()).toEqual(left);
        expect(hllOf([...a, ...b, ...c]).serialize()).toEqual(left);
        expect(HyperLogLog.deserialize(left).serialize()).toEqual(left);
      }),
      { numRuns: 25 },
    );
  });

  it("estimates large cardinalities within 2%, including right after leaving exact mode", () => {
    const random = mulberry32(7);
    for (const n of [HLL_EXACT_LIMIT + 1, 3_000, 20_000, 60_000]) {
      for (let trial = 0; trial < 3; trial += 1) {
        const sketch = new HyperLogLog();
        for (let i = 0; i < n; i += 1) sketch.add(`${Math.floor(random() * 2 ** 32)}.${i}`);
        expect(Math.abs(sketch.estimate() - n) / n).toBeLessThan(0.02);
      }
    }
  });
});

describe("TopK", () => {
  /** A skewed stream: item i appears with probability ∝ 1/(i+1). */
  const skewed = fc.tuple(fc.integer({ min: 1, max: 2 ** 31 }), fc.integer({ min: 1, max: 3_000 })).map(([seed, n]) => {
    const random = mulberry32(seed);
    return Array.from({ length: n }, () => `ip${Math.floor(1 / (random() + 0.002))}`);
  });

  function checkBounds(sketch: TopK, items: string[]): void {
    const truth = new Map<string, number>();
    for (const item of items) truth.set(item, (truth.get(item) ?? 0) + 1);
    const bound = sketch.errorBound;
    expect(sketch.total).toBe(items.length);
    expect(bound).toBeLessThanOrEqual(items.length / (sketch.capacity + 1));
    const listed = new Set(sketch.top().map((hitter) => hitter.item));
    for (const [item, count] of truth) {
      expect(sketch.count(item)).toBeLessThanOrEqual(count);
      expect(sketch.count(item) + bound).toBeGreaterThanOrEqual(count);
      if (count > bound) expect(listed.has(item)).toBe(true);
    }
  }

  it("keeps its error bound on random skewed streams", () => {
    fc.assert(fc.property(skewed, fc.integer({ min: 1, max: 30 }), (items, k) => checkBounds(topOf(items, k), items)));
  });

  it("merges commutatively, and keeps the bound under any merge order", () => {
    fc.assert(
      fc.property(skewed, skewed, skewed, fc.integer({ min: 1, max: 20 }), (a, b, c, k) => {
        expect(topOf(a, k).merge(topOf(b, k)).serialize()).toEqual(topOf(b, k).merge(topOf(a, k)).serialize());
        const all = [...a, ...b, ...c];
        checkBounds(topOf(a, k).merge(topOf(b, k)).merge(topOf(c, k)), all);
        checkBounds(topOf(a, k).merge(topOf(b, k).merge(topOf(c, k))), all);
        checkBounds(topOf(c, k).merge(topOf(a, k)).merge(topOf(b, k)), all);
        const bytes = topOf(a, k).merge(topOf(b, k)).serialize();
        expect(TopK.deserialize(bytes).serialize()).toBe(bytes);
      }),
      { numRuns: 60 },
    );
  });

  it("is exact while it tracks no more items than its capacity", () => {
    const sketch = topOf(["a", "b", "a", "c", "a", "b"], 3);
    expect(sketch.errorBound).toBe(0);
    expect(sketch.top()).toEqual([
      { item: "a", count: 3, upper: 3 },
      { item: "b", count: 2, upper: 2 },
      { item: "c", count: 1, upper: 1 },
    ]);
  });
});
