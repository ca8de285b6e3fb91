import { WorkerEntrypoint } from "cloudflare:workers";
import { flushEntrypointMetrics } from "../../src/platform/metering/entrypoint-metrics";
import { type CostPrices, loadCostPrices } from "../../src/platform/metering/config";
import type { Env } from "../../src/platform/env";
import { ADAPTIVE_LIMITS_NAME, AGGREGATOR_NAME, ALERTS_NAME, MAINTENANCE_NAME, PROTECTION_NAME, shardName } from "../../src/platform/names";
import type { CostDrainInput, CostDrainResult, CostSnapshot } from "../harness/cost";
import type { BenchEnv } from "./bench-env";
import { type BucketCounts, costMeter, OBJECT_BINDINGS, type ObjectEntry, realSetTimeout } from "./cost-meter";
import type { MeteredObject } from "./metered-objects";

type MeteredStub = {
  [K in keyof MeteredObject]: (...args: Parameters<MeteredObject[K]>) => Promise<Awaited<ReturnType<MeteredObject[K]>>>;
};
type Namespace = { getByName(name: string): MeteredStub; get(id: DurableObjectId): MeteredStub; idFromString(id: string): DurableObjectId };

// The isolate's own setTimeout is counted by the meter (timers objects start); the drain's own waits are not.
const sleep = (ms: number) => new Promise((resolve) => realSetTimeout(resolve, ms));

/**
 * The cost run's controls (bench/scenarios/cost.ts calls them through the driver): windows that
 * say whose rows are being counted, the drain that runs the objects' alarms on a clock moved
 * forward, and the counts. An entrypoint, so none of its calls is an object request; the alarm
 * runs it asks for are (one each, as the platform's would be). Bench-only.
 */
export class BenchCost extends WorkerEntrypoint<BenchEnv> {
  /** Starts counting (once per run) and returns the isolate's clock. */
  start(): number {
    costMeter.active = true;
    return Date.now();
  }

  /** Constructs the deployment's shared objects, so no operation pays for their migrations. */
  async warm(): Promise<number> {
    const names: Array<[keyof typeof OBJECT_BINDINGS, string]> = [
      ["AggregatorDO", AGGREGATOR_NAME],
      ["ProtectionDO", PROTECTION_NAME],
      ["AdaptiveLimitsDO", ADAPTIVE_LIMITS_NAME],
      ["MaintenanceDO", MAINTENANCE_NAME],
      ["AlertsDO", ALERTS_NAME],
    ];
    for (let shard = 0; shard < Number(this.env.PATH_SHARDS || 64); shard++) names.push(["PathCollectorDO", shardName(shard)]);
    for (let shard = 0; shard < Number(this.env.METRICS_SHARDS || 4); shard++) names.push(["MetricsDO", `metrics:${shard}`]);
    await Promise.all(names.map(([kind, name]) => this.#namespace(kind).getByName(name).benchPing()));
    return names.length;
  }

  /** Has every shared object push the metrics rows it still holds (CostMeter.nudge); returns how many had some. */
  async nudge(): Promise<number> {
    const shared = [...costMeter.objects.values()].filter((entry) => entry.shared && entry.kind !== "MetricsDO");
    const nudged = await Promise.all(shared.map((entry) => this.#stub(entry).benchNudge()));
    return nudged.filter(Boolean).length;
  }

  /**
   * Waits until nothing is in flight, then counts from here on under `label`. Limiters and
   * ledgers created from here on belong to `owner` (see cost-meter.ts).
   */
  async window(input: { label: string; owner?: string }): Promise<number> {
    await this.#quiet(100);
    costMeter.fold();
    costMeter.window = input.label;
    costMeter.windowOwner = input.owner ?? null;
    return Date.now();
  }

  /**
   * Runs due alarms in time order, moving the clock to each, until nothing it runs (see
   * #nextDue) is due by `untilMs`; then sets the clock to `untilMs`. With `jump`, the clock goes
   * to `untilMs` first and every alarm due by then runs once at that time. Bounded by steps and
   * wall time per call: the caller calls again while `done` is false.
   */
  async drain(input: CostDrainInput): Promise<CostDrainResult> {
    const started = performance.now();
    // Work objects left on timers (observations flushed from memory within seconds) is the operation's, and runs before its alarms.
    if (input.runs === "operation") await this.#quiet(100);
    // The isolate's entrypoint counts reach their metrics shard now, not with the next operation's calls.
    await flushEntrypointMetrics(this.env as unknown as Env);
    if (input.jump) costMeter.advanceTo(input.untilMs);
    let steps = 0;
    let errors = 0;
    let firstError: string | undefined;
    const failed = new Set<string>();
    for (;;) {
      await this.#quiet(0);
      const next = this.#nextDue(input, failed);
      if (next === undefined || next.armedMs! > input.untilMs) {
        costMeter.advanceTo(input.untilMs);
        return { steps, errors, ...(firstError ? { firstError } : {}), done: true, clockMs: Date.now(), nextDueMs: next?.armedMs ?? null };
      }
      if (steps >= input.maxSteps || performance.now() - started > input.maxWallMs) {
        return { steps, errors, ...(firstError ? { firstError } : {}), done: false, clockMs: Date.now(), nextDueMs: next.armedMs };
      }
      costMeter.advanceTo(next.armedMs!);
      try {
        await this.#stub(next).benchRunAlarm();
      } catch (error) {
        // The object is left out of this drain rather than retried forever.
        failed.add(next.id);
        errors += 1;
        firstError ??= `${next.kind} ${next.name ?? next.id}: ${String((error as Error)?.message ?? error)}`;
      }
      steps += 1;
    }
  }

  /** Everything counted so far, by bucket, once the calls in flight have finished. */
  async snapshot(): Promise<CostSnapshot> {
    await this.#quiet(100);
    costMeter.fold();
    const buckets: Record<string, BucketCounts> = {};
    for (const [name, counts] of costMeter.buckets) buckets[name] = counts;
    return { clockMs: Date.now(), objects: costMeter.objects.size, buckets };
  }

  /** COST_PRICES as tollgate reads it. */
  prices(): CostPrices {
    return loadCostPrices(this.env);
  }

  /**
   * Until no call is in flight and, for `stableMs`, nothing new has happened (at most 10 s). With
   * `stableMs` > 0 it also waits for the timers objects have pending (call counts kept in memory
   * and written by a timer land in the window that made them).
   */
  async #quiet(stableMs: number): Promise<void> {
    if (stableMs === 0 && costMeter.inFlight === 0) return;
    const deadline = performance.now() + 10_000;
    let seen = costMeter.activity;
    let since = performance.now();
    while (performance.now() < deadline) {
      await sleep(10);
      const busy = costMeter.inFlight !== 0 || (stableMs > 0 && costMeter.pendingTimers.size > 0);
      if (busy || costMeter.activity !== seen) {
        seen = costMeter.activity;
        since = performance.now();
      } else if (performance.now() - since >= stableMs) {
        return;
      }
    }
  }

  /**
   * The object due first among those the drain runs (CostDrainInput.runs). An operation's drain
   * leaves out shared objects it never called: their hourly compactions run in idle time.
   */
  #nextDue(input: CostDrainInput, failed: ReadonlySet<string>): ObjectEntry | undefined {
    const mine = (entry: ObjectEntry) => input.owner !== undefined && entry.owner === input.owner;
    const runs = (entry: ObjectEntry) =>
      input.runs === "idle"
        ? entry.owner === null || mine(entry)
        : input.runs === "operation"
          ? mine(entry) || (entry.shared && entry.calledIn === costMeter.window)
          : mine(entry);
    let next: ObjectEntry | undefined;
    for (const entry of costMeter.objects.values()) {
      if (entry.armedMs === null || failed.has(entry.id) || !runs(entry)) continue;
      if (next === undefined || entry.armedMs < next.armedMs!) next = entry;
    }
    return next;
  }

  #namespace(kind: keyof typeof OBJECT_BINDINGS): Namespace {
    return (this.env as unknown as Record<string, Namespace>)[OBJECT_BINDINGS[kind]]!;
  }

  #stub(entry: ObjectEntry): MeteredStub {
    const namespace = this.#namespace(entry.kind);
    return entry.name === undefined ? namespace.get(namespace.idFromString(entry.id)) : namespace.getByName(entry.name);
  }
}
