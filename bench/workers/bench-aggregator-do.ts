import { AggregatorDO } from "../../src/path-stats/aggregator-do";
import { Partial } from "../../src/path-stats/partial";
import type { Env } from "../../src/platform/env";
import type { ObjectControls } from "../../src/platform/tollgate-object";

const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;
/** The KV key of the pinned clock. */
const PINNED = "bench:pinned";

/** What `fill` stores: the same volume of hits whatever the number of distinct clients. */
export interface FillInput {
  /** Distinct client addresses, cycled over the hits. */
  clients: number;
  days: number;
  /** Path templates the hits are spread over. */
  paths: number;
  /** Hits in each pushed minute (one minute per hour of the range). */
  hitsPerMinute: number;
}

/**
 * tollgate's AggregatorDO, unchanged, with a pinned clock and a bench-only `fill` that
 * pushes `days` of partials the way collectors would, a day at a time, each day followed by
 * the compaction alarm at that day's time (the aggregator only accepts minutes from the
 * last 24 hours). Its real alarm also runs on the pinned clock, so a compaction fired in
 * between sees the same time the fill does. Never shipped.
 */
export class BenchAggregatorDO extends AggregatorDO {
  readonly #clock: { pinned: number | null };
  readonly #controls: ObjectControls;

  constructor(ctx: DurableObjectState, env: Env) {
    const clock: { pinned: number | null } = { pinned: null };
    let controls: ObjectControls | undefined;
    super(ctx, env, {
      // Kept in storage too, so an eviction between the fill and the queries changes nothing.
      now: () => (clock.pinned ??= (ctx.storage.kv.get(PINNED) as number | undefined) ?? null) ?? Date.now(),
      attach: (attached) => (controls = attached),
    });
    this.#clock = clock;
    this.#controls = controls!;
  }

  #pin(nowMs: number): void {
    this.#clock.pinned = nowMs;
    this.ctx.storage.kv.put(PINNED, nowMs);
  }

  /** Fills the range ending now (real time, to the minute) and leaves the clock pinned there. */
  async fill(input: FillInput): Promise<{ endMs: number; hits: number; minutes: number }> {
    const endMs = Math.floor(Date.now() / MINUTE_MS) * MINUTE_MS;
    const startMs = Math.floor((endMs - input.days * DAY_MS) / HOUR_MS) * HOUR_MS;
    let hit = 0;
    let minutes = 0;
    for (let dayStart = startMs; dayStart < endMs; dayStart += DAY_MS) {
      const dayEnd = Math.min(dayStart + DAY_MS, endMs);
      // The clock at the end of the day: every minute of it is inside the acceptance window.
      this.#pin(dayEnd);
      const items = [];
      for (let hour = dayStart; hour + MINUTE_MS <= dayEnd; hour += HOUR_MS) {
        const bucketMs = hour + 17 * MINUTE_MS < dayEnd ? hour + 17 * MINUTE_MS : hour;
        const partial = new Partial();
        for (let j = 0; j < input.hitsPerMinute; j++, hit++) {
          const client = hit % input.clients;
          partial.add({
            client: `10.${(client >> 16) & 255}.${(client >> 8) & 255}.${client & 255}`,
            method: "GET",
            path: `/v1/resource-${hit % input.paths}/:id`,
            status: hit % 50 === 0 ? 500 : 200,
            latencyMs: 5 + (hit % 200),
            at: bucketMs + (j % 60) * 1_000,
          });
        }
        items.push({ bucketMs, flushId: 1, partial: partial.serialize() });
        minutes++;
      }
      await this.pushMany({ shard: 0, items });
      await this.#controls.runAlarm(dayEnd + 10 * MINUTE_MS);
    }
    this.#pin(endMs + 10 * MINUTE_MS);
    await this.#controls.runAlarm(endMs + 10 * MINUTE_MS);
    return { endMs, hits: hit, minutes };
  }

  /** Bytes this aggregator occupies (SQLite pages). */
  async storedBytes(): Promise<number> {
    return this.ctx.storage.sql.databaseSize;
  }
}
