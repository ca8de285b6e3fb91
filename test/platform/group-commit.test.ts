import { describe, expect, it } from "vitest";
import { GroupCommit } from "../../src/platform/group-commit";

/**
 * A store behind a GroupCommit, in memory: `memory` is what calls change, `stored` what flushes
 * wrote (a transaction that throws leaves it as it was), and each write becomes durable only
 * when the test says so, so the test decides which calls share a batch.
 */
function harness() {
  const store = {
    memory: 0,
    stored: 0,
    flushes: [] as number[],
    failNextFlush: false,
    failNextDurable: false,
    discarded: 0,
    pending: [] as { resolve: () => void; reject: (error: Error) => void }[],
  };
  const commit = new GroupCommit({
    flush() {
      store.flushes.push(store.memory);
      if (store.failNextFlush) {
        store.failNextFlush = false;
        throw new Error("disk full");
      }
    },
    transaction(body) {
      const before = store.stored;
      try {
        body();
        store.stored = store.flushes.at(-1)!;
      } catch (error) {
        store.stored = before;
        throw error;
      }
    },
    durable: () =>
      new Promise<void>((resolve, reject) => {
        store.pending.push({ resolve, reject });
      }),
    discard() {
      store.discarded += 1;
      store.memory = store.stored;
    },
  });
  /** Makes the write in flight durable (or fails it), then lets the follow-up flush run. */
  const settleWrite = async (fail = false) => {
    const write = store.pending.shift()!;
    if (fail) write.reject(new Error("commit lost"));
    else write.resolve();
    await new Promise((resolve) => setTimeout(resolve, 0));
  };
  const add = (n: number) => commit.change(() => (store.memory += n));
  return { store, commit, add, settleWrite };
}

/** Whether `promise` has settled, without waiting for it. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  promise.then(
    () => (done = true),
    () => (done = true),
  );
  await new Promise((resolve) => setTimeout(resolve, 0));
  return done;
}

describe("GroupCommit", () => {
  it("writes a lone change at once, and the calls made while that write is in flight with one flush", async () => {
    const { store, add, settleWrite } = harness();
    expect(await add(1)).toBe(1);
    expect(store.flushes).toEqual([1]);

    const waiting = Array.from({ length: 16 }, () => add(1));
    // Every change is applied in memory at once, in call order; none is answered before its write.
    expect(store.memory).toBe(17);
    expect(await settled(Promise.race(waiting))).toBe(false);
    expect(store.flushes).toEqual([1]);

    await settleWrite();
    expect(await Promise.all(waiting)).toEqual(Array.from({ length: 16 }, (_, i) => i + 2));
    expect(store.flushes).toEqual([1, 17]);
    expect(store.stored).toBe(17);
  });

  it("makes a read wait for the flush of the changes it may have seen, and answers at once when all is written", async () => {
    const { store, commit, add, settleWrite } = harness();
    await add(1);
    // The first write is in flight but issued: a read sees only written changes.
    expect(await commit.read(() => store.memory)).toBe(1);
    const change = add(2);
    const read = commit.read(() => store.memory);
    expect(await settled(read)).toBe(false);
    await settleWrite();
    expect(await read).toBe(3);
    expect(await change).toBe(3);
    expect(store.stored).toBe(3);
  });

  it("rejects every caller of a failed flush, leaves storage as it was, discards memory, and then writes again", async () => {
    const { store, add, settleWrite } = harness();
    await add(5);
    const batch = Promise.allSettled([add(1), add(1), add(1)]);
    store.failNextFlush = true;
    await settleWrite();
    const outcomes = await batch;
    expect(outcomes.map((o) => o.status)).toEqual(["rejected", "rejected", "rejected"]);
    expect((outcomes[0] as PromiseRejectedResult).reason).toMatchObject({ message: "disk full" });
    expect(store.stored).toBe(5);
    expect(store.discarded).toBe(1);
    expect(store.memory).toBe(5);
    // Nothing is left waiting: the next change is written at once.
    expect(await add(2)).toBe(7);
    expect(store.stored).toBe(7);
  });

  it("rejects a lone caller whose flush throws, synchronously issued", async () => {
    const { store, add } = harness();
    store.failNextFlush = true;
    await expect(add(1)).rejects.toThrow("disk full");
    expect(store).toMatchObject({ stored: 0, memory: 0, discarded: 1 });
  });

  it("rejects the batch gathered behind a write that fails to become durable, and discards", async () => {
    const { store, add, commit, settleWrite } = harness();
    await add(1);
    const behind = Promise.allSettled([add(1), commit.read(() => store.memory)]);
    await settleWrite(true);
    expect((await behind).map((o) => o.status)).toEqual(["rejected", "rejected"]);
    expect(store.discarded).toBe(1);
    expect(store.flushes).toEqual([1]);
  });

  it("abandons the changes waiting for a flush when storage is replaced under them, and writes later ones", async () => {
    const { store, add, commit, settleWrite } = harness();
    await add(1);
    const waiting = Promise.allSettled([add(1)]);
    commit.abandon(new Error("restored"));
    expect((await waiting).map((o) => o.status)).toEqual(["rejected"]);
    expect(store).toMatchObject({ discarded: 1, memory: 1 });
    await settleWrite();
    expect(store.flushes).toEqual([1]);
    expect(await add(5)).toBe(6);
    expect(store.flushes).toEqual([1, 6]);
  });

  it("throws a failing change at its caller and marks nothing changed", async () => {
    const { store, commit } = harness();
    expect(() =>
      commit.change(() => {
        throw new Error("bad input");
      }),
    ).toThrow("bad input");
    expect(store.flushes).toEqual([]);
    expect(await commit.read(() => "nothing waits")).toBe("nothing waits");
  });
});
