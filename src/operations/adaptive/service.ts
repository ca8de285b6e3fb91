import { RpcTarget } from "cloudflare:workers";
import type {
  AdaptiveApi, AdaptiveHistoryInput, AdaptivePolicy, AdaptiveState, LevelChange, SetAdaptivePolicyResult,
} from "../../../rpc/adaptive";
import { adjustmentsCache } from "./adjustments-cache";
import type { Env } from "../../platform/env";
import { ADAPTIVE_LIMITS_NAME } from "./adaptive-limits-do";
import { adaptivePolicySchema, historyInputSchema, policyNameInputSchema } from "./schemas";
import { parseInput } from "../../platform/schemas";

/**
 * Adaptive limits for operators (docs/adaptive-limits.md): validates at the boundary, then
 * calls the one `AdaptiveLimitsDO`. Served by `Admin.adaptive()` and capnweb's `AdminApi.adaptive()`.
 */
export class AdaptiveService extends RpcTarget implements AdaptiveApi {
  readonly #env: Env;

  constructor(env: Env) {
    super();
    this.#env = env;
  }

  async setPolicy(input: AdaptivePolicy): Promise<SetAdaptivePolicyResult> {
    const parsed = parseInput(adaptivePolicySchema, input, "adaptive policy");
    const result = await this.#controller().setPolicy(parsed);
    // Limiters in this isolate see the change on their next call; others within their refresh.
    adjustmentsCache.forget();
    return result;
  }

  async deletePolicy(input: { name: string }): Promise<{ deleted: boolean }> {
    const parsed = parseInput(policyNameInputSchema, input, "deletePolicy input");
    const result = await this.#controller().deletePolicy(parsed);
    adjustmentsCache.forget();
    return result;
  }

  policies(): Promise<{ policies: AdaptivePolicy[] }> {
    return this.#controller().policies();
  }

  state(): Promise<AdaptiveState> {
    return this.#controller().state();
  }

  async history(input?: AdaptiveHistoryInput): Promise<{ changes: LevelChange[] }> {
    const parsed = parseInput(historyInputSchema, input, "history input");
    return this.#controller().history(parsed);
  }

  #controller() {
    return this.#env.ADAPTIVE_LIMITS.getByName(ADAPTIVE_LIMITS_NAME);
  }
}
