import type * as v from "valibot";
import type { AdmitRequestResult, DebitResult, ReleaseAdmissionResult, ReserveResult, VerifyKeyResult } from "../../rpc/credits";
import type { Holds } from "./holds";
import { dayOf, monthOf } from "./invariants";
import type { Journal } from "./journal";
import { hashSecret, type ParsedKey, scopeAllows } from "./keys";
import type { LedgerAccount } from "./ledger-account";
import type { LedgerKeys } from "./ledger-keys";
import { hashesEqual, toKeyInfo, UNKNOWN_KEY_HASH } from "./ledger-rows";
import type { admitRequestSchema, releaseAdmissionSchema } from "./schemas";
import type { Spending } from "./spending";

type AdmitRequestInput = v.InferOutput<typeof admitRequestSchema>;
type ReleaseAdmissionInput = v.InferOutput<typeof releaseAdmissionSchema>;
/** A key that verified. */
export type ValidKey = Extract<VerifyKeyResult, { valid: true }>;

/**
 * Key verification and the gateway's calls into the account: `admitRequest` (verify, rate
 * rules, caps and funds in one transaction) and `releaseAdmission` (its undo).
 */
export class GatewayAdmission {
  constructor(
    private readonly account: LedgerAccount,
    private readonly keys: LedgerKeys,
    private readonly journal: Journal,
    private readonly spending: Spending,
    private readonly holds: Holds,
  ) {}

  /**
   * Checks a key: secret (in constant time), revocation, expiry, and a scope. The same work for
   * an unknown id and a wrong secret, so neither can be probed.
   */
  verify(key: ParsedKey, scope: string | undefined, nowMs: number): VerifyKeyResult {
    this.account.assertName(key.accountId);
    if (!this.account.exists()) return { valid: false, code: "NOT_FOUND" };
    const row = this.keys.row(key.keyId);
    // An unknown id and a wrong secret answer alike and take the same work, so neither can be probed.
    const given = hashSecret(key.secret);
    if (!hashesEqual(given, row?.secret_hash ?? UNKNOWN_KEY_HASH) || row === undefined) return { valid: false, code: "NOT_FOUND" };
    if (row.revoked_at_ms !== null && row.revoked_at_ms <= nowMs) return { valid: false, code: "REVOKED" };
    if (row.expires_at_ms !== null && row.expires_at_ms <= nowMs) return { valid: false, code: "EXPIRED" };
    const scopes = JSON.parse(row.scopes) as string[];
    if (scope !== undefined && !scopeAllows(scopes, scope)) return { valid: false, code: "INSUFFICIENT_SCOPE" };
    const info = toKeyInfo(row);
    return {
      valid: true,
      accountId: key.accountId,
      keyId: row.key_id,
      scopes,
      rules: info.rules,
      ...(info.expiresAt === undefined ? {} : { expiresAt: info.expiresAt }),
      ...(info.spendCap === undefined ? {} : { spendCap: info.spendCap }),
    };
  }

  /**
   * An admitted request's work, after its key verified: the key's rate rules and caps, then a
   * hold or a debit of `amount` (or, for 0, only the rules). Runs inside the caller's transaction.
   */
  admit(request: AdmitRequestInput & { amount: number }, verdict: ValidKey, nowMs: number): AdmitRequestResult {
    const { accountId, keyId, scopes } = verdict;
    const idempotencyKey = request.idempotencyKey ?? null;
    this.account.require(accountId);
    this.holds.settleDue(nowMs);
    const spend = { amount: request.amount, keyId, reason: request.reason ?? "gateway request", meta: request.meta };
    let outcome: ReserveResult | DebitResult | { ok: true };
    if (request.amount === 0) {
      const admission = this.spending.admitKey(keyId, 0, nowMs);
      if (admission.ok) this.keys.record(admission.admitted, 0, dayOf(nowMs), monthOf(nowMs));
      outcome = admission.ok ? { ok: true } : admission.denied;
    } else if (request.mode === "hold") {
      outcome = this.holds.place({ ...spend, ttlMs: request.ttlMs }, idempotencyKey, nowMs);
    } else {
      outcome = this.spending.consume(nowMs, { ...spend, idempotencyKey });
    }
    const row = this.keys.require(keyId);
    if (!outcome.ok) {
      const keyLimits = this.keys.limits(row, nowMs, 1);
      return { ...outcome, accountId, keyId, ...(keyLimits === undefined ? {} : { keyLimits }) };
    }
    const keyLimits = this.keys.limits(row, nowMs, 0);
    return {
      ok: true,
      accountId,
      keyId,
      scopes,
      ...("holdId" in outcome ? { holdId: outcome.holdId, held: request.amount, expiresAt: outcome.expiresAt } : {}),
      ...("entry" in outcome && !("holdId" in outcome) ? { entryId: outcome.entry.entryId } : {}),
      balance: this.account.balance(),
      ...(keyLimits === undefined ? {} : { keyLimits }),
    };
  }

  /**
   * Undoes an admitted request that another check overruled: gives the request back to the
   * key's rate rules, voids its hold or refunds its debit, and takes the amount off the key's
   * spend counters. Runs inside the caller's transaction, after it settled what was due.
   */
  release(request: ReleaseAdmissionInput, nowMs: number): ReleaseAdmissionResult {
    const key = this.keys.require(request.keyId);
    this.keys.refundRequest(key, nowMs);
    if (request.holdId !== undefined) {
      const hold = this.holds.require(request.holdId);
      if (hold.status === "open") this.holds.release(hold, "void", "request overruled", null, nowMs);
    }
    if (request.entryId !== undefined) {
      const refunded = this.spending.refund({ entryId: request.entryId, reason: "request overruled" }, request.idempotencyKey, nowMs);
      if (refunded.ok) {
        const taken = this.journal.get(request.entryId);
        this.keys.addSpend(key, -refunded.entry.amount, dayOf(taken.at), monthOf(taken.at));
      }
    }
    return { balance: this.account.balance() };
  }
}
