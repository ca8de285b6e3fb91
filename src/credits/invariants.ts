/**
 * The ledger's invariants (design.md §2), as a pure check over what an object has stored.
 * The self-audit alarm and the tests run it; a violation is reported, never repaired.
 */
export interface Totals {
  granted: number;
  held: number;
  consumed: number;
  expired: number;
}

/** What is spendable now: may be negative down to `-overdraftLimit`. */
export function availableOf(t: Totals): number {
  return t.granted - t.held - t.consumed - t.expired;
}

export interface GrantAudit {
  grantId: string;
  amount: number;
  remaining: number;
  /** Reserved by open holds. */
  allocated: number;
  consumed: number;
  expired: number;
}

export interface AuditInput {
  /** The running totals the object keeps. */
  stored: Totals & { heldDebt: number; consumedDebt: number };
  /** The totals re-derived by summing every entry's change. */
  fromEntries: Totals;
  /** `balanceAfter` of the last entry (0 when there is none). */
  lastBalanceAfter: number;
  /** Entries whose `balanceAfter` does not follow from the previous one and their own change. */
  brokenBalanceAfter: number[];
  overdraftLimit: number;
  grants: readonly GrantAudit[];
  /** Sum of open holds' amounts, and of their allocations (grant-backed plus overdraft). */
  openHolds: number;
  allocations: number;
  unfundedAllocations: number;
}

/** Every invariant that does not hold, as a sentence; empty when all hold. */
export function checkInvariants(input: AuditInput): string[] {
  const violations: string[] = [];
  const { stored, fromEntries } = input;
  const available = availableOf(stored);
  for (const field of ["granted", "held", "consumed", "expired"] as const) {
    if (stored[field] !== fromEntries[field]) {
      violations.push(`${field}: stored ${stored[field]}, re-derived from entries ${fromEntries[field]}`);
    }
    if (stored[field] < 0) violations.push(`${field} is negative (${stored[field]})`);
  }
  if (available < -input.overdraftLimit) {
    violations.push(`available ${available} is below -overdraftLimit ${-input.overdraftLimit}`);
  }
  if (input.lastBalanceAfter !== available) {
    violations.push(`last entry's balanceAfter ${input.lastBalanceAfter} differs from available ${available}`);
  }
  for (const seq of input.brokenBalanceAfter) violations.push(`entry ${seq}: balanceAfter does not follow from its change`);
  const grantedSum = input.grants.reduce((sum, g) => sum + g.amount, 0);
  if (grantedSum !== stored.granted) violations.push(`grants sum to ${grantedSum}, granted is ${stored.granted}`);
  const remaining = input.grants.reduce((sum, g) => sum + g.remaining, 0);
  if (remaining - stored.heldDebt - stored.consumedDebt !== available) {
    violations.push(`grant remainders ${remaining} minus debt ${stored.heldDebt + stored.consumedDebt} differ from available ${available}`);
  }
  for (const g of input.grants) {
    if (g.remaining < 0 || g.allocated < 0 || g.consumed < 0 || g.expired < 0) violations.push(`grant ${g.grantId} has a negative part`);
    if (g.remaining + g.allocated + g.consumed + g.expired !== g.amount) {
      violations.push(`grant ${g.grantId}: remaining + allocated + consumed + expired ≠ amount ${g.amount}`);
    }
  }
  if (input.openHolds !== stored.held) violations.push(`open holds sum to ${input.openHolds}, held is ${stored.held}`);
  if (input.allocations !== stored.held) violations.push(`hold allocations sum to ${input.allocations}, held is ${stored.held}`);
  if (input.unfundedAllocations !== stored.heldDebt) {
    violations.push(`overdraft allocations ${input.unfundedAllocations} differ from held debt ${stored.heldDebt}`);
  }
  if (stored.heldDebt < 0 || stored.consumedDebt < 0) violations.push("debt is negative");
  if (stored.heldDebt + stored.consumedDebt > input.overdraftLimit) {
    violations.push(`debt ${stored.heldDebt + stored.consumedDebt} exceeds the overdraft limit ${input.overdraftLimit}`);
  }
  return violations;
}

/** UTC calendar day `YYYY-MM-DD` of `nowMs`: the unit of usage rollups and daily spend caps. */
export function dayOf(nowMs: number): string {
  return new Date(nowMs).toISOString().slice(0, 10);
}

/** UTC calendar month `YYYY-MM` of `nowMs`: the unit of monthly spend caps. */
export function monthOf(nowMs: number): string {
  return new Date(nowMs).toISOString().slice(0, 7);
}
