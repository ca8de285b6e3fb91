import type { CostReport, MetricsApi, MetricsInput, MetricsReport } from "../../../rpc/metrics";
import type { Env } from "../../platform/env";
import { invalidArgument } from "../../platform/errors";
import { costReportFor } from "./cost-report";
import { flushEntrypointMetrics } from "../../platform/metering/entrypoint-metrics";
import { summarize } from "../../platform/metering/model";
import { queryShards } from "./query";
import { DAY_MS, resolveRange, type TimeRange } from "../../platform/buckets";
import { parseInput } from "../../platform/schemas";
import { metricsQuerySchema } from "./schemas";

/** A range may end at most this far ahead of now; anything later is refused as absurd. */
export const MAX_FUTURE_MS = DAY_MS;

/**
 * Metrics and the cost report, for `Admin` and capnweb's `AdminApi`. Before answering, this
 * isolate's own buffered entrypoint counts are flushed, so the calls it served are included.
 */
export class MetricsService implements MetricsApi {
  readonly #env: Env;

  constructor(env: Env) {
    this.#env = env;
  }

  async metrics(input: MetricsInput): Promise<MetricsReport> {
    const nowMs = Date.now();
    const range = this.#range(input, nowMs);
    await flushEntrypointMetrics(this.#env);
    const answer = await queryShards(this.#env, range);
    return {
      range: answer.range,
      objects: summarize(answer.rows, "object"),
      entrypoints: summarize(answer.rows, "entrypoint"),
      generatedAt: nowMs,
    };
  }

  async costReport(input: MetricsInput): Promise<CostReport> {
    const nowMs = Date.now();
    const range = this.#range(input, nowMs);
    await flushEntrypointMetrics(this.#env);
    return costReportFor(this.#env, range, nowMs);
  }

  /** Validated here: the query goes to every metrics shard, and a bad one must not flush or ask any. */
  #range(input: unknown, nowMs: number): TimeRange {
    const parsed = parseInput(metricsQuerySchema, input, "metrics input");
    const range = resolveRange(parsed.range, nowMs);
    if (range.to > nowMs + MAX_FUTURE_MS) throw invalidArgument("range.to must be at most one day ahead of now");
    return range;
  }
}
