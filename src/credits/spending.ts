import type * as v from "valibot";
import type { CreditRefundResult, DebitResult, Denied, Draw, Entry, EntryPrice, Usage } from "../../rpc/credits";
import { invalidArgument, notFound, ServiceError } from "../platform/errors";
import { all, run } from "../platform/sql";
import { drawFromGrants, mergeDraws } from "./burn-down";
import type { Grants } from "./grants";
import { dayOf, monthOf } from "./invariants";
import { type Journal, noChange } from "./journal";
import type { LedgerAccount } from "./ledger-account";
import type { KeyAdmission, LedgerKeys } from "./ledger-keys";
import { type AccountRow, isExpired, newId, toBucket } from "./ledger-rows";
import { type grantSchema, LEDGER_BOUNDS } from "./schemas";

type GrantInput = v.InferOutput<typeof grantSchema>;

/** A debit (or a charge) as `consume` takes it. */
export interface Spend {
  amount: number;
  reason: string;
  idempotencyKey: string | null;
  keyId?: string;
  meta?: Record<string, string>;
  usage?: Usage;
  price?: EntryPrice;
}

/** How an amount would be covered: grants in burn-down order, the shortfall from the overdraft. */
export interface SpendPlan {
  draws: Draw[];
  shortfall: number;
}

/**
 * Grants, debits, refunds and the overdraft: the `grants` (through `Grants`, which writes each
 * changed grant once per transaction) and `refunded_parts` tables and the account's debt
 * columns. Every method runs inside the caller's transaction, after the caller has booked what
 * was due (`Holds.settleDue`).
 */
export class Spending {
  constructor(
    private readonly sql: SqlStorage,
    private readonly account: LedgerAccount,
    private readonly journal: Journal,
    private readonly keys: LedgerKeys,
    private readonly grants: Grants,
  ) {}

  /** A grant the account may take: it expires in the future and keeps the total granted within bounds. */
  assertGrantable(account: AccountRow, grant: GrantInput, nowMs: number): void {
    if (grant.expiresAt !== undefined && grant.expiresAt <= nowMs) throw invalidArgument("expiresAt must be in the future");
    if (account.granted + grant.amount > LEDGER_BOUNDS.maxGranted) {
      throw new ServiceError("RESOURCE_EXHAUSTED", `an account may be granted at most ${LEDGER_BOUNDS.maxGranted} in total`);
    }
  }

  /** Adds a grant and its entry; what the account owes is repaid from it first. */
  grant(grant: GrantInput, idempotencyKey: string, nowMs: number): Entry {
    const grantId = newId("g");
    const seq = this.account.row()!.last_seq + 1;
    this.grants.insert(grantId, seq, grant.amount, grant.priority ?? 0, grant.expiresAt ?? null);
    const written = this.journal.append(nowMs, {
      kind: "grant",
      amount: grant.amount,
      change: { ...noChange(), granted: grant.amount },
      reason: grant.reason,
      idempotencyKey,
      draws: [],
      grantId,
      expiresAt: grant.expiresAt,
      priority: grant.priority ?? 0,
      meta: grant.meta,
    });
    this.repayDebt(nowMs);
    return written;
  }

  /** Books the remainder of every grant whose expiry is due as expired, each exactly once. */
  expireGrants(nowMs: number): void {
    for (const grant of this.grants.dueToExpire(nowMs)) {
      this.grants.change(grant.grant_id, { expiryBooked: true, expired: grant.remaining, remaining: -grant.remaining });
      if (grant.remaining > 0) {
        this.journal.append(nowMs, {
          kind: "expire",
          amount: grant.remaining,
          change: { ...noChange(), expired: grant.remaining },
          reason: "grant expired",
          idempotencyKey: null,
          draws: [{ grantId: grant.grant_id, amount: grant.remaining }],
          grantId: grant.grant_id,
        });
      }
    }
  }

  /** A debit (or a charge): key admission, then funds, then the entry. */
  consume(nowMs: number, spend: Spend): DebitResult {
    const admission = this.admitKey(spend.keyId, spend.amount, nowMs);
    if (!admission.ok) return admission.denied;
    const plan = this.plan(spend.amount, nowMs);
    if (plan === undefined) return this.account.denied("INSUFFICIENT_CREDITS");
    this.take(plan.draws, "consumed");
    this.account.addDebt(0, plan.shortfall);
    const draws = plan.shortfall > 0 ? [...plan.draws, { grantId: null, amount: plan.shortfall }] : plan.draws;
    this.keys.record(admission.admitted, spend.amount, dayOf(nowMs), monthOf(nowMs));
    const entry = this.journal.append(nowMs, {
      kind: "debit",
      amount: spend.amount,
      change: { ...noChange(), consumed: spend.amount },
      reason: spend.reason,
      idempotencyKey: spend.idempotencyKey,
      draws,
      keyId: spend.keyId,
      price: spend.price,
      usage: spend.usage,
      meta: spend.meta,
    });
    return { ok: true, entry, balance: this.account.balance() };
  }

  /** Gives back `amount` (default: all still refundable) of a debit or commit, last drawn first. */
  refund(refund: { entryId: string; amount?: number; reason: string }, idempotencyKey: string, nowMs: number): CreditRefundResult {
    const taken = this.journal.find(refund.entryId);
    if (taken === undefined) throw notFound(`no entry "${refund.entryId}" in this account`);
    if (taken.kind !== "debit" && taken.kind !== "commit") {
      throw invalidArgument(`entry "${refund.entryId}" is a ${taken.kind}; only debits and commits can be refunded`);
    }
    // The entry's draws are where its credit came from; `refunded_parts` what went back of each.
    const refunded = new Map(
      all<{ ord: number; refunded: number }>(this.sql, "SELECT ord, refunded FROM refunded_parts WHERE entry_id = ?", refund.entryId).map(
        (part) => [part.ord, part.refunded],
      ),
    );
    const parts = taken.draws
      .map((draw, ord) => ({ ord, grant_id: draw.grantId, amount: draw.amount, refunded: refunded.get(ord) ?? 0 }))
      .reverse();
    const refundable = parts.reduce((sum, p) => sum + p.amount - p.refunded, 0);
    const amount = refund.amount ?? refundable;
    if (amount === 0 || amount > refundable) {
      return { ok: false, code: "REFUND_EXCEEDS_TAKEN", refundable, balance: this.account.balance() };
    }
    // Last drawn, first refunded: the reverse of the burn-down.
    const back: Draw[] = [];
    let left = amount;
    for (const part of parts) {
      const give = Math.min(left, part.amount - part.refunded);
      if (give <= 0) continue;
      run(
        this.sql,
        `INSERT INTO refunded_parts (entry_id, ord, refunded) VALUES (?, ?, ?)
         ON CONFLICT (entry_id, ord) DO UPDATE SET refunded = refunded + excluded.refunded`,
        refund.entryId,
        part.ord,
        give,
      );
      back.push({ grantId: part.grant_id, amount: give });
      left -= give;
      if (left === 0) break;
    }
    const expired = this.returnRefunded(back, nowMs);
    const entry = this.journal.append(nowMs, {
      kind: "refund",
      amount,
      change: { granted: 0, held: 0, consumed: -amount, expired },
      reason: refund.reason,
      idempotencyKey,
      draws: mergeDraws(back),
      keyId: taken.keyId,
      refundOf: refund.entryId,
    });
    this.repayDebt(nowMs);
    return { ok: true, entry, balance: this.account.balance() };
  }

  /** `LedgerKeys.admit`, with a refusal turned into the `Denied` answer (which carries the balance). */
  admitKey(
    keyId: string | undefined,
    amount: number,
    nowMs: number,
  ): { ok: true; admitted?: KeyAdmission } | { ok: false; denied: Denied } {
    const admission = this.keys.admit(keyId, amount, nowMs);
    if (admission.ok) return admission;
    const { code, ...rest } = admission.refusal;
    return { ok: false, denied: { ...this.account.denied(code), ...rest } };
  }

  /**
   * How `amount` would be covered: grants in burn-down order, the shortfall from the
   * overdraft. `undefined` when the debt would exceed the overdraft limit. The debt is read
   * here, not passed in: the caller's `settleDue` may just have released a hold or repaid
   * debt, and a row read before it would refuse credit that is there.
   */
  plan(amount: number, nowMs: number): SpendPlan | undefined {
    const account = this.account.row()!;
    const plan = drawFromGrants(this.grants.withRemaining().map(toBucket), amount, nowMs);
    const debt = account.held_debt + account.consumed_debt;
    if (debt + plan.shortfall > account.overdraft_limit) return undefined;
    return plan;
  }

  /** Takes a plan's draws off their grants' remainders: held, or consumed at once. */
  take(draws: readonly Draw[], as: "held" | "consumed"): void {
    for (const draw of draws) {
      this.grants.change(draw.grantId!, { remaining: -draw.amount, consumed: as === "consumed" ? draw.amount : 0 });
    }
  }

  /**
   * Gives refunded `parts` of consumed credit back to their grants (what goes back to an
   * expired grant is booked as expired at once), and to the overdraft, which
   * cancels debt. Held parts go back through `captureHeld`. Returns the amount booked as expired.
   */
  returnRefunded(parts: readonly Draw[], nowMs: number): number {
    let expired = 0;
    for (const part of parts) {
      if (part.grantId === null) {
        expired += this.refundDebt(part.amount, nowMs);
        continue;
      }
      const target = isExpired(this.grants.get(part.grantId), nowMs) ? "expired" : "remaining";
      this.grants.change(part.grantId, { consumed: -part.amount, [target]: part.amount });
      if (target === "expired") expired += part.amount;
    }
    return expired;
  }

  /**
   * Settles a hold's allocations: the `captured` parts move from held to consumed, the `returned`
   * ones go back (to an expired grant: booked as expired), and the debt moves with the overdraft's
   * parts. Returns the amount booked as expired.
   */
  captureHeld(captured: readonly Draw[], returned: readonly Draw[], nowMs: number): number {
    let heldDebt = 0;
    let consumedDebt = 0;
    let expired = 0;
    for (const part of captured) {
      if (part.grantId === null) {
        heldDebt -= part.amount;
        consumedDebt += part.amount;
      } else this.grants.change(part.grantId, { consumed: part.amount });
    }
    for (const part of returned) {
      if (part.grantId === null) {
        heldDebt -= part.amount;
        continue;
      }
      const target = isExpired(this.grants.get(part.grantId), nowMs) ? "expired" : "remaining";
      this.grants.change(part.grantId, { [target]: part.amount });
      if (target === "expired") expired += part.amount;
    }
    this.account.addDebt(heldDebt, consumedDebt);
    return expired;
  }

  /** Credit that became spendable while the account owes: it pays the debt first, in burn-down order. */
  repayDebt(nowMs: number): void {
    const debt = this.account.row()!.consumed_debt;
    if (debt === 0) return;
    const { draws } = drawFromGrants(this.grants.withRemaining().map(toBucket), debt, nowMs);
    let repaid = 0;
    for (const draw of draws) {
      this.grants.change(draw.grantId!, { remaining: -draw.amount, consumed: draw.amount, repaid: draw.amount });
      repaid += draw.amount;
    }
    this.account.addDebt(0, -repaid);
  }

  /**
   * Refunds an overdraft part: it cancels outstanding debt; whatever a later grant already
   * repaid goes back to that grant (newest repayment first). Returns what was booked expired.
   */
  private refundDebt(amount: number, nowMs: number): number {
    const account = this.account.row()!;
    const cancel = Math.min(amount, account.consumed_debt);
    this.account.addDebt(0, -cancel);
    let left = amount - cancel;
    let expired = 0;
    for (const grant of this.grants.repaying()) {
      if (left === 0) break;
      const give = Math.min(left, grant.repaid);
      const target = isExpired(grant, nowMs) ? "expired" : "remaining";
      this.grants.change(grant.grant_id, { repaid: -give, consumed: -give, [target]: give });
      if (target === "expired") expired += give;
      left -= give;
    }
    if (left !== 0) throw new ServiceError("INTERNAL", "refund of overdraft found no debt or repayment to reverse");
    return expired;
  }
}
