import type { Env } from "../env";
import { MINUTE_MS, floorTo } from "../buckets";
import { loadMetricsConfig } from "./config";
import type { CallOutcome } from "./call-outcome";
import type { MetricsSurface } from "../../../rpc/metrics";
import { latencyBucket, type PushedMetricRow, ZERO_BUCKET } from "./model";
import { type ObjectCall, takeRows } from "./object-calls";
import { metricsShardName } from "../names";

/** Batches sent in one push (the rollup's bound, METRICS_BOUNDS.maxBatches, with room to spare). */
const BATCHES_PER_PUSH = 100;
/** Rows in one batch at most (under the rollup's METRICS_BOUNDS.maxRows): a fuller generation is frozen early. */
const ROWS_PER_BATCH = 4_000;
/** Frozen batches kept for a retry at most; past this the oldest is dropped (observations, not state). */
const MAX_PENDING_BATCHES = 500;
/**
 * A batch whose pushes have failed for this long is dropped. The rollup remembers a source's
 * push ids for RECEIPT_TTL_MS, far longer, so a batch is never retried after its receipt is gone.
 */
export const GIVE_UP_MS = 15 * 60_000;
/** A push not answered after this long is taken as lost (its sender's context may be gone). */
const IN_FLIGHT_MS = 30_000;

/** A frozen batch: a generation's counts under the push id the rollup will store it once under. */
interface PendingBatch {
  pushId: number;
  generation: number;
  rows: PushedMetricRow[];
  frozenAtMs: number;
  /** When the push carrying it was sent, while it is unanswered. */
  sentAtMs: number | null;
}

/** A counted object call whose rows are read at the next push (its cursors' counters are final by then). */
export interface RowSource {
  minuteMs: number;
  kind: string;
  method: string;
  code: string;
  call: ObjectCall;
}

/** An object's stored bytes, as its last report said. */
interface SizeReport {
  kind: string;
  bytes: number;
}

/**
 * Call counts kept in an isolate's memory and pushed to a metrics rollup shard. One buffer
 * serves the whole isolate (`ISOLATE_COUNTS`: its entrypoints and its objects alike), so one push
 * carries all of them: an object pays no request and no row per call for its metrics.
 *
 * Counts accumulate in an open *generation*; a push freezes it into a batch under the isolate's
 * next push id (`source` = this buffer's prefix and a random id per isolate) and sends every
 * unacknowledged batch, in order. The shard keeps the highest push id stored per source, so a
 * retried or doubled push is stored once: every push carries all batches not yet acknowledged,
 * so a batch id at or below the highest one stored has been stored itself.
 *
 * Timing uses `performance.now()`: the buffer window is real time, whatever clock a caller reads.
 */
export class MetricsBuffer {
  readonly #prefix: string;
  #source: string | null = null;
  #open = new Map<string, PushedMetricRow>();
  #openedAtMs: number | null = null;
  #generation = 1;
  #nextPushId = 1;
  #pending: PendingBatch[] = [];
  #sizes = new Map<string, SizeReport>();
  #rowSources = new Set<RowSource>();

  constructor(prefix: string) {
    this.#prefix = prefix;
  }

  /** The generation counts added now belong to. */
  get generation(): number {
    return this.#generation;
  }

  /** When the open generation got its first count (`performance.now()`), or null when it is empty. */
  get openedAtMs(): number | null {
    return this.#openedAtMs;
  }

  /** Whether anything waits to be pushed (counts, frozen batches, sizes). */
  get holdsAny(): boolean {
    return this.#open.size > 0 || this.#pending.length > 0 || this.#sizes.size > 0 || this.#rowSources.size > 0;
  }

  /** Adds one finished call of `kind` (an object class or an entrypoint); returns the generation it joined. */
  add(surface: MetricsSurface, kind: string, outcome: CallOutcome): number {
    const minuteMs = floorTo(outcome.endMs, MINUTE_MS);
    const bucket = latencyBucket(outcome.latencyMs);
    return this.addRow({
      minuteMs,
      surface,
      kind,
      method: outcome.method,
      code: outcome.code,
      bucket,
      calls: 1,
      rowsRead: outcome.rowsRead,
      rowsWritten: outcome.rowsWritten,
    });
  }

  /** Adds a row of counts as it is (rows read and written found after their call ended, old counts). */
  addRow(row: PushedMetricRow): number {
    const key = `${row.minuteMs}\u0000${row.surface}\u0000${row.kind}\u0000${row.method}\u0000${row.code}\u0000${row.bucket}`;
    const open = this.#open.get(key);
    if (open === undefined) this.#open.set(key, { ...row });
    else {
      open.calls += row.calls;
      open.rowsRead += row.rowsRead;
      open.rowsWritten += row.rowsWritten;
    }
    this.#openedAtMs ??= performance.now();
    const generation = this.#generation;
    if (this.#open.size >= ROWS_PER_BATCH) this.#freeze();
    return generation;
  }

  /**
   * Counts `source`'s rows read and written with the next push. A call's count goes in at once;
   * its rows when the push freezes the window, so every cursor it opened has its final counters,
   * and cursors opened later in its scope are counted by the push after (as rows without a call).
   */
  trackRows(source: RowSource): void {
    this.#rowSources.add(source);
    this.#openedAtMs ??= performance.now();
  }

  /** Records an object's stored bytes, sent with the next push. */
  reportSize(object: string, kind: string, bytes: number): void {
    this.#sizes.set(object, { kind, bytes });
    this.#openedAtMs ??= performance.now();
  }

  /** Whether every count of `generation` and before has reached the shard (or was given up). */
  isPushed(generation: number): boolean {
    return generation < this.#generation && !this.#pending.some((batch) => batch.generation <= generation);
  }

  /** Whether a push now unanswered carries `generation` or an earlier one (another caller sent it). */
  inFlight(generation: number): boolean {
    const now = performance.now();
    return this.#pending.some((batch) => batch.generation <= generation && batch.sentAtMs !== null && now - batch.sentAtMs < IN_FLIGHT_MS);
  }

  /**
   * Freezes the open generation and sends every unacknowledged batch (and the sizes) to this
   * isolate's shard. Resolves `true` once the shard answered, `false` when the push failed (the
   * batches stay for the next push; sizes are kept unless newer ones arrived). Never throws.
   */
  async push(env: Env): Promise<boolean> {
    this.#freeze();
    this.#dropStale();
    const batches = this.#pending.slice(0, BATCHES_PER_PUSH);
    const sizes = this.#sizes;
    if (batches.length === 0 && sizes.size === 0) return true;
    this.#sizes = new Map();
    const sentAtMs = performance.now();
    for (const batch of batches) batch.sentAtMs = sentAtMs;
    this.#source ??= `${this.#prefix}:${crypto.randomUUID()}`;
    const source = this.#source;
    try {
      const shard = env.METRICS.getByName(metricsShardName(source, loadMetricsConfig(env).shards));
      await shard.push({
        source,
        surface: "object",
        batches: batches.map((batch) => ({ pushId: batch.pushId, rows: batch.rows })),
        ...(sizes.size > 0 ? { sizes: [...sizes].map(([object, size]) => ({ object, ...size })) } : {}),
      });
      const sent = new Set(batches.map((batch) => batch.pushId));
      // Stored, or refused as too old for the rollup: either way done with.
      this.#pending = this.#pending.filter((batch) => !sent.has(batch.pushId));
      return true;
    } catch (error) {
      for (const batch of batches) batch.sentAtMs = null;
      for (const [object, size] of sizes) if (!this.#sizes.has(object)) this.#sizes.set(object, size);
      console.error("metrics: a push of the isolate's counts failed; it is retried", error);
      return false;
    }
  }

  #freeze(): void {
    this.#takeRows();
    if (this.#open.size === 0) {
      // Nothing counted (only sizes, rows that came to 0, or a batch frozen early): the window ends
      // all the same, and whoever waited on it is done.
      this.#openedAtMs = null;
      this.#generation += 1;
      return;
    }
    this.#pending.push({
      pushId: this.#nextPushId,
      generation: this.#generation,
      rows: [...this.#open.values()],
      frozenAtMs: performance.now(),
      sentAtMs: null,
    });
    this.#nextPushId += 1;
    this.#generation += 1;
    this.#open = new Map();
    // A batch frozen early (full) keeps the window's deadline: its counts are no younger.
    if (this.#pending.at(-1)!.rows.length < ROWS_PER_BATCH) this.#openedAtMs = null;
  }

  /** Adds the tracked calls' rows to the open window, as rows of their call's minute, method and outcome. */
  #takeRows(): void {
    const sources = this.#rowSources;
    this.#rowSources = new Set();
    for (const source of sources) {
      const { rowsRead, rowsWritten } = takeRows(source.call);
      if (rowsRead === 0 && rowsWritten === 0) continue;
      this.addRow({
        minuteMs: source.minuteMs,
        surface: "object",
        kind: source.kind,
        method: source.method,
        code: source.code,
        bucket: ZERO_BUCKET,
        calls: 0,
        rowsRead,
        rowsWritten,
      });
    }
  }

  /** Drops batches that failed for GIVE_UP_MS, and the oldest beyond MAX_PENDING_BATCHES. */
  #dropStale(): void {
    const now = performance.now();
    const kept = this.#pending.filter((batch) => now - batch.frozenAtMs < GIVE_UP_MS);
    const excess = Math.max(0, kept.length - MAX_PENDING_BATCHES);
    const dropped = this.#pending.length - kept.length + excess;
    if (dropped > 0) {
      console.error(`metrics: dropped ${dropped} batches of counts the rollup could not take`);
      this.#pending = kept.slice(excess);
    }
  }
}

/** This isolate's counts: its objects' and its entrypoints' (src/operations/metrics/metrics-do.ts takes them). */
export const ISOLATE_COUNTS = new MetricsBuffer("isolate");
