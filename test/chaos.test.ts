import { env } from "cloudflare:workers";
import { evictDurableObject, runDurableObjectAlarm } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { Decision, Rule } from "../rpc/rate-limits";

/**
 * A mixed workload with faults injected between calls: random evictions, alarms fired early
 * and twice, retried calls (same idempotency key), concurrent bursts. A reference model of
 * the accepted operations predicts every decision and the final counts exactly.
 *
 * Replay a failure with CHAOS_SEED=<seed printed below>.
 */
const SEED = env.CHAOS_SEED ? Number(env.CHAOS_SEED) : Math.floor(Math.random() * 2 ** 31);
const YEAR = 366 * 24 * 3_600_000;

function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

interface Subject {
  name: string;
  rules: Rule[];
  used: Map<string, number>;
  decisions: Map<string, Decision>;
}

describe(`chaos (seed ${SEED})`, () => {
  it("keeps every rate-limit decision and count equal to the reference model", async () => {
    console.log(`chaos seed: ${SEED} (replay with CHAOS_SEED=${SEED})`);
    const random = prng(SEED);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
    const subjects: Subject[] = Array.from({ length: 3 }, (_, i) => ({
      name: `chaos:${SEED}:${i}`,
      rules: [
        { name: "fixed", algorithm: "fixed_window", limit: 20 + Math.floor(random() * 40), periodMs: YEAR },
        { name: "sliding", algorithm: "sliding_window", limit: 20 + Math.floor(random() * 40), periodMs: YEAR },
      ],
      used: new Map([["fixed", 0], ["sliding", 0]]),
      decisions: new Map(),
    }));

    /** The model's verdict, applied to the model when admitted. */
    const model = (subject: Subject, cost: number) => {
      const admits = subject.rules.every((rule) => subject.used.get(rule.name)! + cost <= rule.limit);
      if (admits) for (const rule of subject.rules) subject.used.set(rule.name, subject.used.get(rule.name)! + cost);
      const remaining = Math.min(...subject.rules.map((rule) => rule.limit - subject.used.get(rule.name)!));
      return { admits, remaining };
    };

    let opCounter = 0;
    for (let step = 0; step < 400; step++) {
      const subject = pick(subjects);
      const stub = env.RATE_LIMITER.getByName(subject.name);
      const roll = random();
      if (roll < 0.08) {
        await evictDurableObject(stub).catch(() => {}); // not running: nothing to evict
      } else if (roll < 0.14) {
        await runDurableObjectAlarm(stub);
        await runDurableObjectAlarm(stub);
      } else if (roll < 0.2 && subject.decisions.size > 0) {
        // A retry of an earlier call: the first decision comes back, nothing is charged.
        const [key, first] = pick([...subject.decisions.entries()]);
        const cost = Number(key.split(":").at(-1));
        expect(await stub.check({ subject: subject.name, rules: subject.rules, cost, idempotencyKey: key })).toEqual(first);
      } else if (roll < 0.28) {
        // A concurrent burst: exactly as many admitted as the model has room for, in some order.
        const costs = Array.from({ length: 5 + Math.floor(random() * 20) }, () => 1);
        const results = await Promise.all(costs.map(() => stub.check({ subject: subject.name, rules: subject.rules })));
        const admitted = results.filter((d) => d.allowed).length;
        let expected = 0;
        for (const cost of costs) if (model(subject, cost).admits) expected++;
        expect(admitted).toBe(expected);
      } else {
        const cost = pick([0, 1, 1, 1, 2, 3, 7]);
        const key = `op-${opCounter++}:${cost}`;
        const decision = await stub.check({ subject: subject.name, rules: subject.rules, cost, idempotencyKey: key });
        if (cost === 0) {
          const remaining = Math.min(...subject.rules.map((rule) => rule.limit - subject.used.get(rule.name)!));
          expect(decision.remaining).toBe(remaining);
          continue;
        }
        const expected = model(subject, cost);
        expect({ allowed: decision.allowed, remaining: decision.remaining }).toEqual({ allowed: expected.admits, remaining: expected.remaining });
        subject.decisions.set(key, decision);
      }
    }

    for (const subject of subjects) {
      const stub = env.RATE_LIMITER.getByName(subject.name);
      await evictDurableObject(stub).catch(() => {});
      const final = await stub.peek({ subject: subject.name, rules: subject.rules });
      expect(final.rules.map((rule) => rule.limit - rule.remaining)).toEqual(subject.rules.map((rule) => subject.used.get(rule.name)));
    }
  });
});
