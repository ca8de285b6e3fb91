import { env } from "cloudflare:workers";
import { evictDurableObject, runDurableObjectAlarm } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { Decision, Rule } from "../rpc/rate-limits";
import { MINUTE_MS } from "../src/platform/buckets";
import { ReferenceLedger } from "./fixtures/reference-ledger";
import { mulberry32 as prng } from "./fixtures/prng";
import type { AlarmRun, RunFault, TaskFault, TaskOutcome } from "./fixtures/faults";
import { MAX_ATTEMPTS } from "../src/platform/backoff";
import type { Task } from "../src/platform/task-scheduler";
import { AGGREGATOR_NAME, shardName } from "../src/platform/names";

/**
 * A mixed workload with faults injected between calls: random evictions, alarms fired early
 * and twice, replay records pruned after a configured 1 h window (RETENTION), alarm work that fails (test/fixtures/faults.ts: a task throwing before its work,
 * after it, or inside a rolled-back half-done write; the whole run throwing before or after),
 * retried calls (same idempotency key), concurrent bursts. A reference model of the accepted
 * operations predicts every decision and the final counts exactly; after the scheduler's
 * retries (with backoff) every task has completed and none was parked.
 *
 * The same for the credit ledger (against test/fixtures/reference-ledger.ts) and for path
 * statistics (hits counted per path and client). Each run prints its operations, evictions,
 * alarms, injected failures and retries. Replay a failure with CHAOS_SEED=<seed printed below>.
 */
const SEED = env.CHAOS_SEED ? Number(env.CHAOS_SEED) : Math.floor(Math.random() * 2 ** 31);
const YEAR = 366 * 24 * 3_600_000;
const SHARDS = 16; // PATH_SHARDS in vitest.config.ts

interface Subject {
  name: string;
  rules: Rule[];
  used: Map<string, number>;
  decisions: Map<string, Decision>;
  /** Keys whose replay record the alarm pruned: a retry is a new call. */
  pruned: string[];
  leaseLimit: number;
  /** Leases the model holds: id -> expiry. */
  leases: Map<string, number>;
}

/** What every test subclass offers for fault injection (test/fixtures/faults.ts). */
interface Faultable {
  runAlarmAt(nowMs: number): Promise<AlarmRun>;
  failNextTasks(count: number, fault: TaskFault, kinds?: string[] | null): Promise<void>;
  failNextRun(fault: RunFault): Promise<void>;
  clearFaults(): Promise<void>;
  faultLog(): Promise<{ tasks: TaskOutcome[]; runsFailed: number }>;
  tasks(): Promise<Task[]>;
}

/**
 * Maybe plans a fault in the next alarm work of `stub`. Never when a task has failed close to
 * the parking threshold: a plan strikes at most twice, so no task reaches MAX_ATTEMPTS
 * (parking and retryParked are proven in test/platform/scheduler.test.ts). Returns whether it planned one.
 */
async function maybeInjectFault(stub: Faultable, random: () => number): Promise<boolean> {
  if (random() < 0.4) return false;
  const attempts = Math.max(0, ...(await stub.tasks()).map((task) => task.attempts));
  if (attempts > MAX_ATTEMPTS - 4) return false;
  const roll = random();
  if (roll < 0.2) await stub.failNextRun(roll < 0.1 ? "before" : "after");
  else await stub.failNextTasks(1 + Math.floor(random() * 2), (["before", "partial", "after"] as const)[Math.floor(random() * 3)]!);
  return true;
}

/** Runs the alarm's work at `atMs`; an injected run fault is the only failure allowed. */
async function runAlarm(stub: Faultable, atMs: number): Promise<void> {
  const run = await stub.runAlarmAt(atMs);
  if (run.thrown !== undefined) expect(run.thrown).toMatch(/^injected fault (before|after) the alarm's work$/);
}

/**
 * After the faults stop: runs the alarm well past the longest backoff, then checks that every
 * task completed (none failing, none parked), that no real failure happened, and counts the
 * injected ones into `counts`.
 */
async function settleFaults(stub: Faultable, atMs: number, counts: object): Promise<void> {
  await stub.clearFaults();
  expect((await stub.runAlarmAt(atMs)).thrown).toBeUndefined();
  const tasks = await stub.tasks();
  expect(
    tasks.filter((task) => task.attempts > 0 || task.parkedAtMs !== null),
    "a task still failing or parked",
  ).toEqual([]);
  const log = await stub.faultLog();
  expect(
    log.tasks.filter((t) => t.outcome === "error"),
    "a real (not injected) task failure",
  ).toEqual([]);
  const tally = counts as Record<string, number>;
  for (const { outcome } of log.tasks)
    if (outcome !== "ok") tally[`task failures ${outcome}`] = (tally[`task failures ${outcome}`] ?? 0) + 1;
  tally["run failures"] = (tally["run failures"] ?? 0) + log.runsFailed;
}

/** Past the longest backoff a task can reach here (MAX_ATTEMPTS - 2 failures). */
const AFTER_BACKOFF_MS = 10 * 60_000;

describe(`chaos (seed ${SEED})`, () => {
  it("keeps every rate-limit decision, lease and count equal to the reference model through evictions, alarms and alarm failures", async () => {
    console.log(`chaos seed: ${SEED} (replay with CHAOS_SEED=${SEED})`);
    const random = prng(SEED);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
    const subjects: Subject[] = Array.from({ length: 3 }, (_, i) => ({
      name: `chaos:${SEED}:${i}`,
      rules: [
        { name: "fixed", algorithm: "fixed_window", limit: 20 + Math.floor(random() * 40), periodMs: YEAR },
        { name: "sliding", algorithm: "sliding_window", limit: 20 + Math.floor(random() * 40), periodMs: YEAR },
      ],
      used: new Map([
        ["fixed", 0],
        ["sliding", 0],
      ]),
      decisions: new Map(),
      pruned: [],
      leaseLimit: 2 + Math.floor(random() * 3),
      leases: new Map(),
    }));
    const limiter = (subject: Subject) => env.TEST_RATE_LIMITER.getByName(subject.name);
    for (const subject of subjects) {
      await limiter(subject).failNextTasks(0, "before"); // starts the fault log
      // A 1 h replay window (RETENTION): replays are pruned during the run, not after a day.
      await limiter(subject).setRetentionVar('{ "limiterIdempotency": "1h" }');
    }
    // The limiter's alarm runs on a clock of its own, ahead of real time: leases and replay
    // records live 1 h and the alarm runs 2 h ahead, so a run that does its work frees every
    // lease held then and prunes every replay record written before it.
    let alarmClock = Date.now() + 2 * 3_600_000;

    /** The model's verdict, applied to the model when admitted. */
    const model = (subject: Subject, cost: number) => {
      const admits = subject.rules.every((rule) => subject.used.get(rule.name)! + cost <= rule.limit);
      if (admits) for (const rule of subject.rules) subject.used.set(rule.name, subject.used.get(rule.name)! + cost);
      const remaining = Math.min(...subject.rules.map((rule) => rule.limit - subject.used.get(rule.name)!));
      return { admits, remaining };
    };

    let opCounter = 0;
    const counts = { operations: 0, evictions: 0, alarms: 0, retries: 0, "retries past the window": 0, "fault plans": 0 };
    for (let step = 0; step < 500; step++) {
      const subject = pick(subjects);
      const stub = limiter(subject);
      const roll = random();
      if (roll < 0.08) {
        await evictDurableObject(stub).catch(() => {}); // not running: nothing to evict
        counts.evictions++;
      } else if (roll < 0.12) {
        await runDurableObjectAlarm(stub);
        await runDurableObjectAlarm(stub);
        counts.alarms += 2;
      } else if (roll < 0.2) {
        // The lease and replay alarm, maybe failing; the fault log says whether its work got done.
        if (await maybeInjectFault(stub, random)) counts["fault plans"]++;
        const seen = (await stub.faultLog()).tasks.length;
        const times = pick([1, 2]);
        for (let i = 0; i < times; i++) {
          alarmClock = Math.max(alarmClock, Date.now() + 2 * 3_600_000) + pick([0, 500, 1_000, 2_500]);
          await runAlarm(stub, alarmClock);
        }
        counts.alarms += times;
        const ran = (await stub.faultLog()).tasks.slice(seen);
        const done = (kind: string) => ran.some((t) => t.kind === kind && (t.outcome === "ok" || t.outcome === "after"));
        if (done("expire-leases")) subject.leases.clear();
        if (done("prune-replays")) {
          subject.pruned.push(...subject.decisions.keys());
          subject.decisions.clear();
        }
        expect((await stub.storedLeases()).map((l) => l.lease_id).sort(), `leases after alarm, step ${step}`).toEqual(
          [...subject.leases.keys()].sort(),
        );
        expect(await stub.storedReplays(), `replay records after alarm, step ${step}`).toBe(subject.decisions.size);
      } else if (roll < 0.26) {
        counts.operations++;
        const result = await stub.acquire({ subject: subject.name, limit: subject.leaseLimit, ttlMs: 3_600_000 });
        const granted = subject.leases.size < subject.leaseLimit;
        expect({ granted: result.granted, active: result.active }, `acquire, step ${step}`).toEqual({
          granted,
          active: subject.leases.size + (granted ? 1 : 0),
        });
        if (result.granted) subject.leases.set(result.leaseId!, result.expiresAt!);
      } else if (roll < 0.29 && subject.leases.size > 0) {
        counts.operations++;
        const leaseId = pick([...subject.leases.keys()]);
        subject.leases.delete(leaseId);
        expect(await stub.release({ subject: subject.name, leaseId })).toEqual({ released: true, active: subject.leases.size });
      } else if (roll < 0.35 && subject.pruned.length > 0 && random() < 0.3) {
        // A retry after its replay record was pruned (past the 1 h window): a new call, charged.
        counts["retries past the window"]++;
        const key = subject.pruned.splice(Math.floor(random() * subject.pruned.length), 1)[0]!;
        const cost = Number(key.split(":").at(-1));
        const decision = await stub.check({ subject: subject.name, rules: subject.rules, cost, idempotencyKey: key });
        const expected = model(subject, cost);
        expect({ allowed: decision.allowed, remaining: decision.remaining }, `retry after the window, step ${step}`).toEqual({
          allowed: expected.admits,
          remaining: expected.remaining,
        });
        subject.decisions.set(key, decision);
      } else if (roll < 0.35 && subject.decisions.size > 0) {
        counts.retries++;
        // A retry of an earlier call within the window: the first decision comes back, nothing is charged.
        const [key, first] = pick([...subject.decisions.entries()]);
        const cost = Number(key.split(":").at(-1));
        expect(await stub.check({ subject: subject.name, rules: subject.rules, cost, idempotencyKey: key })).toEqual(first);
      } else if (roll < 0.42) {
        // A concurrent burst: exactly as many admitted as the model has room for, in some order.
        const costs = Array.from({ length: 5 + Math.floor(random() * 20) }, () => 1);
        counts.operations += costs.length;
        const results = await Promise.all(costs.map(() => stub.check({ subject: subject.name, rules: subject.rules })));
        const admitted = results.filter((d) => d.allowed).length;
        let expected = 0;
        for (const cost of costs) if (model(subject, cost).admits) expected++;
        expect(admitted).toBe(expected);
      } else {
        const cost = pick([0, 1, 1, 1, 2, 3, 7]);
        const key = `op-${opCounter++}:${cost}`;
        counts.operations++;
        const decision = await stub.check({ subject: subject.name, rules: subject.rules, cost, idempotencyKey: key });
        if (cost === 0) {
          const remaining = Math.min(...subject.rules.map((rule) => rule.limit - subject.used.get(rule.name)!));
          expect(decision.remaining).toBe(remaining);
          continue;
        }
        const expected = model(subject, cost);
        expect({ allowed: decision.allowed, remaining: decision.remaining }).toEqual({
          allowed: expected.admits,
          remaining: expected.remaining,
        });
        subject.decisions.set(key, decision);
      }
    }

    for (const subject of subjects) {
      const stub = limiter(subject);
      await evictDurableObject(stub).catch(() => {});
      const final = await stub.peek({ subject: subject.name, rules: subject.rules });
      expect(final.rules.map((rule) => rule.limit - rule.remaining)).toEqual(subject.rules.map((rule) => subject.used.get(rule.name)));
      for (const [key, first] of subject.decisions) {
        expect(
          await stub.check({ subject: subject.name, rules: subject.rules, cost: Number(key.split(":").at(-1)), idempotencyKey: key }),
        ).toEqual(first);
      }
      // After the retries every lease and replay record has expired and been deleted, and no task is left failing.
      await settleFaults(stub, alarmClock + AFTER_BACKOFF_MS, counts);
      expect(await stub.storedLeases()).toEqual([]);
      expect(await stub.storedReplays()).toBe(0);
    }
    report("rate limits", counts);
  });
});

/** Counts reported at the end of each run, so the closing note can quote them. */
function report(name: string, counts: Record<string, number>): void {
  console.log(
    `chaos ${name} (seed ${SEED}): ${Object.entries(counts)
      .map(([k, n]) => `${n} ${k}`)
      .join(", ")}`,
  );
}

describe(`chaos: credit ledger (seed ${SEED})`, () => {
  it("keeps every outcome, balance and hold equal to the reference ledger through evictions, early, doubled and failing alarms, and retries", async () => {
    const random = prng(SEED ^ 0x1ed6e7);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
    const amount = () => 1 + Math.floor(random() * 12);
    const counts = { operations: 0, evictions: 0, alarms: 0, retries: 0, "fault plans": 0 };
    let now = Date.UTC(2031, 2, 1, 9, 0, 0);
    const accounts = await Promise.all(
      [0, 5].map(async (overdraftLimit, i) => {
        const accountId = `chaos-${SEED}-${i}`;
        const stub = env.TEST_CREDIT_LEDGER.getByName(accountId);
        await stub.setClock(now);
        await stub.failNextTasks(0, "before"); // starts the fault log
        await stub.createAccount({ accountId, name: "Chaos", overdraftLimit });
        return {
          accountId,
          stub,
          model: new ReferenceLedger(overdraftLimit),
          holds: [] as string[],
          calls: [] as { again: () => Promise<unknown>; first: unknown }[],
        };
      }),
    );

    for (let step = 0; step < 300; step++) {
      const account = pick(accounts);
      const { accountId, stub, model } = account;
      const key = `chaos-${step}`;
      const roll = random();
      const context = `step ${step} (seed ${SEED})`;
      let outcome:
        | { actual: { ok: boolean; code?: string; status?: string }; expected: { ok: boolean; code?: string; status?: string } }
        | undefined;
      if (roll < 0.1) {
        await evictDurableObject(stub);
        counts.evictions++;
      } else if (roll < 0.2) {
        // Time passes; the alarm runs early (before anything is due), on time, or twice, and may fail.
        now += pick([0, 500, 1_000, 2_500]);
        for (const a of accounts) await a.stub.setClock(now);
        if (await maybeInjectFault(stub, random)) counts["fault plans"]++;
        const seen = (await stub.faultLog()).tasks.length;
        const times = pick([1, 2]);
        for (let i = 0; i < times; i++) await runAlarm(stub, now);
        counts.alarms += times;
        // Reads do not settle (writes and the alarm do): the model settles only if the alarm's settle-due did its work.
        if ((await stub.faultLog()).tasks.slice(seen).some((t) => t.kind === "settle-due" && (t.outcome === "ok" || t.outcome === "after")))
          model.settle(now);
      } else if (roll < 0.28 && account.calls.length > 0) {
        const call = pick(account.calls);
        expect(await call.again(), context).toEqual(call.first);
        counts.retries++;
      } else if (roll < 0.4) {
        const expiresAt = random() < 0.5 ? now + 1_000 * (1 + Math.floor(random() * 3)) : undefined;
        const input = {
          accountId,
          amount: amount(),
          priority: Math.floor(random() * 2),
          expiresAt,
          reason: "chaos grant",
          idempotencyKey: key,
        };
        const entry = await stub.grant(input);
        account.calls.push({ again: () => stub.grant(input), first: entry });
        model.grant(entry.grantId!, input.amount, input.priority, expiresAt ?? null, now);
        counts.operations++;
      } else if (roll < 0.6) {
        const input = { accountId, amount: amount(), reason: "chaos debit", idempotencyKey: key };
        const result = await stub.debit(input);
        account.calls.push({ again: () => stub.debit(input), first: result });
        outcome = { actual: result, expected: model.debit(() => (result.ok ? result.entry.entryId : "?"), input.amount, now) };
        counts.operations++;
      } else if (roll < 0.75) {
        const input = { accountId, amount: amount(), ttlMs: 1_000 * (1 + Math.floor(random() * 4)), idempotencyKey: key };
        const result = await stub.reserve(input);
        account.calls.push({ again: () => stub.reserve(input), first: result });
        outcome = { actual: result, expected: model.reserve(() => (result.ok ? result.holdId : "?"), input.amount, input.ttlMs, now) };
        if (result.ok) account.holds.push(result.holdId);
        counts.operations++;
      } else if (account.holds.length > 0) {
        const holdId = pick(account.holds);
        if (roll < 0.9) {
          const input = { accountId, holdId, amount: Math.floor(random() * 14), idempotencyKey: key };
          const result = await stub.commit(input);
          account.calls.push({ again: () => stub.commit(input), first: result });
          outcome = { actual: result, expected: model.commit(holdId, () => (result.ok ? result.entry.entryId : "?"), input.amount, now) };
        } else {
          const input = { accountId, holdId, idempotencyKey: key };
          const result = await stub.void(input);
          account.calls.push({ again: () => stub.void(input), first: result });
          outcome = { actual: result, expected: model.void(holdId, now) };
        }
        counts.operations++;
      }
      if (outcome !== undefined) {
        const { actual, expected } = outcome;
        expect({ ok: actual.ok, code: actual.code, status: actual.status }, context).toEqual({
          ok: expected.ok,
          code: expected.code,
          status: expected.status,
        });
      }
      expect(await stub.balance({ accountId }), context).toEqual(model.balance());
    }

    // The faults stop; past every backoff the alarm retries what failed.
    now += AFTER_BACKOFF_MS;
    for (const { stub, model } of accounts) {
      await stub.setClock(now);
      await settleFaults(stub, now, counts);
      model.settle(now);
    }
    for (const { accountId, stub, model, holds, calls } of accounts) {
      await evictDurableObject(stub);
      expect(await stub.balance({ accountId })).toEqual(model.balance());
      for (const call of calls) expect(await call.again()).toEqual(call.first);
      for (const holdId of holds) expect((await stub.hold({ accountId, holdId })).status).toBe(model.holds.get(holdId)!.status);
      const audit = await stub.audit({ accountId });
      expect(audit.violations).toEqual([]);
      expect(audit.chain.ok).toBe(true);
    }
    report("ledger", counts);
  });
});

describe(`chaos: path statistics (seed ${SEED})`, () => {
  it("counts every recorded hit exactly once through evictions and collector and aggregator alarms run early, twice and failing", async () => {
    const random = prng(SEED ^ 0x9a7b5);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
    const counts = { operations: 0, evictions: 0, alarms: 0, "fault plans": 0 };
    const start = Date.now();
    const base = `/chaos${SEED.toString(36)}`;
    const paths = ["alpha", "beta", "gamma"].map((name) => `${base}/${name}`);
    const ips = [`198.51.100.${SEED % 250}`, `203.0.113.${(SEED >>> 8) % 250}`, `2001:db8:${(SEED & 0xffff).toString(16)}::7`];
    const expected = new Map<string, { requests: number; errors: number }>();
    const perIp = new Map<string, number>();
    const collectors = Array.from({ length: SHARDS }, (_, shard) => env.PATH_COLLECTOR.getByName(shardName(shard)));
    const aggregator = env.AGGREGATOR.getByName(AGGREGATOR_NAME);

    for (let step = 0; step < 200; step++) {
      const roll = random();
      if (roll < 0.1) {
        await evictDurableObject(random() < 0.3 ? aggregator : pick(collectors)).catch(() => {}); // not running: nothing to evict
        counts.evictions++;
      } else if (roll < 0.2) {
        // Alarms early (the current minute is still open), on time, and twice.
        const at = Date.now() + pick([0, MINUTE_MS + 3_000]);
        const target = random() < 0.5 ? aggregator : pick(collectors);
        if (await maybeInjectFault(target, random)) counts["fault plans"]++;
        for (let i = 0; i < 2; i++) await runAlarm(target, at);
        counts.alarms += 2;
      } else {
        const batch = Array.from({ length: 1 + Math.floor(random() * 4) }, () => {
          const status = pick([200, 200, 404, 500, 503]);
          return {
            ip: pick(ips),
            method: pick(["GET", "POST"]),
            path: pick(paths),
            status,
            latencyMs: Math.floor(random() * 300),
            at: Date.now() - Math.floor(random() * 20 * MINUTE_MS),
          };
        });
        if (batch.length === 1) await env.PATHS.record(batch[0]!);
        else expect(await env.PATHS.recordMany({ hits: batch })).toEqual({ accepted: batch.length });
        for (const hit of batch) {
          const key = `${hit.method} ${hit.path}`;
          const seen = expected.get(key) ?? { requests: 0, errors: 0 };
          expected.set(key, { requests: seen.requests + 1, errors: seen.errors + (hit.status >= 500 ? 1 : 0) });
          perIp.set(hit.ip, (perIp.get(hit.ip) ?? 0) + 1);
        }
        counts.operations += batch.length;
      }
    }

    // Everything closed and the faults stopped: every collector flushes, twice, then the
    // aggregator compacts, twice; then each runs again past every backoff, for the retries.
    const later = Date.now() + 2 * MINUTE_MS;
    for (const target of [...collectors, aggregator]) await target.clearFaults();
    for (let round = 0; round < 2; round++) for (const collector of collectors) await collector.runAlarmAt(later);
    for (let round = 0; round < 2; round++) await aggregator.runAlarmAt(later + 5_000);
    for (const collector of collectors) await settleFaults(collector, later + AFTER_BACKOFF_MS, counts);
    await settleFaults(aggregator, later + AFTER_BACKOFF_MS + 5_000, counts);
    const range = { from: start - 30 * MINUTE_MS, to: later };
    for (const path of paths) {
      const detail = await env.PATHS.pathDetail({ range, path });
      for (const method of ["GET", "POST"]) {
        const want = expected.get(`${method} ${path}`) ?? { requests: 0, errors: 0 };
        const got = detail.methods.find((m) => m.method === method);
        expect({ requests: got?.requests ?? 0, errors: got?.errors ?? 0 }, `${method} ${path}`).toEqual(want);
      }
    }
    for (const [ip, total] of perIp) {
      const stats = await env.PATHS.clientStats({ ip, range: "24h" });
      expect(
        stats.paths.filter((p) => p.path.startsWith(base)).reduce((sum, p) => sum + p.requests, 0),
        ip,
      ).toBe(total);
    }
    report("paths", counts);
  });
});
