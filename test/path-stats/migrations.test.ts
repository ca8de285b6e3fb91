// The path objects' schema steps on data written before them: a backup taken before pushes were
// grouped (aggregator version 1: one `shard_partials` row per push) and before baselines rode on
// the client's counters (collector version 2: a `client_baselines` row per client) restores into
// today's schema, and answers as it did; a retried push of a restored one still replaces it.
import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { MINUTE_MS, floorTo } from "../../src/platform/buckets";
import type { DumpTable } from "../../src/platform/migrations";
import { MINUTE_CLOSE_GRACE_MS } from "../../src/path-stats/aggregator-do";
import { type NormalizedHit, Partial as PathPartial } from "../../src/path-stats/partial";
import { clientIdOf } from "../../src/path-stats/privacy";
import { shardOf } from "../../src/path-stats/shard";
import { ByteReader } from "../../src/sketches/bytes";
import { shardName } from "../../src/platform/names";

const SHARDS = 16; // PATH_SHARDS in vitest.config.ts

type Cell = DumpTable["rows"][number][number];
const b64 = (bytes: Uint8Array) => ({ b64: btoa(String.fromCharCode(...bytes)) });
const unb64 = (cell: Cell) => Uint8Array.from(atob((cell as { b64: string }).b64), (c) => c.charCodeAt(0));

async function wipe(stub: DurableObjectStub): Promise<void> {
  await runInDurableObject(stub, (_instance: unknown, state: DurableObjectState) => state.storage.deleteAll());
  await evictDurableObject(stub);
}

/** Today's aggregator dump, as version 1 stored it: each grouped push its own `shard_partials` row. */
function aggregatorAsVersionOne(tables: DumpTable[]): DumpTable[] {
  const pushes = tables.find((table) => table.name === "pushes")!;
  const at = (column: string) => pushes.columns.indexOf(column);
  const rows = pushes.rows.flatMap((row) => {
    const reader = new ByteReader(unb64(row[at("items")]!));
    return Array.from({ length: reader.uint() }, () => {
      const [shard, flushId, partial] = [reader.uint(), reader.uint(), reader.chunk()];
      return [row[at("bucket_ms")]!, shard, flushId, b64(partial), row[at("received_at_ms")]!];
    });
  });
  const partials = { name: "shard_partials", columns: ["bucket_ms", "shard", "flush_id", "partial", "received_at_ms"], rows };
  return [...tables.filter((table) => table.name !== "pushes" && table.name !== "shard_partials"), partials];
}

/** Today's collector dump, as version 2 stored it: baselines in `client_baselines`, none on the counters. */
function collectorAsVersionTwo(tables: DumpTable[]): DumpTable[] {
  const paths = tables.find((table) => table.name === "client_paths")!;
  const baseline = paths.columns.indexOf("baseline");
  const seq = paths.columns.indexOf("baseline_seq");
  const latest = new Map<string, { seq: number; values: number[] }>();
  for (const row of paths.rows) {
    if (row[baseline] === null) continue;
    const client = String(row[paths.columns.indexOf("client")]);
    if ((latest.get(client)?.seq ?? -1) < Number(row[seq]))
      latest.set(client, { seq: Number(row[seq]), values: JSON.parse(String(row[baseline])) });
  }
  const baselines = {
    name: "client_baselines",
    columns: [
      "client",
      "minute_ms",
      "requests",
      "client_errors",
      "not_found",
      "server_errors",
      "minutes",
      "rate_mean",
      "rate_var",
      "scan_mean",
      "scan_var",
      "flagged_until_ms",
      "flagged_minute_ms",
    ],
    rows: [...latest].map(([client, { values }]) => [client, ...values]),
  };
  const keep = paths.columns.map((_, i) => i).filter((i) => i !== baseline && i !== seq);
  const counters = {
    name: "client_paths",
    columns: keep.map((i) => paths.columns[i]!),
    rows: paths.rows.map((row) => keep.map((i) => row[i]!)),
  };
  return [...tables.filter((table) => table.name !== "client_paths" && table.name !== "client_baselines"), counters, baselines];
}

const hitOf = (at: number, client = "c"): NormalizedHit => ({ client, method: "GET", path: "/old", status: 200, at });

describe("path statistics schema steps", () => {
  it("restores an aggregator backup from before grouped pushes: same answers, and a retry still replaces", async () => {
    const aggregator = env.AGGREGATOR.getByName("migrate-pushes");
    const bucket = floorTo(Date.now() + 40 * 24 * 3_600_000, MINUTE_MS);
    const partialOf = (count: number) => {
      const partial = new PathPartial();
      for (let i = 0; i < count; i += 1) partial.add(hitOf(bucket + i, `c${i}`));
      return partial.serialize();
    };
    await aggregator.pinClock(bucket + 10_000);
    await aggregator.pushMany({ shard: 1, items: [{ bucketMs: bucket, flushId: 7, partial: partialOf(3) }] });
    await aggregator.pushMany({ shard: 2, items: [{ bucketMs: bucket, flushId: 8, partial: partialOf(4) }] });
    const dump = await aggregator.exportTables();
    expect(dump.versions.aggregator).toBe(2);
    await wipe(aggregator);
    await aggregator.importTables({ ...dump, versions: { ...dump.versions, aggregator: 1 }, tables: aggregatorAsVersionOne(dump.tables) });
    expect(await aggregator.pushRows()).toBe(2);
    // A retry of shard 1's push (after a lost answer, say) replaces it where the old version stored it.
    await aggregator.pinClock(bucket + 20_000);
    await aggregator.push({ shard: 1, bucketMs: bucket, flushId: 7, partial: partialOf(3) });
    expect(await aggregator.shardPartials()).toBe(2);
    await aggregator.runAlarmAt(bucket + MINUTE_MS + MINUTE_CLOSE_GRACE_MS);
    expect(await aggregator.globalStats({ range: { from: bucket, to: bucket + MINUTE_MS } })).toMatchObject({ totalRequests: 7 });
  });

  it("restores a collector backup from before baselines rode on the counters: same counters, and the baselines carry on", async () => {
    const ip = "198.19.41.1";
    const client = (await clientIdOf(ip, "truncate"))!;
    const collector = env.PATH_COLLECTOR.getByName(shardName(shardOf(client, SHARDS)));
    const now = Date.now();
    await env.PATHS.recordMany({
      hits: Array.from({ length: 6 }, (_, i) => ({ ip, method: "GET", path: `/old/${i}`, status: 404, at: now })),
    });
    await collector.flushBuffer();
    const before = await env.PATHS.clientStats({ ip });
    const dump = await collector.exportTables();
    expect(dump.versions["path-collector"]).toBe(3);
    const old = collectorAsVersionTwo(dump.tables);
    expect(old.find((table) => table.name === "client_baselines")!.rows.map((row) => row[0])).toContain(client);
    await wipe(collector);
    await collector.importTables({ ...dump, versions: { ...dump.versions, "path-collector": 2 }, tables: old });
    expect(await env.PATHS.clientStats({ ip })).toEqual(before);
    // The old baseline is read and carried on: it is written with the next flush's counter, and the old row then pruned.
    const baselineOf = () =>
      runInDurableObject(collector, (_instance: unknown, state: DurableObjectState) =>
        state.storage.sql
          .exec<{ baseline: string }>(
            "SELECT baseline FROM client_paths WHERE client = ? AND baseline IS NOT NULL ORDER BY baseline_seq DESC LIMIT 1",
            client,
          )
          .toArray(),
      );
    expect(await baselineOf()).toEqual([]);
    await env.PATHS.record({ ip, method: "GET", path: "/old/x", status: 404, at: now });
    await collector.flushBuffer();
    const [carried] = await baselineOf();
    // Six 404s restored, one more now: the open minute counts seven requests, seven not found.
    expect(JSON.parse(carried!.baseline).slice(1, 4)).toEqual([7, 7, 7]);
  });
});
