import { WorkerEntrypoint } from "cloudflare:workers";
import type { CheckInput, Decision } from "../../rpc/rate-limits";
import type { BenchEnv } from "./bench-env";

/**
 * The ceiling's entrypoint: the same service-binding hop as `RateLimits`, then the same
 * `getByName` + DO RPC, to a method that does nothing. No validation on purpose: the gap
 * between this and `RateLimits.check` is everything tollgate itself costs.
 */
export class BenchCeiling extends WorkerEntrypoint<BenchEnv> {
  noop(input: { subject: string }): Promise<null> {
    return this.env.RATE_LIMITER.getByName(input.subject).noop();
  }

  /** The same hop to a method that only writes one value (see BenchRateLimiterDO.noopWrite). */
  noopWrite(input: { subject: string }): Promise<null> {
    return this.env.RATE_LIMITER.getByName(input.subject).noopWrite();
  }

  /** The same hop carrying a check's input and a decision back (see BenchRateLimiterDO.noopWriteAnswering). */
  noopWriteAnswering(input: CheckInput): Promise<Decision> {
    return this.env.RATE_LIMITER.getByName(input.subject).noopWriteAnswering(input);
  }
}
