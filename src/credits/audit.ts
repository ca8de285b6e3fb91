import type { AuditReport, ChainReport, Entry } from "../../rpc/credits";
import { all, maybeOne, one, run } from "../platform/sql";
import { GENESIS_HASH, verifyChain } from "./chain";
import type { Transaction } from "../platform/idempotency";
import { checkInvariants, type Totals } from "./invariants";
import { noChange } from "./journal";
import type { LedgerAccount } from "./ledger-account";
import { type EntryRow, type GrantRow, toBalance } from "./ledger-rows";

/**
 * Every allocation of every open hold (`openHolds`, a query of them), one row each: `grant_id`
 * (null: the overdraft), `amount`.
 */
function openAllocations(openHolds: string): string {
  return `SELECT json_extract(part.value, '$.grantId') AS grant_id, json_extract(part.value, '$.amount') AS amount
    FROM (${openHolds}) AS hold, json_each(hold.allocations) AS part WHERE hold.allocations IS NOT NULL`;
}

/** Audit reports kept per account. */
const AUDIT_REPORTS_KEPT = 100;
const CHAIN_PAGE = 500;

/** The state after the last clean audit: where the next incremental audit starts. */
interface AuditCheckpoint {
  seq: number;
  hash: string;
  totals: Totals;
  balanceAfter: number;
}

/**
 * The self-audit: re-derives the totals from the entries, re-hashes the chain and checks every
 * invariant against the derived state (`audit_checkpoint`, `audit_reports`). Reports; never repairs.
 */
export class LedgerAudit {
  constructor(
    private readonly sql: SqlStorage,
    private readonly account: LedgerAccount,
    private readonly transaction: Transaction,
    /** A query for the open holds (Holds.openHoldsQuery), asked at each audit. */
    private readonly openHolds: () => string,
  ) {}

  /** Re-hashes every entry in order; reports the first that does not verify. */
  verifyChain(): ChainReport {
    return this.scan(undefined, Number.POSITIVE_INFINITY).chain;
  }

  /**
   * Re-derives the totals from the entries and checks every invariant, then stores the report.
   *
   * `full` starts from the first entry. `incremental` (the alarm's) starts from the last
   * checkpoint, the state after the last clean audit, and reads at most `budget` entries: a
   * long backlog is worked off over several runs, and `undefined` says "not done yet". The
   * checkpoint only moves after a clean audit, so a divergence is reported again until fixed.
   */
  run(nowMs: number, mode: "full" | "incremental", budget = Number.POSITIVE_INFINITY): AuditReport | undefined {
    const account = this.account.row()!;
    const from = mode === "full" ? undefined : this.checkpoint();
    const scan = this.scan(from, budget);
    if (!scan.reachedEnd && scan.chain.ok && scan.brokenBalanceAfter.length === 0) {
      this.saveCheckpoint(scan.end);
      return undefined;
    }
    const openHolds = this.openHolds();
    const grants = all<GrantRow & { allocated: number }>(
      this.sql,
      `WITH allocated AS (${openAllocations(openHolds)})
       SELECT g.*, COALESCE((SELECT SUM(a.amount) FROM allocated a WHERE a.grant_id = g.grant_id), 0) AS allocated FROM grants g`,
    );
    const sums = one<{ open: number; allocations: number; unfunded: number }>(
      this.sql,
      `WITH allocated AS (${openAllocations(openHolds)})
       SELECT (SELECT COALESCE(SUM(amount), 0) FROM (${openHolds})) AS open,
              (SELECT COALESCE(SUM(amount), 0) FROM allocated) AS allocations,
              (SELECT COALESCE(SUM(amount), 0) FROM allocated WHERE grant_id IS NULL) AS unfunded`,
    );
    // Totals can only be compared once every entry has been read; a problem found on the way is reported at once.
    const violations = !scan.reachedEnd
      ? scan.brokenBalanceAfter.map((seq) => `entry ${seq}: balanceAfter does not follow from its change`)
      : checkInvariants({
          stored: {
            granted: account.granted,
            held: account.held,
            consumed: account.consumed,
            expired: account.expired,
            heldDebt: account.held_debt,
            consumedDebt: account.consumed_debt,
          },
          fromEntries: scan.end.totals,
          lastBalanceAfter: scan.end.balanceAfter,
          brokenBalanceAfter: scan.brokenBalanceAfter,
          overdraftLimit: account.overdraft_limit,
          grants: grants.map((g) => ({
            grantId: g.grant_id,
            amount: g.amount,
            remaining: g.remaining,
            allocated: g.allocated,
            consumed: g.consumed,
            expired: g.expired,
          })),
          openHolds: sums.open,
          allocations: sums.allocations,
          unfundedAllocations: sums.unfunded,
        });
    if (!scan.chain.ok) violations.push(`hash chain broken at entry ${scan.chain.brokenAtSeq ?? "head"}: ${scan.chain.reason}`);
    const report: AuditReport = {
      at: nowMs,
      ok: violations.length === 0,
      violations,
      mode,
      fromSeq: (from?.seq ?? 0) + 1,
      entries: account.last_seq,
      balance: toBalance(account),
      chain: scan.chain,
    };
    if (!report.ok) {
      console.error(`credit ledger ${account.account_id}: self-audit found ${violations.length} violation(s): ${violations.join("; ")}`);
    }
    this.transaction(() => {
      if (report.ok) this.saveCheckpoint(scan.end);
      run(this.sql, "INSERT INTO audit_reports (at_ms, ok, body) VALUES (?, ?, ?)", nowMs, report.ok ? 1 : 0, JSON.stringify(report));
      run(
        this.sql,
        "DELETE FROM audit_reports WHERE rowid NOT IN (SELECT rowid FROM audit_reports ORDER BY at_ms DESC, rowid DESC LIMIT ?)",
        AUDIT_REPORTS_KEPT,
      );
    });
    return report;
  }

  /** Stored reports, newest first; `divergent` keeps only those that found a violation. */
  reports(limit: number, divergent: boolean | undefined): AuditReport[] {
    const rows = all<{ body: string }>(
      this.sql,
      `SELECT body FROM audit_reports ${divergent ? "WHERE ok = 0" : ""} ORDER BY at_ms DESC, rowid DESC LIMIT ?`,
      limit,
    );
    return rows.map((r) => JSON.parse(r.body) as AuditReport);
  }

  /**
   * Reads entries after `from` (a verified checkpoint, or the genesis) in pages, at most
   * `budget` of them: re-hashes the chain, re-adds every entry's change and re-checks every
   * `balanceAfter`. The sums go on past a chain break, so the totals are still compared.
   */
  private scan(from: AuditCheckpoint | undefined, budget: number) {
    const totals = from ? { ...from.totals } : noChange();
    const brokenBalanceAfter: number[] = [];
    let balanceAfter = from?.balanceAfter ?? 0;
    let afterSeq = from?.seq ?? 0;
    let head = from?.hash ?? GENESIS_HASH;
    let chain: ChainReport = { ok: true, checked: 0, headHash: head };
    let scanned = 0;
    while (scanned < budget) {
      const rows = all<EntryRow>(
        this.sql,
        "SELECT seq, body, prev_hash, hash FROM entries WHERE seq > ? ORDER BY seq LIMIT ?",
        afterSeq,
        Math.min(CHAIN_PAGE, budget - scanned),
      );
      if (rows.length === 0) break;
      if (chain.ok) {
        const page = verifyChain(
          rows.map((r) => ({ seq: r.seq, body: r.body, prevHash: r.prev_hash, hash: r.hash })),
          head,
          afterSeq + 1,
        );
        const checked = chain.checked + page.checked;
        chain = page.ok ? { ok: true, checked, headHash: page.headHash } : { ...page, checked };
      }
      for (const row of rows) {
        const entry = JSON.parse(row.body) as Entry;
        totals.granted += entry.change.granted;
        totals.held += entry.change.held;
        totals.consumed += entry.change.consumed;
        totals.expired += entry.change.expired;
        if (entry.balanceAfter !== balanceAfter + entry.change.granted - entry.change.held - entry.change.consumed - entry.change.expired) {
          brokenBalanceAfter.push(row.seq);
        }
        balanceAfter = entry.balanceAfter;
      }
      head = rows.at(-1)!.hash;
      afterSeq = rows.at(-1)!.seq;
      scanned += rows.length;
    }
    const reachedEnd = afterSeq === this.account.row()!.last_seq;
    if (chain.ok && reachedEnd && this.account.row()!.head_hash !== chain.headHash) {
      const reason = "the account's head hash is not the last entry's hash";
      chain = { ok: false, checked: chain.checked, headHash: chain.headHash, reason };
    }
    return { chain, reachedEnd, brokenBalanceAfter, end: { seq: afterSeq, hash: head, totals, balanceAfter } satisfies AuditCheckpoint };
  }

  private checkpoint(): AuditCheckpoint | undefined {
    const row = maybeOne<{
      seq: number;
      hash: string;
      granted: number;
      held: number;
      consumed: number;
      expired: number;
      balance_after: number;
    }>(this.sql, "SELECT * FROM audit_checkpoint WHERE id = 1");
    return (
      row && {
        seq: row.seq,
        hash: row.hash,
        totals: { granted: row.granted, held: row.held, consumed: row.consumed, expired: row.expired },
        balanceAfter: row.balance_after,
      }
    );
  }

  private saveCheckpoint(cp: AuditCheckpoint): void {
    run(
      this.sql,
      `INSERT OR REPLACE INTO audit_checkpoint (id, seq, hash, granted, held, consumed, expired, balance_after) VALUES (1, ?, ?, ?, ?, ?, ?, ?)`,
      cp.seq,
      cp.hash,
      cp.totals.granted,
      cp.totals.held,
      cp.totals.consumed,
      cp.totals.expired,
      cp.balanceAfter,
    );
  }
}
