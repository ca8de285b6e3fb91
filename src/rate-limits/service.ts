import { RpcTarget } from "cloudflare:workers";
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
import { parseInput } from "../platform/schemas";
import {
  acquireInputSchema,
  blockInputSchema,
  checkInputSchema,
  checkManyInputSchema,
  heartbeatInputSchema,
  peekInputSchema,
  refundInputSchema,
  releaseInputSchema,
  resetInputSchema,
  setOverrideInputSchema,
  subjectInputSchema,
} from "./schemas";

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

  /**
   * Checks several subjects (e.g. per key and per IP) in parallel, each atomically in its own
   * object. If any subject denies (or fails), what the others charged is refunded, so a denial
   * never uses up another subject's quota. With an idempotency key the whole call is
   * retry-safe: each subject's check is keyed `<key>#<index>` and its refund `<key>#<index>:refund`.
   */
  async checkMany(input: CheckManyInput): Promise<CheckManyResult> {
    const parsed = parseInput(checkManyInputSchema, input, "checkMany input");
    const key = parsed.idempotencyKey;
    const settled = await Promise.allSettled(
      parsed.checks.map((check, index) =>
        this.#limiter(check.subject).check(key === undefined ? check : { ...check, idempotencyKey: `${key}#${index}` }),
      ),
    );
    const decisions = settled.map((outcome) => (outcome.status === "fulfilled" ? outcome.value : undefined));
    const failure = settled.find((outcome): outcome is PromiseRejectedResult => outcome.status === "rejected");
    const deniedBy = parsed.checks.filter((_, i) => decisions[i] !== undefined && !decisions[i]!.allowed).map((c) => c.subject);

    const refunded: string[] = [];
    if (failure !== undefined || deniedBy.length > 0) {
      const charged = parsed.checks
        .map((check, index) => ({ check, index }))
        .filter(({ check, index }) => decisions[index]?.allowed === true && (check.cost ?? 1) > 0);
      const refunds = await Promise.allSettled(
        charged.map(({ check, index }) => {
          const { cost, ...source } = check;
          return this.#limiter(check.subject).refund({
            ...source,
            cost: cost ?? 1,
            idempotencyKey: key === undefined ? crypto.randomUUID() : `${key}#${index}:refund`,
          });
        }),
      );
      refunds.forEach((outcome, i) => {
        if (outcome.status === "fulfilled") refunded.push(charged[i]!.check.subject);
        else console.error(`checkMany: refund of ${charged[i]!.check.subject} failed`, outcome.reason);
      });
    }
    if (failure !== undefined) throw failure.reason;

    const all = decisions as Decision[];
    const allowed = deniedBy.length === 0;
    const denying = all.filter((decision) => !decision.allowed);
    const shown = allowed ? all.reduce((a, b) => (b.remaining < a.remaining ? b : a)) : denying[0]!;
    return {
      allowed,
      retryAfterMs: Math.max(0, ...denying.map((decision) => decision.retryAfterMs)),
      deniedBy,
      refunded,
      decisions: all,
      headers: shown.headers,
    };
  }

  async peek(input: PeekInput): Promise<Decision> {
    const parsed = parseInput(peekInputSchema, input, "peek input");
    return this.#limiter(parsed.subject).peek(parsed);
  }

  async reset(input: ResetInput): Promise<ResetResult> {
    const parsed = parseInput(resetInputSchema, input, "reset input");
    return this.#limiter(parsed.subject).reset(parsed);
  }

  async refund(input: RefundInput): Promise<RefundResult> {
    const parsed = parseInput(refundInputSchema, input, "refund input");
    return this.#limiter(parsed.subject).refund(parsed);
  }

  async acquire(input: AcquireInput): Promise<AcquireResult> {
    const parsed = parseInput(acquireInputSchema, input, "acquire input");
    return this.#limiter(parsed.subject).acquire(parsed);
  }

  async release(input: ReleaseInput): Promise<ReleaseResult> {
    const parsed = parseInput(releaseInputSchema, input, "release input");
    return this.#limiter(parsed.subject).release(parsed);
  }

  async heartbeat(input: HeartbeatInput): Promise<HeartbeatResult> {
    const parsed = parseInput(heartbeatInputSchema, input, "heartbeat input");
    return this.#limiter(parsed.subject).heartbeat(parsed);
  }

  async setOverride(input: SetOverrideInput): Promise<OverrideResult> {
    const parsed = parseInput(setOverrideInputSchema, input, "setOverride input");
    return this.#limiter(parsed.subject).setOverride(parsed);
  }

  async clearOverride(input: SubjectInput): Promise<ClearOverrideResult> {
    const parsed = parseInput(subjectInputSchema, input, "clearOverride input");
    return this.#limiter(parsed.subject).clearOverride(parsed);
  }

  async block(input: BlockInput): Promise<BlockResult> {
    const parsed = parseInput(blockInputSchema, input, "block input");
    return this.#limiter(parsed.subject).block(parsed);
  }

  async unblock(input: SubjectInput): Promise<UnblockResult> {
    const parsed = parseInput(subjectInputSchema, input, "unblock input");
    return this.#limiter(parsed.subject).unblock(parsed);
  }

  #limiter(subject: string) {
    return this.#env.RATE_LIMITER.getByName(subject);
  }
}
