import { describe, expect, it } from "vitest";
import type { AnomalyPolicy } from "../../../rpc/protection";
import {
  BASELINE_IDLE_RESET_MS,
  burstThreshold,
  type ClientBaseline,
  ewStep,
  newBaseline,
  observe,
  rollTo,
} from "../../../src/operations/protection/detector";
import { DEFAULT_ANOMALY_POLICY, mergePolicy } from "../../../src/operations/protection/policy";
import { TtlCache } from "../../../src/operations/protection/ttl-cache";

const MINUTE = 60_000;
const T0 = 1_800_000_000_000 - (1_800_000_000_000 % MINUTE);
const policy: AnomalyPolicy = DEFAULT_ANOMALY_POLICY;

/** Feeds `count` hits spread over minute `m` (statuses from `status(i)`); returns the state and the detections. */
function minute(state: ClientBaseline, m: number, count: number, status: (i: number) => number, p = policy) {
  const detections = [];
  for (let i = 0; i < count; i += 1) {
    const result = observe(state, { at: T0 + m * MINUTE + Math.floor((i * MINUTE) / Math.max(count, 1)), status: status(i) }, p);
    state = result.state;
    if (result.detection) detections.push(result.detection);
  }
  return { state, detections };
}

describe("the exponentially weighted baseline", () => {
  it("converges to a steady rate with a small variance", () => {
    let state = newBaseline(policy, T0);
    for (let m = 0; m < 60; m += 1) state = minute(state, m, 30, () => 200).state;
    state = rollTo(state, T0 + 60 * MINUTE, policy);
    expect(state.rateMean).toBeGreaterThan(29.9);
    expect(state.rateMean).toBeLessThan(30.1);
    expect(Math.sqrt(state.rateVar)).toBeLessThan(1);
    expect(state.scanMean).toBeLessThan(0.001);
    expect(state.minutes).toBe(60);
  });

  it("one step matches the definition", () => {
    const [mean, variance] = ewStep(10, 4, 20, 0.1);
    expect(mean).toBeCloseTo(11, 10);
    expect(variance).toBeCloseTo(0.9 * (4 + 10 * 1), 10);
  });

  it("decays over idle minutes, and starts from the priors after a day of silence", () => {
    let state = newBaseline(policy, T0);
    for (let m = 0; m < 30; m += 1) state = minute(state, m, 40, () => 200).state;
    const before = rollTo(state, T0 + 30 * MINUTE, policy).rateMean;
    const after = rollTo(state, T0 + 40 * MINUTE, policy).rateMean;
    // Minute 29 is the open one: minutes 30..39 are the ten idle ones.
    expect(after).toBeCloseTo(before * 0.9 ** 10, 6);
    const reset = rollTo(state, T0 + 30 * MINUTE + BASELINE_IDLE_RESET_MS + MINUTE, policy);
    expect(reset).toMatchObject({ rateMean: policy.priorRateMean, scanMean: policy.priorScanShare, minutes: 0 });
  });

  it("ignores a hit from a minute before the open one", () => {
    const state = minute(newBaseline(policy, T0), 5, 3, () => 200).state;
    expect(observe(state, { at: T0 + 4 * MINUTE, status: 404 }, policy).state).toBe(state);
  });
});

describe("detection", () => {
  it("never flags a steady client with a normal 404 rate", () => {
    let state = newBaseline(policy, T0);
    for (let m = 0; m < 120; m += 1) {
      const result = minute(state, m, 20 + (m % 7), (i) => (i % 20 === 3 ? 404 : 200));
      expect(result.detections).toEqual([]);
      state = result.state;
    }
  });

  it("flags a scan on the hit that pushes its 4xx share past the threshold, with the evidence, once per episode", () => {
    let state = newBaseline(policy, T0);
    for (let m = 0; m < 10; m += 1) state = minute(state, m, 20, (i) => (i === 0 ? 404 : 200)).state;
    const scan = minute(state, 10, 60, () => 404);
    expect(scan.detections).toHaveLength(1);
    const [flag] = scan.detections;
    expect(flag!.rule).toBe("scan");
    // Judged from scanMinCount requests on: the 20th hit of the minute.
    expect(flag!.evidence).toMatchObject({ minuteMs: T0 + 10 * MINUTE, requests: 20, clientErrors: 20, notFound: 20, minutesSeen: 10 });
    expect(flag!.evidence.threshold).toBe(policy.scanMinShare);
    // The flagged minute is not learned.
    expect(rollTo(scan.state, T0 + 11 * MINUTE, policy).scanMean).toBeCloseTo(rollTo(state, T0 + 10 * MINUTE, policy).scanMean, 10);
    // Within the cooldown (blockMs) no second flag. While blocked, the scanner is answered 429,
    // which the error share leaves out; when the block ends and the scan resumes, it is flagged again.
    let later = scan.state;
    for (let m = 11; m < 20; m += 1) {
      const result = minute(later, m, 60, () => 429);
      expect(result.detections).toEqual([]);
      later = result.state;
    }
    expect(minute(later, 21, 60, () => 404).detections.map((d) => d.rule)).toEqual(["scan"]);
  });

  it("flags a burst far above the client's own rate, but not a busy client at its usual rate", () => {
    let quiet = newBaseline(policy, T0);
    let busy = newBaseline(policy, T0);
    for (let m = 0; m < 30; m += 1) {
      quiet = minute(quiet, m, 20, () => 200).state;
      busy = minute(busy, m, 400 + (m % 3) * 20, () => 200, policy).state;
    }
    const burst = minute(quiet, 30, 600, () => 200);
    expect(burst.detections.map((d) => d.rule)).toEqual(["burst"]);
    // The floor (rateMinCount) decides for a quiet client: the 121st request.
    expect(burst.detections[0]!.evidence.requests).toBe(policy.rateMinCount + 1);
    expect(minute(busy, 30, 440, () => 200).detections).toEqual([]);
    expect(burstThreshold(rollTo(busy, T0 + 30 * MINUTE, policy), policy).threshold).toBeGreaterThan(600);
  });

  it("judges a new client against the priors, and flags nothing when the policy is off", () => {
    const fresh = newBaseline(policy, T0);
    expect(minute(fresh, 0, 40, () => 404).detections.map((d) => d.evidence.minutesSeen)).toEqual([0]);
    expect(minute(fresh, 0, 19, () => 404).detections).toEqual([]);
    expect(minute(fresh, 0, 40, () => 429).detections).toEqual([]);
    expect(minute(fresh, 0, 400, () => 404, mergePolicy({ enabled: false })).detections).toEqual([]);
  });

  it("merges policy layers: later fields win, absent ones fall through", () => {
    expect(mergePolicy({ block: true, rateK: 3 }, { rateK: 5 })).toEqual({ ...DEFAULT_ANOMALY_POLICY, block: true, rateK: 5 });
  });
});

describe("the TTL cache behind the gateway's and collectors' copies", () => {
  it("loads once per TTL, shares a concurrent load, and keeps the last copy when a reload fails", async () => {
    let loads = 0;
    let fail = false;
    const errors: unknown[] = [];
    const cache = new TtlCache(
      1_000,
      async () => {
        loads += 1;
        if (fail) throw new Error("down");
        return loads;
      },
      (error) => errors.push(error),
    );
    expect(await Promise.all([cache.get(0), cache.get(0)])).toEqual([1, 1]);
    expect(await cache.get(999)).toBe(1);
    expect(await cache.get(1_000)).toBe(2);
    fail = true;
    expect(await cache.get(2_500)).toBe(2);
    expect(errors).toHaveLength(1);
    cache.clear();
    await expect(cache.get(2_600)).rejects.toThrow("down");
    expect(loads).toBe(4);
  });
});
