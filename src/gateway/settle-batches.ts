import type { CommitInput, CommitManyResult, CommitOutcome, CommitResult } from "../../rpc/credits";
import { COMMIT_BATCH_MAX } from "../credits/schemas";
import type { Env } from "../platform/env";
import { fromErrorValue, ServiceError } from "../platform/errors";
import { sleep } from "../platform/durations";

/** A commit as a batch carries it: a `CommitInput` without the account, which the batch names once. */
export type BatchedCommit = Omit<CommitInput, "accountId">;

type Send = (accountId: string, commits: BatchedCommit[]) => Promise<CommitManyResult>;

/** How often a settle waiting behind another call looks again (on a timer of its own, see SettleBatches). */
export const SETTLE_POLL_MS = 2;
/**
 * A call in flight longer than this is given up on: the settles it carries fail with `INTERNAL`
 * (their outcome is unknown; a retry with the same idempotency key is safe), and the settles
 * behind it go on without it.
 */
export const SETTLE_WAIT_LIMIT_MS = 30_000;

interface Waiting {
  commit: BatchedCommit;
  /** Taken into a call (which may still be in flight). */
  sent?: boolean;
  /** Set once its call has answered: the ledger's answer or error for it, or the call's own failure. */
  outcome?: CommitOutcome | { failed: unknown };
}

interface AccountQueue {
  waiting: Waiting[];
  /** When the call now in flight to this account was sent, or null when none is. */
  sentAtMs: number | null;
}

/**
 * Group commit on the caller's side, for `Gateway.settle`: the settles of one account that
 * arrive while this isolate's previous call to that account is in flight wait for it, then go
 * together as one `commitMany` (at most COMMIT_BATCH_MAX). A settle that finds nothing in flight
 * is sent at once, so a lone settle waits for nothing; under load an account's settles cost a
 * fraction of an object request each, and each still answers only once its own commit is durable.
 *
 * Requests share only plain data here, as in the hit batcher: a settle waits for its answer on
 * timers of its own, and whichever waiting settle finds no call in flight sends the batch from
 * its own request's context, never from another request's (which may have ended).
 */
export class SettleBatches {
  readonly #send: Send;
  readonly #waitLimitMs: number;
  readonly #queues = new Map<string, AccountQueue>();

  constructor(send: Send, options: { waitLimitMs?: number } = {}) {
    this.#send = send;
    this.#waitLimitMs = options.waitLimitMs ?? SETTLE_WAIT_LIMIT_MS;
  }

  /** Commits `commit` in `accountId`'s ledger, alone or in a batch; answers or throws as `commit` would. */
  async commit(accountId: string, commit: BatchedCommit): Promise<CommitResult> {
    let queue = this.#queues.get(accountId);
    if (queue === undefined) this.#queues.set(accountId, (queue = { waiting: [], sentAtMs: null }));
    const mine: Waiting = { commit };
    queue.waiting.push(mine);
    while (mine.outcome === undefined) {
      if (queue.sentAtMs === null || Date.now() - queue.sentAtMs > this.#waitLimitMs) {
        // The sender waits for its call like the others, no longer than the limit.
        if (mine.sent !== true) await Promise.race([this.#sendWaiting(accountId, queue), sleep(this.#waitLimitMs + 1)]);
        else
          mine.outcome = {
            failed: new ServiceError("INTERNAL", "the ledger did not answer this settle in time; retry it with the same idempotency key"),
          };
      } else await sleep(SETTLE_POLL_MS);
    }
    const { outcome } = mine;
    if ("failed" in outcome) throw outcome.failed;
    if ("error" in outcome) throw fromErrorValue(outcome.error);
    return outcome.answer;
  }

  /** Settles waiting or in flight, over all accounts (for tests and diagnostics). */
  get pending(): number {
    let count = 0;
    for (const queue of this.#queues.values()) count += queue.waiting.length;
    return count;
  }

  /** Sends what waits for `accountId` (up to COMMIT_BATCH_MAX) as one call, and hands each settle its outcome. */
  async #sendWaiting(accountId: string, queue: AccountQueue): Promise<void> {
    const batch = queue.waiting.splice(0, COMMIT_BATCH_MAX);
    for (const waiting of batch) waiting.sent = true;
    const sentAtMs = Date.now();
    queue.sentAtMs = sentAtMs;
    try {
      const { outcomes } = await this.#send(
        accountId,
        batch.map((waiting) => waiting.commit),
      );
      batch.forEach((waiting, i) => {
        waiting.outcome = outcomes[i] ?? { failed: new ServiceError("INTERNAL", "the ledger answered fewer commits than it was sent") };
      });
    } catch (error) {
      for (const waiting of batch) waiting.outcome = { failed: error };
    } finally {
      // A call given up on (SETTLE_WAIT_LIMIT_MS) may end after a later one began: it leaves that one's mark.
      if (queue.sentAtMs === sentAtMs) queue.sentAtMs = null;
      if (queue.sentAtMs === null && queue.waiting.length === 0 && this.#queues.get(accountId) === queue) this.#queues.delete(accountId);
    }
  }
}

/** One batcher per isolate and ledger namespace (module state: it outlives each request). */
const batchers = new WeakMap<object, SettleBatches>();

/** The isolate's settle batcher for `env`'s ledgers. */
export function settleBatchesFor(env: Env): SettleBatches {
  const namespace = env.CREDIT_LEDGER;
  let batcher = batchers.get(namespace);
  if (batcher === undefined) {
    batcher = new SettleBatches((accountId, commits) => namespace.getByName(accountId).commitMany({ accountId, commits }));
    batchers.set(namespace, batcher);
  }
  return batcher;
}
