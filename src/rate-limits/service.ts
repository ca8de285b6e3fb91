import { RpcTarget } from "cloudflare:workers";
import type * as v from "valibot";
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
import { routeName } from "../platform/routing";
import { objectName, parseInput } from "../platform/schemas";
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
 * The rate-limit API: routes each call to its subject's RateLimiterDO, which validates it.
 * Served by the `RateLimits` entrypoint and by capnweb's `AdminApi.rateLimits()`.
 */
export class RateLimitsService extends RpcTarget implements RateLimitsApi {
  readonly #env: Env;

  constructor(env: Env) {
    super();
    this.#env = env;
  }

  async check(input: CheckInput): Promise<Decision> {
    return this.#route(input, checkInputSchema, "check input").check(input);
  }

  /**
   * Checks several subjects (e.g. per key and per IP) in parallel, each atomically in its own
   * object. If any subject denies (or fails), what the others charged is refunded, so a denial
   * never uses up another subject's quota. With an idempotency key the whole call is
   * retry-safe: each subject's check is keyed `<key>#<index>` and its refund `<key>#<index>:refund`.
   */
  async checkMany(input: CheckManyInput): Promise<CheckManyResult> {
    // Validated here too: it fans out to several objects and must refuse before any of them is charged.
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
    return this.#route(input, peekInputSchema, "peek input").peek(input);
  }

  async reset(input: ResetInput): Promise<ResetResult> {
    return this.#route(input, resetInputSchema, "reset input").reset(input);
  }

  async refund(input: RefundInput): Promise<RefundResult> {
    return this.#route(input, refundInputSchema, "refund input").refund(input);
  }

  async acquire(input: AcquireInput): Promise<AcquireResult> {
    return this.#route(input, acquireInputSchema, "acquire input").acquire(input);
  }

  async release(input: ReleaseInput): Promise<ReleaseResult> {
    return this.#route(input, releaseInputSchema, "release input").release(input);
  }

  async heartbeat(input: HeartbeatInput): Promise<HeartbeatResult> {
    return this.#route(input, heartbeatInputSchema, "heartbeat input").heartbeat(input);
  }

  async setOverride(input: SetOverrideInput): Promise<OverrideResult> {
    return this.#route(input, setOverrideInputSchema, "setOverride input").setOverride(input);
  }

  async clearOverride(input: SubjectInput): Promise<ClearOverrideResult> {
    return this.#route(input, subjectInputSchema, "clearOverride input").clearOverride(input);
  }

  async block(input: BlockInput): Promise<BlockResult> {
    return this.#route(input, blockInputSchema, "block input").block(input);
  }

  async unblock(input: SubjectInput): Promise<UnblockResult> {
    return this.#route(input, subjectInputSchema, "unblock input").unblock(input);
  }

  #limiter(subject: string) {
    return this.#env.RATE_LIMITER.getByName(subject);
  }

  /** The subject's limiter; an input without a usable subject is refused here, since no object can be chosen. */
  #route(input: unknown, schema: v.GenericSchema, what: string) {
    return this.#limiter(routeName(input, "subject", objectName, { schema, what }));
  }
}
