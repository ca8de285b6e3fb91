import { RpcTarget } from "cloudflare:workers";
import type * as v from "valibot";
import type { AdmitRequestResult, CommitResult } from "../../rpc/credits";
import type { AuthorizeCode, AuthorizeResult, GatewayApi, SettleResult } from "../../rpc/gateway";
import type { Decision } from "../../rpc/rate-limits";
import { loadPolicies } from "../rate-limits/policies";
import type { Env } from "../platform/env";
import { errorCodeOf, ServiceError } from "../platform/errors";
import { parseKey } from "../credits/keys";
import { parseInput } from "../platform/schemas";
import { authorizeSchema, settleSchema } from "./schemas";
import { enqueueHit } from "../path-stats/hit-batcher";
import { settleBatchesFor } from "./settle-batches";
import { isDenied } from "../operations/protection/deny-list";

/** How long a hold placed for `estimate` stays open if the gateway never settles it (unless `holdTtlMs` says otherwise). */
export const GATEWAY_HOLD_TTL_MS = 10 * 60_000;

/** Hands a promise to the runtime to finish after the answer is sent (`ctx.waitUntil`). */
export type WaitUntil = (promise: Promise<unknown>) => void;

type Status = AuthorizeResult["status"];

const KEY_CODES: Record<Exclude<AdmitRequestResult, { ok: true }>["code"], { status: Status; code: AuthorizeCode }> = {
  MALFORMED: { status: 401, code: "INVALID_KEY" },
  NOT_FOUND: { status: 401, code: "INVALID_KEY" },
  REVOKED: { status: 401, code: "KEY_REVOKED" },
  KEY_INACTIVE: { status: 401, code: "KEY_REVOKED" },
  EXPIRED: { status: 401, code: "KEY_EXPIRED" },
  INSUFFICIENT_SCOPE: { status: 403, code: "INSUFFICIENT_SCOPE" },
  RATE_LIMITED: { status: 429, code: "RATE_LIMITED" },
  INSUFFICIENT_CREDITS: { status: 402, code: "INSUFFICIENT_CREDITS" },
  SPEND_CAP_EXCEEDED: { status: 402, code: "SPEND_CAP_EXCEEDED" },
};

/**
 * The gateway hot path (docs/gateway.md). `authorize` parses the key locally (a malformed
 * one is refused without touching any object), then calls the key's account and the client
 * IP's limiter in parallel, so its latency is one object round trip. When one admits and
 * the other denies, what the admitting one took is given back before the answer. The path
 * hit is recorded after the answer (`waitUntil`), batched with the isolate's other hits.
 */
export class GatewayService extends RpcTarget implements GatewayApi {
  readonly #env: Env;
  readonly #waitUntil: WaitUntil;

  constructor(env: Env, waitUntil: WaitUntil) {
    super();
    this.#env = env;
    this.#waitUntil = waitUntil;
  }

  async authorize(input: unknown): Promise<AuthorizeResult> {
    // Validated here: it answers some requests itself (a malformed key) and fans out to a limiter and a ledger.
    const parsed = parseInput(authorizeSchema, input, "authorize input");
    // A denied address is refused before any other work (docs/protection.md).
    const result = (await isDenied(this.#env, parsed.ip)) ? ipDenied() : await this.#decide(parsed);
    this.#record(parsed, result.status);
    return result;
  }

  /**
   * Settles a hold placed by `authorize`: commits `actualCost` (0 voids it) or the price of
   * `usage`, idempotently. The upstream status and latency are kept in the settling entry's `meta`.
   */
  async settle(input: unknown): Promise<SettleResult> {
    // Validated here: the ledger calls it makes (void, commit, hold, debit, charge) are built from it, not forwarded.
    const parsed = parseInput(settleSchema, input, "settle input");
    const { accountId, holdId, actualCost, usage, idempotencyKey } = parsed;
    const ledger = this.#env.CREDIT_LEDGER.getByName(accountId);
    const meta = { status: String(parsed.status), latencyMs: String(Math.round(parsed.latencyMs)) };
    if (actualCost === 0) {
      const voided = await ledger.void({ accountId, holdId, idempotencyKey, reason: "settled at 0" });
      return { balance: voided.balance.available, outcome: voided.ok ? "voided" : "already_settled", charged: 0 };
    }
    const cost = usage === undefined ? { amount: actualCost! } : { usage };
    const capAtHold = parsed.capAtHold === true;
    // Batched with this isolate's other settles of the account that wait while one is in flight (settle-batches.ts).
    const committed = await settleBatchesFor(this.#env).commit(accountId, {
      holdId,
      ...cost,
      capAtHold,
      idempotencyKey,
      reason: "settle",
      meta,
    });
    if (committed.ok) return settled(committed, "committed", capAtHold);
    if (committed.code === "INSUFFICIENT_CREDITS") {
      // The account cannot cover more than was held: take the hold in full, which it can; the rest is an overrun entry.
      const capped = await ledger.commit({
        accountId,
        holdId,
        ...cost,
        capAtHold: true,
        idempotencyKey: `${idempotencyKey}:capped`,
        reason: "settle (capped at the hold)",
        meta,
      });
      return capped.ok
        ? settled(capped, "capped", capAtHold)
        : { balance: capped.balance.available, outcome: "already_settled", charged: 0 };
    }
    if (committed.status !== "expired") return { balance: committed.balance.available, outcome: "already_settled", charged: 0 };
    // The hold expired before the gateway settled: the request still happened, so debit it (priced, for usage).
    const hold = await ledger.hold({ accountId, holdId });
    const late = {
      accountId,
      reason: "settle after the hold expired",
      idempotencyKey: `${idempotencyKey}:late`,
      ...(hold.keyId === undefined ? {} : { keyId: hold.keyId }),
      meta: { ...meta, holdId },
    };
    const debited = usage === undefined ? await ledger.debit({ ...late, amount: actualCost! }) : await ledger.charge({ ...late, usage });
    return debited.ok
      ? { balance: debited.balance.available, outcome: "debited", charged: debited.entry.amount }
      : { balance: debited.balance.available, outcome: "insufficient_credits", charged: 0 };
  }

  async #decide(parsed: v.InferOutput<typeof authorizeSchema>): Promise<AuthorizeResult> {
    let key = undefined as ReturnType<typeof parseKey>;
    if (parsed.apiKey !== undefined) {
      key = parseKey(parsed.apiKey);
      // Malformed or mistyped (bad checksum): refused here, no object touched.
      if (key === undefined) return denied(401, "INVALID_KEY");
    } else if (parsed.scope !== undefined || parsed.cost !== undefined || parsed.estimate !== undefined || parsed.usage !== undefined) {
      return denied(401, "MISSING_KEY");
    }
    const policy = this.#ipPolicy();
    const subject = `ip:${parsed.ip}`;
    const requestId = crypto.randomUUID();

    const [ipOutcome, ledgerOutcome] = await Promise.allSettled([
      policy === undefined ? Promise.resolve(undefined) : this.#env.RATE_LIMITER.getByName(subject).check({ subject, policy }),
      key === undefined
        ? Promise.resolve(undefined)
        : this.#env.CREDIT_LEDGER.getByName(key.accountId).admitRequest({
            key: parsed.apiKey!,
            ...(parsed.scope === undefined ? {} : { scope: parsed.scope }),
            ...(parsed.usage === undefined ? { amount: parsed.cost ?? parsed.estimate ?? 0 } : { usage: parsed.usage }),
            mode: parsed.cost === undefined ? "hold" : "debit",
            ttlMs: parsed.holdTtlMs ?? GATEWAY_HOLD_TTL_MS,
            // No idempotency key: this request is new, and nothing ever retries this call with it.
            reason: `${parsed.method} ${parsed.path}`.slice(0, 256),
          }),
    ]);
    const ip = ipOutcome.status === "fulfilled" ? (ipOutcome.value as Decision | undefined) : undefined;
    const admission = ledgerOutcome.status === "fulfilled" ? (ledgerOutcome.value as AdmitRequestResult | undefined) : undefined;
    const ipAdmitted = ipOutcome.status === "fulfilled" && (ip === undefined || ip.allowed);
    const ledgerAdmitted = ledgerOutcome.status === "fulfilled" && (admission === undefined || admission.ok);

    // Whatever one side took is given back when the other refused (or failed), before answering,
    // so the very next request sees it: the IP check is refunded; the key's request, hold or debit released.
    if (!ipAdmitted || !ledgerAdmitted) {
      await Promise.all([
        ip?.allowed && policy !== undefined ? this.#refundIp(subject, policy, requestId) : undefined,
        admission?.ok ? this.#release(admission, requestId) : undefined,
      ]);
    }
    if (ipOutcome.status === "rejected") throw ipOutcome.reason;
    if (ledgerOutcome.status === "rejected") throw ledgerOutcome.reason;

    const ids =
      admission === undefined || admission.accountId === undefined ? {} : { accountId: admission.accountId, keyId: admission.keyId! };
    const keyLimits = admission?.keyLimits;
    if (admission !== undefined && !admission.ok) {
      const mapped = KEY_CODES[admission.code];
      // Authentication and scope come first; a per-IP 429 outranks the key's own 402/429.
      if (mapped.status === 401 || mapped.status === 403) return { ...denied(mapped.status, mapped.code, parsed.scope), ...ids };
      if (ip !== undefined && !ip.allowed) return { ...rateLimited(ip), ...ids };
      if (mapped.status === 429) return { ...rateLimited(keyLimits, admission.retryAfterMs), ...ids };
      return { allowed: false, status: 402, code: mapped.code, ...ids, retryAfterMs: 0, headers: withoutRetry(tightest(ip, keyLimits)) };
    }
    if (ip !== undefined && !ip.allowed) return { ...rateLimited(ip), ...ids };
    return {
      allowed: true,
      status: 200,
      ...ids,
      ...(admission?.ok && admission.holdId !== undefined ? { holdId: admission.holdId, held: admission.held! } : {}),
      ...(admission?.ok && admission.entryId !== undefined ? { entryId: admission.entryId } : {}),
      retryAfterMs: 0,
      headers: withoutRetry(tightest(ip, keyLimits)),
    };
  }

  #ipPolicy(): string | undefined {
    const name = this.#env.GATEWAY_IP_POLICY;
    if (name === undefined || name === "") return undefined;
    if (!loadPolicies(this.#env.RATE_LIMIT_POLICIES).has(name)) {
      console.error(`GATEWAY_IP_POLICY names "${name}", which RATE_LIMIT_POLICIES does not define`);
      throw new ServiceError("INTERNAL", "the gateway's IP policy is misconfigured");
    }
    return name;
  }

  async #refundIp(subject: string, policy: string, requestId: string): Promise<void> {
    try {
      await this.#env.RATE_LIMITER.getByName(subject).refund({ subject, policy, cost: 1, idempotencyKey: `authorize:${requestId}:refund` });
    } catch (error) {
      console.error("authorize: refund of the IP check failed", errorCodeOf(error) ?? error);
    }
  }

  async #release(admission: Extract<AdmitRequestResult, { ok: true }>, requestId: string): Promise<void> {
    try {
      await this.#env.CREDIT_LEDGER.getByName(admission.accountId).releaseAdmission({
        accountId: admission.accountId,
        keyId: admission.keyId,
        ...(admission.holdId === undefined ? {} : { holdId: admission.holdId }),
        ...(admission.entryId === undefined ? {} : { entryId: admission.entryId }),
        idempotencyKey: `authorize:${requestId}:release`,
      });
    } catch (error) {
      // A hold left behind is still released by the ledger's alarm at its expiry.
      console.error("authorize: releasing the overruled admission failed", errorCodeOf(error) ?? error);
    }
  }

  /**
   * Records the hit after the answer; statistics never delay or fail a request. The hit joins
   * the isolate's batch (one `ingest` per collector shard within a second, hit-batcher.ts);
   * `waitUntil` holds this request until its batch is sent.
   */
  #record(parsed: { ip: string; method: string; path: string }, status: number): void {
    const hit = { ip: parsed.ip, method: parsed.method, path: parsed.path, status };
    this.#waitUntil(
      enqueueHit(this.#env, hit).catch((error: unknown) =>
        console.error("authorize: recording the hit failed", errorCodeOf(error) ?? error),
      ),
    );
  }
}

/** The answer to a commit that went through: what it took, and (with `capAtHold`) what it left as an overrun. */
function settled(committed: Extract<CommitResult, { ok: true }>, outcome: "committed" | "capped", capAtHold: boolean): SettleResult {
  const charged = committed.entry.amount;
  const overrun = committed.overrun?.amount ?? 0;
  return { balance: committed.balance.available, outcome, charged, ...(capAtHold ? { overrun } : {}) };
}

function denied(status: 401 | 403, code: AuthorizeCode, scope?: string): AuthorizeResult {
  const challenge =
    status === 403
      ? `Bearer realm="tollgate", error="insufficient_scope"${scope === undefined ? "" : `, scope="${scope}"`}`
      : code === "MISSING_KEY"
        ? `Bearer realm="tollgate"`
        : `Bearer realm="tollgate", error="invalid_token"`;
  return { allowed: false, status, code, retryAfterMs: 0, headers: { "WWW-Authenticate": challenge } };
}

function ipDenied(): AuthorizeResult {
  return { allowed: false, status: 403, code: "IP_DENIED", retryAfterMs: 0, headers: {} };
}

function rateLimited(decision: Decision | undefined, retryAfterMs?: number): AuthorizeResult {
  const wait = decision?.retryAfterMs ?? retryAfterMs ?? 0;
  const headers = decision?.headers ?? { "Retry-After": String(Math.max(1, Math.ceil(wait / 1000))) };
  return { allowed: false, status: 429, code: "RATE_LIMITED", retryAfterMs: wait, headers: { ...headers } };
}

/** The headers of whichever limit has less left: the client sees the one that binds first. */
function tightest(ip: Decision | undefined, key: Decision | undefined): Record<string, string> {
  if (ip === undefined) return key?.headers ?? {};
  if (key === undefined) return ip.headers;
  return key.remaining < ip.remaining ? key.headers : ip.headers;
}

function withoutRetry(headers: Record<string, string>): Record<string, string> {
  const { "Retry-After": _, ...rest } = headers;
  return rest;
}
