import { RpcTarget } from "cloudflare:workers";
import type {
  AdaptiveApi,
  AdaptiveHistoryInput,
  AdaptivePolicy,
  AdaptiveState,
  LevelChange,
  SetAdaptivePolicyResult,
} from "../../../rpc/adaptive";
import { adjustmentsCache } from "./adjustments-cache";
import type { Env } from "../../platform/env";
import { ADAPTIVE_LIMITS_NAME } from "../../platform/names";

/**
 * Adaptive limits for operators (docs/adaptive-limits.md): passes each call to the one
 * `AdaptiveLimitsDO`, which validates it. Served by `Admin.adaptive()` and capnweb's `AdminApi.adaptive()`.
 */
export class AdaptiveService extends RpcTarget implements AdaptiveApi {
  readonly #env: Env;

  constructor(env: Env) {
    super();
    this.#env = env;
  }

  async setPolicy(input: AdaptivePolicy): Promise<SetAdaptivePolicyResult> {
    const result = await this.#controller().setPolicy(input);
    // Limiters in this isolate see the change on their next call; others within their refresh.
    adjustmentsCache.forget();
    return result;
  }

  async deletePolicy(input: { name: string }): Promise<{ deleted: boolean }> {
    const result = await this.#controller().deletePolicy(input);
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
    return this.#controller().history(input);
  }

  #controller() {
    return this.#env.ADAPTIVE_LIMITS.getByName(ADAPTIVE_LIMITS_NAME);
  }
}
