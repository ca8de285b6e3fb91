import type { Env } from "../../src/platform/env";
import type { BenchRateLimiterDO } from "./bench-rate-limiter-do";
import type { SeedLimiterDO } from "./seed-limiter-do";

/** tollgate's bindings as the bench runs it: RATE_LIMITER is the bench subclass. */
export interface BenchEnv extends Omit<Env, "RATE_LIMITER"> {
  RATE_LIMITER: DurableObjectNamespace<BenchRateLimiterDO>;
  SEED_LIMITER: DurableObjectNamespace<SeedLimiterDO>;
}
