/**
 * Types shared by the Node side of the harness and the load-driver Worker. Neutral on
 * purpose: no `node:*` and no `cloudflare:*` imports, so a scenario file compiles (and is
 * bundled) for both sides.
 */
import type { CreditsApi } from "../../rpc/credits";
import type { GatewayApi } from "../../rpc/gateway";
import type { GlobalStats, PathStatsApi, TopPaths, TopPathsInput } from "../../rpc/path-stats";
import type { CheckInput, Decision, PeekInput, RateLimitsApi } from "../../rpc/rate-limits";
import type { CostDrainInput, CostDrainResult, CostPricesLike, CostSnapshot } from "./cost";

/** A Durable Object namespace as the driver uses it: by name only. */
export interface NamespaceLike<T> {
  getByName(name: string): T;
}

/** The bench-only surface of tollgate's RateLimiterDO (bench/workers/bench-rate-limiter-do.ts). */
export interface BenchRateLimiterStub {
  check(input: CheckInput): Promise<Decision>;
  peek(input: PeekInput): Promise<Decision>;
  /** The ceiling: the same object, reached the same way, doing nothing. */
  noop(): Promise<null>;
  /** The ceiling of a call that persists: one storage write, nothing else. */
  noopWrite(): Promise<null>;
  /** The same write, taking a check's input and answering a decision of check's shape. */
  noopWriteAnswering(input: CheckInput): Promise<Decision>;
  /** `ctx.storage.sql.databaseSize` of this subject's object. */
  storedBytes(): Promise<number>;
}

/** The seeds' sample limiter (bench/workers/seed-limiter-do.ts). */
export interface SeedLimiterStub {
  checkAndIncrement(input: { limit: number; windowMs: number }): Promise<{ allowed: boolean; retryAfter?: number }>;
  /** Writes `count` timestamps inside the window in one put (set-up, not measured). */
  prefill(input: { count: number; windowMs: number }): Promise<number>;
  entries(): Promise<number>;
  storedBytes(): Promise<number>;
}

/** tollgate's AggregatorDO with a pinned clock and a fill (bench/workers/bench-aggregator-do.ts). */
export interface BenchAggregatorStub {
  fill(input: {
    clients: number;
    days: number;
    paths: number;
    hitsPerMinute: number;
  }): Promise<{ endMs: number; hits: number; minutes: number }>;
  topPaths(input: TopPathsInput): Promise<TopPaths>;
  globalStats(input: { range: TopPathsInput["range"] }): Promise<GlobalStats>;
  storedBytes(): Promise<number>;
}

/** The seeds' per-IP path collector (bench/workers/seed-path-collector-do.ts). */
export interface SeedPathCollectorStub {
  fetch(request: Request | string): Promise<Response>;
  prefill(input: { paths: Array<{ pathKey: string; count: number; country?: string }> }): Promise<number>;
}

/** The subset of Workers KV the KV-counter baseline uses. */
export interface KvLike {
  get(key: string): Promise<string | null>;
  put(key: string, value: string): Promise<void>;
}

/**
 * The load driver's bindings (see bench/harness/workerd.ts). Service bindings and DO
 * bindings point at the tollgate Worker exactly as a sibling Worker's would.
 */
export interface DriverEnv {
  /** `{ service: "tollgate", entrypoint: "RateLimits" }`: the shipped entrypoint. */
  LIMITS: RateLimitsApi;
  /** `{ service: "tollgate", entrypoint: "Credits" }`. */
  CREDITS: CreditsApi;
  /** `{ service: "tollgate", entrypoint: "PathStats" }`. */
  PATH_STATS: PathStatsApi;
  /** `{ service: "tollgate" }`: the default entrypoint, `Gateway` (authorize/settle). */
  GATEWAY: GatewayApi;
  /** `{ service: "tollgate", entrypoint: "BenchCeiling" }`: the same hop, to a no-op. */
  CEILING: {
    noop(input: { subject: string }): Promise<null>;
    noopWrite(input: { subject: string }): Promise<null>;
    noopWriteAnswering(input: CheckInput): Promise<Decision>;
  };
  /** `RateLimiterDO` bound by `script_name = "tollgate"` (DO RPC, no entrypoint). */
  RATE_LIMITER: NamespaceLike<BenchRateLimiterStub>;
  SEED_LIMITER: NamespaceLike<SeedLimiterStub>;
  BENCH_AGGREGATOR: NamespaceLike<BenchAggregatorStub>;
  SEED_PATH_COLLECTOR: NamespaceLike<SeedPathCollectorStub>;
  KV: KvLike;
  /** `{ service: "tollgate", entrypoint: "BenchCost" }`: the cost section's controls (bench/workers/bench-cost.ts). */
  COST: {
    start(): Promise<number>;
    warm(): Promise<number>;
    nudge(): Promise<number>;
    window(input: { label: string; owner?: string }): Promise<number>;
    drain(input: CostDrainInput): Promise<CostDrainResult>;
    snapshot(): Promise<CostSnapshot>;
    prices(): Promise<CostPricesLike>;
  };
}

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type Params = Record<string, Json>;

/**
 * One operation the driver can run in a loop. `call` is what is timed; `prepare` and
 * `finish` run once per measurement, untimed (set-up, and reading back what the loop did).
 */
export interface OpSpec<P extends Params = Params, S = unknown> {
  prepare?(env: DriverEnv, params: P): Promise<S>;
  call(env: DriverEnv, params: P, state: S, index: number): Promise<unknown>;
  finish?(env: DriverEnv, params: P, state: S, completed: number): Promise<Record<string, Json>>;
}

// Each op is typed by its own params; the registry holds them side by side, so it cannot name one.
// biome-ignore lint/suspicious/noExplicitAny: a registry of ops whose params and state differ by op.
export type AnyOp = OpSpec<any, any>;

/** How one measurement is bounded: it stops at whichever comes first. */
export interface LoopBounds {
  concurrency: number;
  durationMs: number;
  maxOps: number;
}

/** What the driver reports for one measurement. */
export interface DriveResult {
  ops: number;
  errors: number;
  firstError?: string;
  elapsedMs: number;
  /** Per-call latency in ms, in completion order. */
  latenciesMs: number[];
  extra: Record<string, Json>;
}

export type Mode = "quick" | "full" | "test";

/** The route a call takes, so each scenario is compared with the ceiling of its own route. */
export type Route = "entrypoint" | "do-rpc" | "kv";

/** One line of the results table. */
export interface Row {
  /** Stable id, e.g. `tollgate.check.1-rule`; targets find rows by it. */
  id: string;
  /** Table section, e.g. `ceiling`, `tollgate`, `baseline: seeds' sample limiter`. */
  group: string;
  label: string;
  route?: Route;
  concurrency?: number;
  /** Set for measured rows; absent for a capability that does not exist yet. */
  measured?: {
    ops: number;
    errors: number;
    opsPerSec: number;
    /**
     * Mean latency. workerd's clock ticks in whole milliseconds, so single latencies are
     * quantized; their mean is not biased by that (calls start at random phases of a tick).
     */
    meanMs: number;
    p50Ms: number;
    p90Ms: number;
    p99Ms: number;
    /** Throughput ÷ the ceiling's on the same route and concurrency, measured alternately with it. */
    ratioToCeiling?: number;
    /** p50 ÷ the ceiling's p50 (same pairing); coarse when both are a few ms. */
    p50RatioToCeiling?: number;
    /** Mean latency ÷ the ceiling's mean latency (same pairing). */
    meanRatioToCeiling?: number;
  };
  /** Scenario-specific numbers: survived fractions, stored bytes, window sizes. */
  extra?: Record<string, Json>;
  /** Printed instead of numbers, e.g. "not available yet". */
  note?: string;
}

/** One measurement request from a scenario. */
export interface MeasureSpec {
  id: string;
  group: string;
  label: string;
  op: string;
  params: Params;
  route?: Route;
  concurrency: number;
  /** When set, this op is measured in alternation with the ceiling op on the same route. */
  ceiling?: { op: string; params: Params };
  /**
   * Further reference ops measured in the same alternation; the row gets
   * `extra["× <name>"]` = its throughput ÷ the reference's.
   */
  references?: Array<{ name: string; op: string; params: Params }>;
  /** Overrides the mode's per-measurement op cap. */
  maxOps?: number;
  /** Called before every round (untimed), e.g. to prefill fresh subjects. */
  beforeRound?: (round: number) => Promise<Params | undefined>;
  extra?: Record<string, Json>;
}

/** What a scenario gets from the harness. */
export interface BenchContext {
  mode: Mode;
  /** Unique per run, so subjects never collide with an earlier run's state. */
  runId: string;
  concurrencyLevels: readonly number[];
  /** Runs `spec.op` (and its ceiling, alternately) for the mode's rounds; records and returns the row. */
  measure(spec: MeasureSpec): Promise<Row>;
  /** Runs one op exactly `bounds` allow, unrecorded: for baselines that report counts, not speed. */
  drive(op: string, params: Params, bounds: LoopBounds): Promise<DriveResult>;
  /** One untimed call of an op (set-up or read-back). */
  call(op: string, params: Params): Promise<Json>;
  record(row: Row): void;
  /** A row for a capability that is not built yet: printed as such, never as a number. */
  unavailable(id: string, group: string, label: string): void;
  /** A progress line (printed by `npm run bench`). */
  log(line: string): void;
}

/** One scenario: a file in bench/scenarios/, listed in bench/scenarios/index.ts. */
export interface Scenario {
  id: string;
  title: string;
  /** Operations the load driver runs for this scenario, by globally unique name. */
  ops: Record<string, AnyOp>;
  /**
   * Set for a scenario that times nothing (the cost section): it runs even when the measuring
   * budget is spent, bounded by its own counts instead.
   */
  outsideBudget?: boolean;
  run(ctx: BenchContext): Promise<void>;
}

/** A target from the issue, judged on the rows of one run. */
export interface Target {
  id: string;
  description: string;
  /**
   * `undefined` when the rows it needs are missing (capability not built yet); `{ na }`
   * when they exist but the target cannot be judged on them, saying why.
   */
  judge(rows: readonly Row[]): { pass: boolean; detail: string } | { na: string } | undefined;
}
