import { type IdempotencyStore, PRUNE_BATCH, type Transaction } from "../platform/idempotency";
import { maybeOne, run } from "../platform/sql";
import type { TaskHandlers, TaskScheduler } from "../platform/task-scheduler";
import type { LedgerAudit } from "./audit";
import type { Holds } from "./holds";
import type { LedgerAccount } from "./ledger-account";

/** How often the self-audit re-derives the balance and checks every invariant. */
export const AUDIT_INTERVAL_MS = 6 * 3_600_000;
/** Entries one alarm-driven audit reads at most; a longer backlog continues in the next run. */
export const AUDIT_BATCH_ENTRIES = 20_000;
const AUDIT_BACKLOG_DELAY_MS = 60_000;
/** Pruning waits this long past the first expiry, so one alarm prunes many keys. */
const PRUNE_SLACK_MS = 3_600_000;

type Keep = "replace" | "earliest";

/**
 * The ledger's timed work: booking due expiries (`settle-due`), pruning expired idempotency
 * records, rule states and old spend counters (`prune`), and the periodic self-audit (`audit`),
 * with the scheduling that keeps each task due when its work is.
 */
export class LedgerUpkeep {
  constructor(
    private readonly sql: SqlStorage,
    private readonly scheduler: TaskScheduler,
    private readonly transaction: Transaction,
    private readonly account: LedgerAccount,
    private readonly holds: Holds,
    private readonly audit: LedgerAudit,
    private readonly idempotency: IdempotencyStore,
    private readonly idempotencyWindowMs: () => number,
  ) {}

  /** The object's task handlers (its spec's `tasks`). */
  tasks(): TaskHandlers {
    return {
      "settle-due": async (_payload, nowMs) => {
        this.transaction(() => this.holds.settleDue(nowMs));
        await this.scheduleSettle("replace", this.holds.earliestOpenExpiry());
      },
      prune: async (_payload, nowMs) => {
        // In batches of PRUNE_BATCH of each kind, so a backlog never holds the object for long;
        // a full batch comes back at once.
        const deleted =
          this.idempotency.prune(nowMs) +
          run(
            this.sql,
            "DELETE FROM key_rule_states WHERE (family_id, rule_name) IN (SELECT family_id, rule_name FROM key_rule_states WHERE expires_at_ms <= ? LIMIT ?)",
            nowMs,
            PRUNE_BATCH,
          );
        if (deleted >= PRUNE_BATCH) await this.scheduler.schedule("prune", nowMs, null, "prune", "replace");
        else await this.schedulePrune("replace", this.idempotency.earliestExpiry());
      },
      audit: async (_payload, nowMs) => {
        if (this.account.row() === undefined) return;
        const report = this.audit.run(nowMs, "incremental", AUDIT_BATCH_ENTRIES);
        // An unfinished backlog continues soon; otherwise the next audit is a full interval away.
        const delayMs = report === undefined ? AUDIT_BACKLOG_DELAY_MS : AUDIT_INTERVAL_MS;
        await this.scheduler.schedule("audit", nowMs + delayMs, null, "audit", "replace");
      },
    };
  }

  /** The first audit of a new account, an interval after its creation. */
  async scheduleFirstAudit(nowMs: number): Promise<void> {
    await this.scheduler.schedule("audit", nowMs + AUDIT_INTERVAL_MS, null, "audit", "earliest");
  }

  /**
   * Arms the alarm for whatever the last write made due: the holds it placed (their expiries,
   * from `Holds.takePlacedExpiry`, not a read of the table), grants that expire, and an
   * idempotency record written now, which expires a window from now. The older records are
   * covered by the prune task already scheduled (each write scheduled it, and each prune run
   * reschedules it for the earliest left), so the write path reads no expiry (the table has no
   * index over it). Only with no prune task at all (none scheduled yet, or records that came
   * without one) is the table read for its earliest. A task already due no later is left alone
   * (`earliest`), which the scheduler knows without a query once it has written or read the
   * task, so a busy account rewrites neither its task rows nor its alarm.
   */
  async afterWrite(nowMs: number): Promise<void> {
    await this.scheduleSettle("earliest", this.holds.takePlacedExpiry() ?? null);
    const written = nowMs + this.idempotencyWindowMs();
    const stored = this.scheduler.exists("prune") ? null : this.idempotency.earliestExpiry();
    await this.schedulePrune("earliest", stored === null ? written : Math.min(stored, written));
  }

  /**
   * Schedules `settle-due` for the first grant expiry or hold expiry. `holdsDue` is the first open
   * hold's expiry when the caller knows it (the write path: what it placed; an open hold placed
   * earlier is covered by the task as it was); the alarm reads it.
   */
  private async scheduleSettle(keep: Keep, holdsDue: number | null): Promise<void> {
    const grantsDue = maybeOne<{ next: number | null }>(
      this.sql,
      "SELECT MIN(expires_at_ms) AS next FROM grants WHERE expiry_booked = 0 AND expires_at_ms IS NOT NULL",
    )?.next;
    const due = [grantsDue, holdsDue].filter((ms): ms is number => typeof ms === "number");
    if (due.length > 0) await this.scheduler.schedule("settle-due", Math.min(...due), null, "settle-due", keep);
  }

  private async schedulePrune(keep: Keep, idempotency: number | null): Promise<void> {
    const ruleStates = maybeOne<{ next: number | null }>(this.sql, "SELECT MIN(expires_at_ms) AS next FROM key_rule_states")?.next ?? null;
    const next = ruleStates === null ? idempotency : idempotency === null ? ruleStates : Math.min(ruleStates, idempotency);
    if (next !== null) await this.scheduler.schedule("prune", next + PRUNE_SLACK_MS, null, "prune", keep);
  }
}
