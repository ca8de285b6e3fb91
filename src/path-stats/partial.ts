import { ByteReader, ByteWriter } from "../sketches/bytes";
import { DDSketch } from "../sketches/ddsketch";
import { HyperLogLog } from "../sketches/hyperloglog";
import { TopK } from "../sketches/top-k";

/** A hit after validation, normalization and the privacy transform. */
export interface NormalizedHit {
  client: string;
  method: string;
  path: string;
  /** 0 when the caller gave none. */
  status: number;
  latencyMs?: number;
  country?: string;
  userAgent?: string;
  at: number;
}

/** A hit is an error when its status is 5xx (4xx are counted in `statuses`, not as errors). */
export const isError = (status: number) => status >= 500;

/**
 * Everything known about a set of requests (one path, or all of them) in one bucket. Counts
 * are exact; the sketches merge without loss of their guarantees.
 */
export class Aggregate {
  requests = 0;
  errors = 0;
  statuses = new Map<number, number>();
  latency = new DDSketch();
  clients = new HyperLogLog();
  firstSeen = Number.POSITIVE_INFINITY;
  lastSeen = 0;

  add(hit: NormalizedHit): void {
    this.requests += 1;
    if (isError(hit.status)) this.errors += 1;
    this.statuses.set(hit.status, (this.statuses.get(hit.status) ?? 0) + 1);
    if (hit.latencyMs !== undefined) this.latency.add(hit.latencyMs);
    this.clients.add(hit.client);
    if (hit.at < this.firstSeen) this.firstSeen = hit.at;
    if (hit.at > this.lastSeen) this.lastSeen = hit.at;
  }

  merge(other: Aggregate): this {
    this.requests += other.requests;
    this.errors += other.errors;
    for (const [status, count] of other.statuses) this.statuses.set(status, (this.statuses.get(status) ?? 0) + count);
    this.latency.merge(other.latency);
    this.clients.merge(other.clients);
    if (other.firstSeen < this.firstSeen) this.firstSeen = other.firstSeen;
    if (other.lastSeen > this.lastSeen) this.lastSeen = other.lastSeen;
    return this;
  }

  /** Status counts as a JSON object (status code → count; 0 means "not given"). */
  statusesJson(): string {
    return JSON.stringify(Object.fromEntries([...this.statuses].sort(([a], [b]) => a - b)));
  }

  write(writer: ByteWriter): void {
    writer
      .uint(this.requests)
      .uint(this.errors)
      .uint(this.requests === 0 ? 0 : this.firstSeen)
      .uint(this.lastSeen);
    writer.uint(this.statuses.size);
    for (const [status, count] of [...this.statuses].sort(([a], [b]) => a - b)) writer.uint(status).uint(count);
    writer.chunk(this.latency.serialize()).chunk(this.clients.serialize());
  }

  /**
   * Reads an aggregate. `sketches` names which sketches to decode; the others are skipped and
   * left empty (ranking by requests needs neither, and a 16 KiB HyperLogLog is the costliest
   * part of a row to decode).
   */
  static read(reader: ByteReader, sketches: { latency: boolean; clients: boolean } = { latency: true, clients: true }): Aggregate {
    const aggregate = new Aggregate();
    aggregate.requests = reader.uint();
    aggregate.errors = reader.uint();
    const first = reader.uint();
    aggregate.firstSeen = aggregate.requests === 0 ? Number.POSITIVE_INFINITY : first;
    aggregate.lastSeen = reader.uint();
    const statuses = reader.uint();
    for (let i = 0; i < statuses; i += 1) aggregate.statuses.set(reader.uint(), reader.uint());
    if (sketches.latency) aggregate.latency = DDSketch.deserialize(reader.chunk());
    else reader.skipChunk();
    if (sketches.clients) aggregate.clients = HyperLogLog.deserialize(reader.chunk());
    else reader.skipChunk();
    return aggregate;
  }
}

/** The key of one path: method and template. */
export const pathKey = (method: string, path: string) => `${method} ${path}`;
export function splitPathKey(key: string): { method: string; path: string } {
  const space = key.indexOf(" ");
  return { method: key.slice(0, space), path: key.slice(space + 1) };
}

const FORMAT_VERSION = 1;

/**
 * One shard's statistics for one minute: the whole (with the top clients) and each path.
 * What a collector pushes to the aggregator, as one BLOB.
 */
export class Partial {
  total = new Aggregate();
  top = new TopK();
  paths = new Map<string, Aggregate>();

  add(hit: NormalizedHit): void {
    this.total.add(hit);
    this.top.add(hit.client);
    const key = pathKey(hit.method, hit.path);
    let path = this.paths.get(key);
    if (path === undefined) {
      path = new Aggregate();
      this.paths.set(key, path);
    }
    path.add(hit);
  }

  merge(other: Partial): this {
    this.total.merge(other.total);
    this.top.merge(other.top);
    for (const [key, aggregate] of other.paths) {
      const mine = this.paths.get(key);
      if (mine === undefined) this.paths.set(key, new Aggregate().merge(aggregate));
      else mine.merge(aggregate);
    }
    return this;
  }

  serialize(): Uint8Array {
    const writer = new ByteWriter().byte(FORMAT_VERSION);
    this.total.write(writer);
    writer.text(this.top.serialize());
    writer.uint(this.paths.size);
    for (const key of [...this.paths.keys()].sort()) {
      writer.text(key);
      this.paths.get(key)!.write(writer);
    }
    return writer.finish();
  }

  static deserialize(data: Uint8Array): Partial {
    const reader = new ByteReader(data);
    if (reader.byte() !== FORMAT_VERSION) throw new RangeError("unknown partial format");
    const partial = new Partial();
    partial.total = Aggregate.read(reader);
    partial.top = TopK.deserialize(reader.text());
    const paths = reader.uint();
    for (let i = 0; i < paths; i += 1) {
      const key = reader.text();
      if (!key.includes(" ")) throw new RangeError("corrupt partial: bad path key");
      partial.paths.set(key, Aggregate.read(reader));
    }
    if (!reader.done) throw new RangeError("corrupt partial: trailing bytes");
    return partial;
  }
}
