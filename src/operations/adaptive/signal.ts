import type { AdaptiveSignal } from "../../../rpc/adaptive";
import type { Env } from "../../platform/env";
import { floorTo, MINUTE_MS } from "../../platform/buckets";
import { AGGREGATOR_NAME } from "../../platform/names";
import { ADAPTIVE_BOUNDS } from "./schemas";

/**
 * A signal reads only minutes that ended at least this long ago: a collector pushes a closed
 * minute 2 s after it ends and the aggregator compacts it 2 s later. So a reading at `t`
 * covers whole minutes up to `floor(t − 5 s)`: data about 5–65 s old.
 */
export const SIGNAL_SETTLE_MS = 5_000;

/** A policy signal's value at `nowMs`; `null` when there is too little data. */
export type SignalRead = (signal: AdaptiveSignal, nowMs: number) => Promise<number | null>;

/** Reads signals from the aggregator's rollups, over whole, settled minutes. */
export function aggregatorSignals(env: Env): SignalRead {
  return async (signal, nowMs) => {
    const windowMs = signal.windowMs ?? ADAPTIVE_BOUNDS.defaultWindowMs;
    const to = floorTo(nowMs - SIGNAL_SETTLE_MS, MINUTE_MS);
    const range = { from: to - windowMs, to };
    const aggregator = env.AGGREGATOR.getByName(AGGREGATOR_NAME);
    const minRequests = "minRequests" in signal ? (signal.minRequests ?? ADAPTIVE_BOUNDS.defaultMinRequests) : 0;
    switch (signal.kind) {
      case "error_rate":
      case "request_rate": {
        const series = await aggregator.timeSeries({ range });
        let requests = 0;
        let errors = 0;
        let rateLimited = 0;
        for (const point of series.points) {
          requests += point.requests;
          errors += point.errors;
          rateLimited += point.rateLimited;
        }
        if (signal.kind === "request_rate") return requests / (windowMs / 1_000);
        const served = requests - rateLimited;
        return served === 0 || served < minRequests ? null : errors / served;
      }
      case "p99_latency": {
        if (signal.path === undefined) {
          const stats = await aggregator.globalStats({ range });
          return stats.totalRequests < minRequests || stats.totalRequests === 0 ? null : stats.latency.p99;
        }
        const method = signal.method === undefined ? {} : { method: signal.method };
        const detail = await aggregator.pathDetail({ range, path: signal.path, ...method });
        const requests = detail.methods.reduce((sum, stat) => sum + stat.requests, 0);
        const p99s = detail.methods.map((stat) => stat.latency?.p99).filter((p99): p99 is number => typeof p99 === "number");
        return requests === 0 || requests < minRequests || p99s.length === 0 ? null : Math.max(...p99s);
      }
    }
  };
}
