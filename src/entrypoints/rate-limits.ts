import { WorkerEntrypoint } from "cloudflare:workers";
import type { CheckInput, Decision, PeekInput, RateLimitsApi, ResetInput, ResetResult } from "../../rpc/rate-limits";
import type { Env } from "../env";
import { RateLimitsService } from "../services/rate-limits-service";

/**
 * `RateLimits`: the rate-limit capability for sibling Workers.
 * `services = [{ binding = "LIMITS", service = "tollgate", entrypoint = "RateLimits" }]`
 */
export class RateLimits extends WorkerEntrypoint<Env> implements RateLimitsApi {
  readonly #service = new RateLimitsService(this.env);

  check(input: CheckInput): Promise<Decision> {
    return this.#service.check(input);
  }

  peek(input: PeekInput): Promise<Decision> {
    return this.#service.peek(input);
  }

  reset(input: ResetInput): Promise<ResetResult> {
    return this.#service.reset(input);
  }
}
