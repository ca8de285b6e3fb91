import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { applyMigrations, type Migration } from "../../src/platform/migrations";

describe("schema migrations", () => {
  it("migrates an object created at an older schema version with its rows intact", async () => {
    const stub = env.MIGRATION_PROBE.getByName("old-object");
    await stub.addNote("written at v1");
    await stub.addNote("also v1");
    expect(await stub.version()).toBe(1);

    await stub.deployVersion(3);
    await evictDurableObject(stub);

    expect(await stub.version()).toBe(3);
    expect(await stub.notes()).toEqual([
      { id: 1, body: "written at v1", tag: "legacy" },
      { id: 2, body: "also v1", tag: "legacy" },
    ]);
    expect(await stub.indexes()).toContain("notes_by_tag");
    await stub.addNote("written at v3");
    expect((await stub.notes()).at(-1)).toEqual({ id: 3, body: "written at v3", tag: "new" });
  });

  it("applies each step once, however often the object is constructed", async () => {
    const stub = env.MIGRATION_PROBE.getByName("restarted");
    await stub.deployVersion(3);
    await evictDurableObject(stub);
    await stub.addNote("x");
    await evictDurableObject(stub);
    expect(await stub.version()).toBe(3);
    await evictDurableObject(stub);
    expect((await stub.appliedSteps()).filter((s) => s.component === "probe")).toEqual([
      { component: "probe", version: 1, name: "notes" },
      { component: "probe", version: 2, name: "notes.tag" },
      { component: "probe", version: 3, name: "notes by tag" },
    ]);
    expect(await stub.notes()).toHaveLength(1);
  });

  it("rolls a failing step back whole and leaves the version where it was", async () => {
    const stub = env.MIGRATION_PROBE.getByName("failing-step");
    await stub.addNote("before");
    await runInDurableObject(stub, (_instance, state) => {
      const broken: Migration[] = [
        { version: 1, name: "notes", up: () => {} },
        {
          version: 2,
          name: "half done",
          up(sql) {
            sql.exec("CREATE TABLE half (x INTEGER)");
            sql.exec("THIS IS NOT SQL");
          },
        },
      ];
      expect(() => applyMigrations(state.storage, "probe", broken)).toThrow();
      const tables = state.storage.sql.exec("SELECT name FROM sqlite_master WHERE name = 'half'").toArray();
      expect(tables).toEqual([]);
    });
    expect(await stub.version()).toBe(1);
    expect(await stub.notes()).toEqual([{ id: 1, body: "before" }]);
  });

  it("refuses a migration list with gaps", async () => {
    const stub = env.MIGRATION_PROBE.getByName("gaps");
    await runInDurableObject(stub, (_instance, state) => {
      const gappy: Migration[] = [{ version: 2, name: "no step 1", up: () => {} }];
      expect(() => applyMigrations(state.storage, "gappy", gappy)).toThrow(/numbered 1..n/);
    });
  });
});
