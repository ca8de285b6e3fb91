import { RpcTarget } from "cloudflare:workers";
import type { CheckInput, Decision, PeekInput, RateLimitsApi, ResetInput, ResetResult } from "../../rpc/rate-limits";
import type { Env } from "../env";
import { parseInput } from "../schemas/common";
import { checkInputSchema, peekInputSchema, resetInputSchema } from "../schemas/rate-limits";

/**
 * The rate-limit API: validates at the boundary, then calls the subject's RateLimiterDO.
 * Served by the `RateLimits` entrypoint and by capnweb's `AdminApi.rateLimits()`.
 */
export class RateLimitsService extends RpcTarget implements RateLimitsApi {
  readonly #env: Env;

  constructor(env: Env) {
    super();
    this.#env = env;
  }

  async check(input: CheckInput): Promise<Decision> {
    const parsed = parseInput(checkInputSchema, input, "check input");
    return this.#limiter(parsed.subject).check(parsed);
  }

  async peek(input: PeekInput): Promise<Decision> {
    const parsed = parseInput(peekInputSchema, input, "peek input");
    return this.#limiter(parsed.subject).peek(parsed);
  }

  async reset(input: ResetInput): Promise<ResetResult> {
    const parsed = parseInput(resetInputSchema, input, "reset input");
    return this.#limiter(parsed.subject).reset(parsed);
  }

  #limiter(subject: string) {
    return this.#env.RATE_LIMITER.getByName(subject);
  }
}
