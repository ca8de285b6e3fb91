import { WorkerEntrypoint } from "cloudflare:workers";
import type {
  AcquireInput,
  AcquireResult,
  BlockInput,
  BlockResult,
  CheckInput,
  CheckManyInput,
  CheckManyResult,
  ClearOverrideResult,
  Decision,
  HeartbeatInput,
  HeartbeatResult,
  OverrideResult,
  PeekInput,
  RateLimitsApi,
  RefundInput,
  RefundResult,
  ReleaseInput,
  ReleaseResult,
  ResetInput,
  ResetResult,
  SetOverrideInput,
  SubjectInput,
  UnblockResult,
} from "../../rpc/rate-limits";
import type { Env } from "../platform/env";
import { RateLimitsService } from "./service";

/**
 * `RateLimits`: the rate-limit capability for sibling Workers.
 * `services = [{ binding = "LIMITS", service = "tollgate", entrypoint = "RateLimits" }]`
 */
export class RateLimits extends WorkerEntrypoint<Env> implements RateLimitsApi {
  readonly #service = new RateLimitsService(this.env);

  check(input: CheckInput): Promise<Decision> {
    return this.#service.check(input);
  }

  checkMany(input: CheckManyInput): Promise<CheckManyResult> {
    return this.#service.checkMany(input);
  }

  peek(input: PeekInput): Promise<Decision> {
    return this.#service.peek(input);
  }

  reset(input: ResetInput): Promise<ResetResult> {
    return this.#service.reset(input);
  }

  refund(input: RefundInput): Promise<RefundResult> {
    return this.#service.refund(input);
  }

  acquire(input: AcquireInput): Promise<AcquireResult> {
    return this.#service.acquire(input);
  }

  release(input: ReleaseInput): Promise<ReleaseResult> {
    return this.#service.release(input);
  }

  heartbeat(input: HeartbeatInput): Promise<HeartbeatResult> {
    return this.#service.heartbeat(input);
  }

  setOverride(input: SetOverrideInput): Promise<OverrideResult> {
    return this.#service.setOverride(input);
  }

  clearOverride(input: SubjectInput): Promise<ClearOverrideResult> {
    return this.#service.clearOverride(input);
  }

  block(input: BlockInput): Promise<BlockResult> {
    return this.#service.block(input);
  }

  unblock(input: SubjectInput): Promise<UnblockResult> {
    return this.#service.unblock(input);
  }
}
