/**
 * The seeds' per-IP path collectors, in a Worker of their own so their storage can be kept
 * in memory (a fan-out over 10,000 SQLite-file objects runs out of file descriptors on this
 * machine: three per object). Bench-only.
 */
export { SeedPathCollectorDO } from "./seed-path-collector-do";

export default {
  async fetch(): Promise<Response> {
    return new Response("bench seeds: Durable Objects only", { status: 404 });
  },
};
