import { createWriteStream } from "node:fs";
import type { GlobalStats, PathSort, StatsRange, TopClients, TopPaths } from "../../path-stats";
import { parseCount, UsageError } from "../args";
import type { Command } from "../command";
import { table } from "../format";

const RANGES = new Set(["1h", "24h", "7d", "30d"]);
const SORTS = new Set<PathSort>(["requests", "clients", "errors", "p99"]);
/** A progress line every this many rows. */
const PROGRESS_EVERY = 1_000;

function range(option: unknown): StatsRange {
  const value = (option as string | undefined) ?? "1h";
  if (!RANGES.has(value)) throw new UsageError(`--range is one of ${[...RANGES].join(", ")}`);
  return value as StatsRange;
}

const ms = (value: number | null) => (value === null ? "-" : `${value}ms`);

function renderGlobal(g: GlobalStats): string {
  return table(
    ["requests", "errors", "error rate", "clients", "paths", "p50", "p90", "p99"],
    [
      [
        g.totalRequests,
        g.errors,
        `${(g.errorRate * 100).toFixed(2)}%`,
        `${g.uniqueClientsExact ? "" : "~"}${g.uniqueClients}`,
        g.uniquePaths,
        ms(g.latency.p50),
        ms(g.latency.p90),
        ms(g.latency.p99),
      ],
    ],
  );
}

function renderPaths(t: TopPaths): string {
  if (t.paths.length === 0) return "no requests in this range";
  return (
    table(
      ["method", "path", "requests", "errors", "clients", "p50", "p99"],
      t.paths.map((p) => [p.method, p.path, p.requests, p.errors, p.clients ?? "", ms(p.latency?.p50 ?? null), ms(p.latency?.p99 ?? null)]),
    ) + (t.approximate ? "\n\n(order rests on a sketch: approximate)" : "")
  );
}

function renderClients(t: TopClients): string {
  if (t.clients.length === 0) return "no requests in this range";
  return (
    table(
      ["client", "requests", "at most"],
      t.clients.map((c) => [c.client, c.requests, c.maxRequests]),
    ) + (t.approximate ? `\n\n(counts within ${t.errorBound}; every client above that is listed)` : "")
  );
}

export const statsCommands: Command[] = [
  {
    name: "stats global",
    usage: "stats global [--range 1h|24h|7d|30d]",
    summary: "requests, errors, clients, paths and latency percentiles over a range",
    options: { range: { type: "string" } },
    async run({ api, options, print }) {
      print(await api.pathStats().globalStats({ range: range(options.range) }), renderGlobal);
      return 0;
    },
  },
  {
    name: "stats paths",
    usage: "stats paths [--range 1h|24h|7d|30d] [--limit N] [--sort requests|clients|errors|p99]",
    summary: "the top paths (templates) over a range",
    options: { range: { type: "string" }, limit: { type: "string" }, sort: { type: "string" } },
    async run({ api, options, print }) {
      const sortBy = (options.sort as PathSort | undefined) ?? "requests";
      if (!SORTS.has(sortBy)) throw new UsageError(`--sort is one of ${[...SORTS].join(", ")}`);
      const top = await api.pathStats().topPaths({
        range: range(options.range),
        sortBy,
        ...(options.limit === undefined ? {} : { limit: parseCount(options.limit as string, "--limit") }),
      });
      print(top, renderPaths);
      return 0;
    },
  },
  {
    name: "stats clients",
    usage: "stats clients [--range 1h|24h|7d|30d] [--limit N]",
    summary: "the top clients over a range, with their error bound",
    options: { range: { type: "string" }, limit: { type: "string" } },
    async run({ api, options, print }) {
      const top = await api.pathStats().topClients({
        range: range(options.range),
        ...(options.limit === undefined ? {} : { limit: parseCount(options.limit as string, "--limit") }),
      });
      print(top, renderClients);
      return 0;
    },
  },
  {
    name: "stats export",
    usage: "stats export --out FILE [--range 1h|24h|7d|30d] [--format csv|json]",
    summary: "stream every row of a range to FILE, with progress on stderr",
    options: { out: { type: "string" }, range: { type: "string" }, format: { type: "string" } },
    async run({ streaming, options, print, progress }) {
      const file = options.out as string | undefined;
      if (!file) throw new UsageError("give --out FILE");
      const format = (options.format as string | undefined) ?? "csv";
      if (format !== "csv" && format !== "json") throw new UsageError("--format is csv or json");
      // Streams travel in a WebSocket session.
      using api = await streaming();
      const stream = (await api.pathStats().export({ range: range(options.range), format })) as unknown as ReadableStream<Uint8Array>;
      const out = createWriteStream(file);
      const reader = stream.getReader();
      let bytes = 0;
      let rows = 0;
      let reported = 0;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        bytes += value.byteLength;
        for (const byte of value) if (byte === 0x0a) rows += 1;
        if (!out.write(value)) await new Promise((resolve) => out.once("drain", resolve));
        if (rows - reported >= PROGRESS_EVERY) {
          reported = rows;
          progress(`exported ${rows} lines (${bytes} bytes)…`);
        }
      }
      await new Promise<void>((resolve, reject) => out.end((error?: Error | null) => (error ? reject(error) : resolve())));
      print({ file, format, bytes, lines: rows }, (r) => `exported ${r.lines} lines (${r.bytes} bytes) to ${r.file}`);
      return 0;
    },
  },
];
