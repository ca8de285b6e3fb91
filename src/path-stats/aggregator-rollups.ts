import type { Granularity } from "../platform/buckets";
import { Aggregate, pathKey } from "./partial";
import { asBytes, ByteReader, ByteWriter } from "../sketches/bytes";
import { TopK } from "../sketches/top-k";

/**
 * The aggregator's `rollups` rows as its compaction and its queries both read them. A row
 * with `method = path = ''` is its bucket's total, which also carries the top clients.
 */
export const GLOBAL = "";
export const GRANULARITIES: readonly Granularity[] = ["minute", "hour", "day"];

export type RollupRow = { bucket_ms: number; method: string; path: string; aggregate: ArrayBuffer; top_clients: string | null };

/** A bucket's (or a range's) statistics while being merged. */
export class Bundle {
  total = new Aggregate();
  top = new TopK();
  paths = new Map<string, Aggregate>();

  addRow(row: RollupRow): void {
    const aggregate = decodeAggregate(row.aggregate);
    if (row.method === GLOBAL) {
      this.total.merge(aggregate);
      if (row.top_clients !== null) this.top.merge(TopK.deserialize(row.top_clients));
      return;
    }
    const key = pathKey(row.method, row.path);
    const mine = this.paths.get(key);
    if (mine === undefined) this.paths.set(key, aggregate);
    else mine.merge(aggregate);
  }
}

export function encodeAggregate(aggregate: Aggregate): Uint8Array {
  const writer = new ByteWriter();
  aggregate.write(writer);
  return writer.finish();
}

export function decodeAggregate(blob: ArrayBuffer | Uint8Array): Aggregate {
  return Aggregate.read(new ByteReader(asBytes(blob)));
}
