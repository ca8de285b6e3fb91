import { env } from "cloudflare:workers";
import { evictDurableObject } from "cloudflare:test";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ReferenceLedger } from "../fixtures/reference-ledger";

const T0 = Date.UTC(2030, 0, 15, 12, 0, 0);

type Op =
  | { kind: "grant"; amount: number; priority: number; expiresInMs: number | null }
  | { kind: "debit"; amount: number }
  | { kind: "reserve"; amount: number; ttlMs: number }
  | { kind: "commit"; hold: number; amount: number }
  | { kind: "void"; hold: number }
  | { kind: "refund"; spend: number; amount: number | null }
  | { kind: "jump"; ms: number; alarm: boolean }
  | { kind: "replay"; back: number }
  | { kind: "evict" };

// Small amounts and short times, so grants, holds, debt and expiries collide often.
const small = fc.integer({ min: 1, max: 12 });
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant("grant" as const),
    amount: small,
    priority: fc.integer({ min: 0, max: 2 }),
    expiresInMs: fc.option(fc.integer({ min: 1, max: 3 }).map((n) => n * 1_000)),
  }),
  fc.record({ kind: fc.constant("debit" as const), amount: small }),
  fc.record({ kind: fc.constant("reserve" as const), amount: small, ttlMs: fc.integer({ min: 1, max: 4 }).map((n) => n * 1_000) }),
  fc.record({ kind: fc.constant("commit" as const), hold: fc.nat(2), amount: fc.integer({ min: 0, max: 15 }) }),
  fc.record({ kind: fc.constant("void" as const), hold: fc.nat(2) }),
  fc.record({ kind: fc.constant("refund" as const), spend: fc.nat(2), amount: fc.option(small) }),
  fc.record({ kind: fc.constant("jump" as const), ms: fc.integer({ min: 0, max: 3_000 }), alarm: fc.boolean() }),
  fc.record({ kind: fc.constant("replay" as const), back: fc.nat(3) }),
  fc.constant({ kind: "evict" as const }),
);

let run = 0;

/** Mostly the latest ids: settling a hold or refunding a spend soon after it is where the interesting states are. */
function recent(ids: string[], back: number): string {
  return ids[Math.max(0, ids.length - 1 - back)]!;
}

describe("CreditLedgerDO against a reference ledger (model-based, fast-check)", () => {
  it("agrees with the reference on every outcome and balance, and every invariant holds, through random sequences with replays and evictions", async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(0, 4, 15), fc.array(op, { minLength: 1, maxLength: 40 }), async (overdraftLimit, ops) => {
        const accountId = `model-${++run}-${Math.random().toString(16).slice(2, 8)}`;
        const ledger = env.TEST_CREDIT_LEDGER.getByName(accountId);
        let now = T0;
        await ledger.setClock(now);
        await ledger.createAccount({ accountId, name: "Model", overdraftLimit });
        const model = new ReferenceLedger(overdraftLimit);
        const holds: string[] = [];
        const spends: string[] = [];
        /** Calls made so far with their first answers, for replays. */
        const calls: { again: () => Promise<unknown>; first: unknown }[] = [];
        let step = 0;
        for (const o of ops) {
          const key = `k${step++}`;
          let actual: { ok: boolean; code?: string; status?: string } | undefined;
          let expected: { ok: boolean; code?: string; status?: string } | undefined;
          switch (o.kind) {
            case "grant": {
              const expiresAt = o.expiresInMs === null ? undefined : now + o.expiresInMs;
              const input = { accountId, amount: o.amount, priority: o.priority, expiresAt, reason: "grant", idempotencyKey: key };
              const entry = await ledger.grant(input);
              calls.push({ again: () => ledger.grant(input), first: entry });
              model.grant(entry.grantId!, o.amount, o.priority, expiresAt ?? null, now);
              break;
            }
            case "debit": {
              const input = { accountId, amount: o.amount, reason: "debit", idempotencyKey: key };
              const result = await ledger.debit(input);
              calls.push({ again: () => ledger.debit(input), first: result });
              actual = result;
              expected = model.debit(() => (result.ok ? result.entry.entryId : "?"), o.amount, now);
              if (result.ok) spends.push(result.entry.entryId);
              break;
            }
            case "reserve": {
              const input = { accountId, amount: o.amount, ttlMs: o.ttlMs, idempotencyKey: key };
              const result = await ledger.reserve(input);
              calls.push({ again: () => ledger.reserve(input), first: result });
              actual = result;
              expected = model.reserve(() => (result.ok ? result.holdId : "?"), o.amount, o.ttlMs, now);
              if (result.ok) holds.push(result.holdId);
              break;
            }
            case "commit": {
              if (holds.length === 0) continue;
              const holdId = recent(holds, o.hold);
              const result = await ledger.commit({ accountId, holdId, amount: o.amount, idempotencyKey: key });
              actual = result;
              expected = model.commit(holdId, () => (result.ok ? result.entry.entryId : "?"), o.amount, now);
              if (result.ok) spends.push(result.entry.entryId);
              break;
            }
            case "void": {
              if (holds.length === 0) continue;
              const holdId = recent(holds, o.hold);
              actual = await ledger.void({ accountId, holdId, idempotencyKey: key });
              expected = model.void(holdId, now);
              break;
            }
            case "refund": {
              if (spends.length === 0) continue;
              const entryId = recent(spends, o.spend);
              actual = await ledger.refund({ accountId, entryId, amount: o.amount ?? undefined, reason: "refund", idempotencyKey: key });
              expected = model.refund(entryId, o.amount ?? undefined, now);
              break;
            }
            case "replay": {
              // A retry with the same key answers exactly as the first time and changes nothing.
              if (calls.length === 0) continue;
              const call = calls[Math.max(0, calls.length - 1 - o.back)]!;
              expect(await call.again()).toEqual(call.first);
              break;
            }
            case "evict": {
              await evictDurableObject(ledger);
              break;
            }
            case "jump": {
              now += o.ms;
              await ledger.setClock(now);
              if (o.alarm) {
                await ledger.runAlarmAt(now);
                model.settle(now);
              }
              break;
            }
          }
          const context = `step ${step} ${JSON.stringify(o)}`;
          if (expected !== undefined) {
            expect({ ok: actual!.ok, code: actual!.code, status: actual!.status }, context).toEqual({
              ok: expected.ok,
              code: expected.code,
              status: expected.status,
            });
          }
          const balance = await ledger.balance({ accountId });
          expect(balance, context).toEqual(model.balance());
          expect(balance.granted).toBe(balance.available + balance.held + balance.consumed + balance.expired);
          expect(balance.available).toBeGreaterThanOrEqual(-overdraftLimit);
          // Every other invariant (grants, holds, allocations, debt, the chain) after every step too.
          expect((await ledger.incrementalAudit(1_000))?.violations, context).toEqual([]);
        }
        const report = await ledger.audit({ accountId });
        expect(report.violations).toEqual([]);
        expect(report.chain.ok).toBe(true);
      }),
      { numRuns: 50 },
    );
  });
});
