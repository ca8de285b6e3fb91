// Gateway.settle batches one account's settles on the caller's side (src/gateway/settle-batches.ts):
// a settle that finds a call in flight waits for it, then goes with the others as one commitMany.
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { CommitManyResult, CommitOutcome } from "../../rpc/credits";
import type { CreditLedgerDO } from "../../src/credits/ledger-do";
import { COMMIT_BATCH_MAX } from "../../src/credits/schemas";
import { errorCodeOf } from "../../src/platform/errors";
import { type BatchedCommit, SettleBatches } from "../../src/gateway/settle-batches";
import { codeOf } from "../fixtures/errors";
import { rowsWrittenBy } from "../fixtures/rows-written";

/** A fake ledger: records each call's commits, answers each after `delayMs`, or as `answer` says. */
function fakeLedger(delayMs = 20, answer?: (commit: BatchedCommit) => CommitOutcome) {
  const calls: { accountId: string; holdIds: string[] }[] = [];
  const send = async (accountId: string, commits: BatchedCommit[]): Promise<CommitManyResult> => {
    calls.push({ accountId, holdIds: commits.map((commit) => commit.holdId) });
    await new Promise((resolve) => setTimeout(resolve, delayMs));
    const outcomes = commits.map(
      (commit): CommitOutcome =>
        answer?.(commit) ?? {
          answer: { ok: false, code: "HOLD_NOT_OPEN", status: "committed", balance: balanceOf(commit.amount ?? 0) },
        },
    );
    return { outcomes };
  };
  return { calls, send };
}

const balanceOf = (available: number) => ({ available, held: 0, granted: 0, consumed: 0, expired: 0, overdraftLimit: 0 });
const commit = (holdId: string, amount = 1): BatchedCommit => ({ holdId, amount, idempotencyKey: `k-${holdId}` });
const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("SettleBatches", () => {
  it("sends a lone settle at once, and the settles that arrive while it is in flight together, each with its own answer", async () => {
    const ledger = fakeLedger();
    const batches = new SettleBatches(ledger.send);
    const first = batches.commit("a", commit("h1", 1));
    await wait(1);
    const later = [2, 3, 4].map((n) => batches.commit("a", commit(`h${n}`, n)));
    const answers = await Promise.all([first, ...later]);
    expect(ledger.calls).toEqual([
      { accountId: "a", holdIds: ["h1"] },
      { accountId: "a", holdIds: ["h2", "h3", "h4"] },
    ]);
    expect(answers.map((answer) => answer.balance.available)).toEqual([1, 2, 3, 4]);
    expect(batches.pending).toBe(0);
  });

  it("keeps accounts apart, splits what waits into calls of COMMIT_BATCH_MAX, and throws each error to its own caller", async () => {
    const ledger = fakeLedger(10, (c) =>
      c.holdId === "bad" ? { error: { code: "NOT_FOUND", message: 'no hold "bad" in this account' } } : undefined!,
    );
    const batches = new SettleBatches(ledger.send);
    const head = batches.commit("a", commit("h0"));
    const other = batches.commit("b", commit("b0"));
    await wait(1);
    const many = Array.from({ length: COMMIT_BATCH_MAX + 5 }, (_, i) => batches.commit("a", commit(i === 3 ? "bad" : `h${i + 1}`)));
    const outcomes = await Promise.allSettled([head, other, ...many]);
    expect(ledger.calls.map((call) => [call.accountId, call.holdIds.length])).toEqual([
      ["a", 1],
      ["b", 1],
      ["a", COMMIT_BATCH_MAX],
      ["a", 5],
    ]);
    const rejected = outcomes.filter((outcome) => outcome.status === "rejected");
    expect(rejected).toHaveLength(1);
    expect(errorCodeOf((rejected[0] as PromiseRejectedResult).reason)).toBe("NOT_FOUND");
    expect(String((rejected[0] as PromiseRejectedResult).reason.message)).toBe('[NOT_FOUND] no hold "bad" in this account');
  });

  it("fails only the settles of a call that failed; those behind it go on", async () => {
    let calls = 0;
    const batches = new SettleBatches(async (_accountId, commits) => {
      calls += 1;
      await wait(10);
      if (calls === 1) throw new Error("network lost");
      return { outcomes: commits.map(() => ({ answer: { ok: false, code: "INSUFFICIENT_CREDITS", balance: balanceOf(0) } })) };
    });
    const first = batches.commit("a", commit("h1")).catch((error: unknown) => error);
    await wait(1);
    const second = batches.commit("a", commit("h2"));
    expect(await first).toMatchObject({ message: "network lost" });
    expect(await second).toMatchObject({ ok: false, code: "INSUFFICIENT_CREDITS" });
  });

  it("gives up on a call in flight past the wait limit: its settles fail INTERNAL, the ones behind it are sent", async () => {
    const stuck = new Promise<never>(() => {});
    let calls = 0;
    const batches = new SettleBatches(
      async (_accountId, commits) => {
        calls += 1;
        if (calls === 1) return stuck;
        return { outcomes: commits.map(() => ({ answer: { ok: false, code: "INSUFFICIENT_CREDITS", balance: balanceOf(0) } })) };
      },
      { waitLimitMs: 50 },
    );
    // Its code is read as soon as it is made: it fails while the test waits for the second.
    const first = codeOf(batches.commit("a", commit("h1")));
    await wait(1);
    const second = batches.commit("a", commit("h2"));
    expect(await second).toMatchObject({ ok: false, code: "INSUFFICIENT_CREDITS" });
    expect(await first).toBe("INTERNAL");
    expect(calls).toBe(2);
  });
});

describe("CreditLedgerDO.commitMany", () => {
  async function withHolds(count: number) {
    const accountId = `commit-many-${crypto.randomUUID().slice(0, 8)}`;
    const ledger = env.CREDIT_LEDGER.getByName(accountId);
    await ledger.createAccount({ accountId, name: "batch" });
    await ledger.grant({ accountId, amount: 100, reason: "g", idempotencyKey: "g" });
    const holdIds: string[] = [];
    for (let i = 0; i < count; i++) {
      const hold = await ledger.reserve({ accountId, amount: 10, ttlMs: 600_000, idempotencyKey: `h${i}` });
      if (!hold.ok) throw new Error("reserve failed");
      holdIds.push(hold.holdId);
    }
    return { accountId, ledger, holdIds };
  }

  it("answers each commit as commit would, in order, with an error value for the one that throws", async () => {
    const { accountId, ledger, holdIds } = await withHolds(3);
    const { outcomes } = await ledger.commitMany({
      accountId,
      commits: [
        { holdId: holdIds[0]!, amount: 4, idempotencyKey: "c0" },
        { holdId: "h_0123456789abcdef0123", amount: 4, idempotencyKey: "c-missing" },
        { holdId: holdIds[1]!, amount: 6, idempotencyKey: "c1" },
        { holdId: holdIds[2]!, amount: 5, idempotencyKey: "c0" },
      ],
    });
    expect(outcomes[0]).toMatchObject({ answer: { ok: true, entry: { kind: "commit", amount: 4 } } });
    expect(outcomes[1]).toEqual({ error: { code: "NOT_FOUND", message: 'no hold "h_0123456789abcdef0123" in this account' } });
    expect(outcomes[2]).toMatchObject({ answer: { ok: true, entry: { kind: "commit", amount: 6 } } });
    // A key already used (by the first commit) with other parameters: CONFLICT, for that commit only.
    expect(outcomes[3]).toMatchObject({ error: { code: "CONFLICT" } });
    expect(await ledger.balance({ accountId })).toMatchObject({ available: 80, held: 10, consumed: 10 });
    // Each commit replays alone, as it was answered in the batch.
    expect(await ledger.commit({ accountId, holdId: holdIds[1]!, amount: 6, idempotencyKey: "c1" })).toEqual(
      (outcomes[2] as { answer: unknown }).answer,
    );
  });

  it("runs the batch's commits in one transaction: the grant they all draw from is written once", async () => {
    const { accountId, ledger, holdIds } = await withHolds(5);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const { result, rows } = await runInDurableObject(ledger, (instance: CreditLedgerDO, state: DurableObjectState) =>
      rowsWrittenBy(state, () =>
        instance.commitMany({ accountId, commits: holdIds.map((holdId, i) => ({ holdId, amount: 2, idempotencyKey: `c${i}` })) }),
      ),
    );
    expect(result.outcomes.every((outcome) => "answer" in outcome && outcome.answer.ok)).toBe(true);
    expect(rows.get("grants")).toBe(1);
    expect(rows.get("entries")).toBe(5);
    expect(await ledger.balance({ accountId })).toMatchObject({ available: 90, held: 0, consumed: 10 });
  });

  it("refuses a malformed batch whole, before any commit runs", async () => {
    const { accountId, ledger, holdIds } = await withHolds(1);
    const good = { holdId: holdIds[0]!, amount: 4, idempotencyKey: "c0" };
    const malformed = [
      { accountId, commits: [] },
      { accountId, commits: Array.from({ length: COMMIT_BATCH_MAX + 1 }, () => good) },
      { accountId, commits: [good, { ...good, accountId }] },
      { accountId, commits: [good, { holdId: holdIds[0]!, idempotencyKey: "no-amount" }] },
      { commits: [good] },
    ];
    for (const input of malformed) expect(await codeOf(ledger.commitMany(input as never))).toBe("INVALID_ARGUMENT");
    expect(await ledger.balance({ accountId })).toMatchObject({ available: 90, held: 10, consumed: 0 });
  });
});

describe("Gateway.settle under load", () => {
  it("settles 16 concurrent requests of one account exactly, each with its own answer", async () => {
    const accountId = `gw-batch-${crypto.randomUUID().slice(0, 8)}`;
    await env.CREDITS.createAccount({ accountId, name: "gateway batch" });
    await env.CREDITS.grant({ accountId, amount: 1_000, reason: "welcome", idempotencyKey: "welcome" });
    const { key } = await env.CREDITS.createKey({ accountId, name: "k", scopes: ["api.*"] });
    const admitted = await Promise.all(
      Array.from({ length: 16 }, (_, i) =>
        env.GATEWAY.authorize({ apiKey: key, ip: `198.19.7.${i + 1}`, method: "POST", path: "/v1/batch", estimate: 30 }),
      ),
    );
    const settled = await Promise.all(
      admitted.map((result, i) =>
        env.GATEWAY.settle({ accountId, holdId: result.holdId!, actualCost: i + 1, status: 200, latencyMs: 5, idempotencyKey: `s${i}` }),
      ),
    );
    expect(settled.map((result) => [result.outcome, result.charged])).toEqual(admitted.map((_, i) => ["committed", i + 1]));
    expect(await env.CREDITS.balance({ accountId })).toMatchObject({ available: 1_000 - 136, held: 0, consumed: 136 });
    // A replayed settle answers as it did, charging nothing more.
    const again = await env.GATEWAY.settle({
      accountId,
      holdId: admitted[3]!.holdId!,
      actualCost: 4,
      status: 200,
      latencyMs: 5,
      idempotencyKey: "s3",
    });
    expect(again).toMatchObject({ outcome: "committed", charged: 4 });
    expect(await env.CREDITS.balance({ accountId })).toMatchObject({ consumed: 136 });
  });
});
