import type { Rule } from "../../rpc/rate-limits";
import { maybeOne, run } from "../platform/sql";

/**
 * The subject's override (`subject_override`): rules that replace whatever a call names. Every
 * check reads it, so it is cached in memory after the first read; the object is its only writer,
 * and an eviction simply drops the cache (storage stays the source of truth). It is set by hand,
 * rarely, so it keeps a row of its own rather than riding in every state write.
 */
export class SubjectOverride {
  #override: readonly Rule[] | null | undefined;

  constructor(private readonly sql: SqlStorage) {}

  /** Drops the cached copy, so the next read comes from storage (after a restore wrote the table). */
  forget(): void {
    this.#override = undefined;
  }

  /** The rules that replace whatever a call names, if set. */
  get(): readonly Rule[] | undefined {
    if (this.#override === undefined) {
      const row = maybeOne<{ rules: string }>(this.sql, "SELECT rules FROM subject_override WHERE id = 1");
      this.#override = row === undefined ? null : (JSON.parse(row.rules) as Rule[]);
    }
    return this.#override ?? undefined;
  }

  set(rules: readonly Rule[], setAtMs: number): void {
    run(this.sql, "INSERT OR REPLACE INTO subject_override (id, rules, set_at_ms) VALUES (1, ?, ?)", JSON.stringify(rules), setAtMs);
    this.#override = rules;
  }

  /** Whether there was an override to clear. */
  clear(): boolean {
    const cleared = run(this.sql, "DELETE FROM subject_override") > 0;
    this.#override = null;
    return cleared;
  }
}
