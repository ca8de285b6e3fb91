/**
 * The order in which credit is drawn from grants, and the drawing itself. Pure: the caller
 * loads the grants and writes the result.
 *
 * Order (docs/credits.md): lower `priority` first; then the grant that expires soonest (a
 * grant without expiry last); then the oldest. Spending expiring credit first is what a
 * customer expects and what Stripe, Lago and Orb do.
 */
export interface GrantBucket {
  grantId: string;
  /** Unspent, unreserved, unexpired credit left in the grant. */
  remaining: number;
  priority: number;
  expiresAt: number | null;
  /** Creation order, for the last tie-break. */
  seq: number;
}

/** One part of a consumption or reservation: from a grant, or (`grantId: null`) from the overdraft. */
export interface Draw {
  grantId: string | null;
  amount: number;
}

export function burnDownOrder(a: GrantBucket, b: GrantBucket): number {
  if (a.priority !== b.priority) return a.priority - b.priority;
  const ae = a.expiresAt ?? Number.POSITIVE_INFINITY;
  const be = b.expiresAt ?? Number.POSITIVE_INFINITY;
  if (ae !== be) return ae < be ? -1 : 1;
  return a.seq - b.seq;
}

/** Whether a grant can be drawn from at `nowMs` (an expired grant cannot, even before its expiry is booked). */
export function isSpendable(grant: GrantBucket, nowMs: number): boolean {
  return grant.remaining > 0 && (grant.expiresAt === null || grant.expiresAt > nowMs);
}

/**
 * Draws `amount` from `grants` in burn-down order. Returns the draws from grants and the
 * `shortfall` the grants could not cover (which only an overdraft may cover).
 */
export function drawFromGrants(grants: readonly GrantBucket[], amount: number, nowMs: number): { draws: Draw[]; shortfall: number } {
  const draws: Draw[] = [];
  let left = amount;
  for (const grant of [...grants].filter((g) => isSpendable(g, nowMs)).sort(burnDownOrder)) {
    if (left === 0) break;
    const take = Math.min(left, grant.remaining);
    draws.push({ grantId: grant.grantId, amount: take });
    left -= take;
  }
  return { draws, shortfall: left };
}

/**
 * Splits `amount` over existing draws (a hold's allocations) in their order: the first
 * `amount` units are taken, the rest are left. Used for a partial capture.
 */
export function splitDraws(draws: readonly Draw[], amount: number): { taken: Draw[]; left: Draw[] } {
  const taken: Draw[] = [];
  const left: Draw[] = [];
  let rest = amount;
  for (const draw of draws) {
    const take = Math.min(rest, draw.amount);
    if (take > 0) taken.push({ grantId: draw.grantId, amount: take });
    if (draw.amount - take > 0) left.push({ grantId: draw.grantId, amount: draw.amount - take });
    rest -= take;
  }
  return { taken, left };
}

/** Merges draws of the same grant, keeping first-seen order. */
export function mergeDraws(draws: readonly Draw[]): Draw[] {
  const merged = new Map<string | null, number>();
  for (const draw of draws) merged.set(draw.grantId, (merged.get(draw.grantId) ?? 0) + draw.amount);
  return [...merged].filter(([, amount]) => amount > 0).map(([grantId, amount]) => ({ grantId, amount }));
}
