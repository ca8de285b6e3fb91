import { MINUTE_MS, floorTo } from "../platform/buckets";
import { ClientDeltas } from "./collector-clients";
import { type NormalizedHit, Partial } from "./partial";

/**
 * How long a collector holds hits in memory before it writes its counters and pushes its
 * partials: the window a crash can lose (docs/path-stats.md, "Buffering").
 */
export const COLLECTOR_FLUSH_MS = 3_000;
/** A collector holding this many hits (or client counters) flushes at once, whatever the time. */
export const COLLECTOR_FLUSH_HITS = 20_000;

/**
 * What a collector has taken in since its last flush, in memory only: one partial per minute
 * (what the aggregator gets) and the per-client counter deltas (what `client_paths` gets).
 * The flush takes the whole buffer and the collector starts a new one.
 */
export class CollectorBuffer {
  readonly partials = new Map<number, Partial>();
  readonly clients = new ClientDeltas();
  hits = 0;

  add(hits: readonly NormalizedHit[]): void {
    for (const hit of hits) {
      const bucket = floorTo(hit.at, MINUTE_MS);
      let partial = this.partials.get(bucket);
      if (partial === undefined) this.partials.set(bucket, (partial = new Partial()));
      partial.add(hit);
      this.clients.add(hit);
    }
    this.hits += hits.length;
  }

  get full(): boolean {
    return this.hits >= COLLECTOR_FLUSH_HITS || this.clients.size >= COLLECTOR_FLUSH_HITS;
  }
}
