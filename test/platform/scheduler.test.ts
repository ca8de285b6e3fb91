import { env } from "cloudflare:workers";
import { evictDurableObject, runDurableObjectAlarm } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { MAX_ATTEMPTS, retryDelayMs } from "../../src/platform/backoff";

const probe = (name: string) => env.SCHEDULER_PROBE.getByName(name);

/**
 * Tests that drive the alarm by hand (`runAlarmAt`) schedule an hour ahead, so the real
 * alarm, armed for then, never fires during the test and races them.
 */
const later = () => Date.now() + 3_600_000;

describe("task scheduler", () => {
  it("runs two due tasks from the real alarm, then has nothing left to run", async () => {
    const stub = probe("two-due");
    const now = Date.now();
    await stub.schedule("mark", now - 10, { label: "a" }, "a");
    await stub.schedule("mark", now - 5, { label: "b" }, "b");
    // Due in the past, so the platform fires the alarm at once.
    await vi.waitFor(async () => expect(await stub.runs()).toEqual({ a: 1, b: 1 }), { timeout: 10_000 });
    expect(await stub.tasks()).toEqual([]);
    expect(await stub.alarmTime()).toBeNull();
    expect(await runDurableObjectAlarm(stub)).toBe(false);
  });

  it("keeps running the other tasks when one throws, and retries the failed one with backoff", async () => {
    const stub = probe("one-throws");
    const now = later();
    await stub.setFailureBudget("flaky", 1);
    await stub.schedule("flaky", now - 10, { label: "flaky" }, "flaky");
    await stub.schedule("mark", now - 5, { label: "steady" }, "steady");
    const report = await stub.runAlarmAt(now);
    expect(report).toMatchObject({ ran: 1, failed: 1, parked: 0, nextDueMs: now + retryDelayMs(1) });
    expect(await stub.runs()).toEqual({ steady: 1 });
    const [retry] = await stub.tasks();
    expect(retry).toMatchObject({ id: "flaky", attempts: 1, dueMs: now + retryDelayMs(1), lastError: "flaky task failed on purpose" });
    expect(await stub.alarmTime()).toBe(now + retryDelayMs(1));

    expect(await stub.runAlarmAt(now + 500)).toMatchObject({ ran: 0, failed: 0 });
    expect(await stub.runAlarmAt(now + retryDelayMs(1))).toMatchObject({ ran: 1, failed: 0, nextDueMs: null });
    expect(await stub.runs()).toEqual({ steady: 1, flaky: 1 });
  });

  it("parks a task after the maximum number of failures and can put it back in line", async () => {
    const stub = probe("parks");
    let now = later();
    await stub.setFailureBudget("flaky", MAX_ATTEMPTS);
    await stub.schedule("flaky", now, { label: "eventually" }, "flaky");
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const report = await stub.runAlarmAt(now);
      expect(report.failed).toBe(1);
      now += retryDelayMs(attempt);
    }
    const [parked] = await stub.tasks();
    expect(parked!.parkedAtMs).not.toBeNull();
    expect(parked!.attempts).toBe(MAX_ATTEMPTS);
    expect(await stub.alarmTime()).toBeNull();
    expect(await stub.runAlarmAt(now + 10 * 3_600_000)).toMatchObject({ ran: 0, failed: 0 });

    expect(await stub.retryParked(now)).toBe(1);
    expect(await stub.runAlarmAt(now)).toMatchObject({ ran: 1, failed: 0, nextDueMs: null });
    expect(await stub.runs()).toEqual({ eventually: 1 });
  });

  it("changes nothing when the alarm handler runs twice", async () => {
    const stub = probe("twice");
    const now = later();
    await stub.schedule("mark", now - 1, { label: "once" }, "once");
    await stub.runAlarmAt(now);
    const runsAfterFirst = await stub.runs();
    const report = await stub.runAlarmAt(now);
    expect(report).toMatchObject({ ran: 0, failed: 0, nextDueMs: null });
    expect(await stub.runs()).toEqual(runsAfterFirst);
    expect(await runDurableObjectAlarm(stub)).toBe(false);
  });

  it("treats schedule as an idempotent upsert by id", async () => {
    const stub = probe("upsert");
    const now = Date.now();
    await stub.schedule("mark", now + 60_000, { label: "x" }, "same");
    await stub.schedule("mark", now + 30_000, { label: "y" }, "same");
    const tasks = await stub.tasks();
    expect(tasks).toHaveLength(1);
    expect(tasks[0]).toMatchObject({ id: "same", dueMs: now + 30_000, payload: { label: "y" } });
    expect(await stub.alarmTime()).toBe(now + 30_000);
  });

  it("lets a task reschedule itself without the completed run deleting the new one", async () => {
    const stub = probe("recurring");
    let now = later();
    await stub.schedule("tick", now, { left: 3 }, "tick");
    for (let i = 0; i < 3; i++) {
      await stub.runAlarmAt(now);
      now += 1_000;
    }
    expect(await stub.runs()).toEqual({ tick: 3 });
    expect(await stub.tasks()).toEqual([]);
  });

  it("arms the alarm for the earliest task when schedules race, even after an eviction", async () => {
    const stub = probe("racing");
    const now = later();
    await stub.schedule("mark", now + 50_000, { label: "warm" }, "warm");
    await evictDurableObject(stub); // nothing cached: every schedule must read the alarm first
    await stub.scheduleConcurrently([
      { kind: "mark", dueMs: now + 30_000, id: "late" },
      { kind: "mark", dueMs: now + 10_000, id: "early" },
      { kind: "mark", dueMs: now + 20_000, id: "middle" },
    ]);
    expect(await stub.alarmTime()).toBe(now + 10_000);
  });

  it("keeps the earliest or latest due time as asked, before and after an eviction", async () => {
    const stub = probe("keeping");
    const now = later();
    await stub.scheduleKeeping("mark", now + 10_000, "cleanup", "latest");
    await stub.scheduleKeeping("mark", now + 5_000, "cleanup", "latest");
    expect((await stub.tasks()).map((t) => t.dueMs)).toEqual([now + 10_000]);
    await stub.scheduleKeeping("mark", now + 20_000, "cleanup", "latest");
    await evictDurableObject(stub);
    await stub.scheduleKeeping("mark", now + 15_000, "cleanup", "latest");
    expect((await stub.tasks()).map((t) => t.dueMs)).toEqual([now + 20_000]);

    await stub.scheduleKeeping("mark", now + 40_000, "prune", "earliest");
    await stub.scheduleKeeping("mark", now + 50_000, "prune", "earliest");
    await stub.scheduleKeeping("mark", now + 30_000, "prune", "earliest");
    expect((await stub.tasks()).find((t) => t.id === "prune")!.dueMs).toBe(now + 30_000);
    // A task moved later leaves the alarm early (it fires, finds nothing due, re-arms); it
    // must never be later than the earliest task.
    expect(await stub.alarmTime()).toBeLessThanOrEqual(now + 20_000);
  });

  it("knows a due time without a query only while the task is there and runnable", async () => {
    const stub = probe("known-due");
    const now = later();
    await stub.setFailureBudget("flaky", 1);
    await stub.schedule("flaky", now, { label: "flaky" }, "flaky");
    await stub.schedule("mark", now + 5, { label: "done" }, "done");
    await stub.schedule("mark", now + 10, { label: "gone" }, "gone");
    expect([await stub.knownDue("flaky"), await stub.knownDue("done"), await stub.knownDue("gone")]).toEqual([now, now + 5, now + 10]);
    // Cancelled: forgotten. Failed (and due again later): forgotten. Done: forgotten.
    expect(await stub.cancel("gone")).toBe(true);
    await stub.runAlarmAt(now + 5);
    expect([await stub.knownDue("flaky"), await stub.knownDue("done"), await stub.knownDue("gone")]).toEqual([null, null, null]);
    expect((await stub.tasks()).map((task) => task.id)).toEqual(["flaky"]);
    // Existence reads the table when the due time is not known: the failed task is there, the others are not.
    expect([await stub.exists("flaky"), await stub.exists("done"), await stub.exists("gone")]).toEqual([true, false, false]);
    // Scheduling again, it is known again.
    await stub.schedule("mark", now + 20, { label: "again" }, "again");
    expect(await stub.knownDue("again")).toBe(now + 20);
  });

  it("keeps its tasks across eviction", async () => {
    const stub = probe("evicted");
    const now = later();
    await stub.schedule("mark", now + 5_000, { label: "later" }, "later");
    await evictDurableObject(stub);
    expect((await stub.tasks()).map((t) => t.id)).toEqual(["later"]);
    await stub.runAlarmAt(now + 5_000);
    expect(await stub.runs()).toEqual({ later: 1 });
  });
});
