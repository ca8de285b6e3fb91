import type { Block, Rule } from "../../rpc/rate-limits";
import { maybeOne, run } from "../platform/sql";

type BlockRow = { until_ms: number; reason: string; rule_name: string | null };

/**
 * The subject's block and override (`subject_block`, `subject_override`). Every check reads
 * both, so they are cached in memory after the first read; the object is their only writer,
 * and an eviction simply drops the cache (storage stays the source of truth).
 */
export class SubjectControls {
  #block: Block | null | undefined;
  #override: readonly Rule[] | null | undefined;

  constructor(private readonly sql: SqlStorage) {}

  /** Drops the cached copies, so the next read comes from storage (after a restore wrote the tables). */
  forget(): void {
    this.#block = undefined;
    this.#override = undefined;
  }

  /** The block in force at `nowMs`, if any. */
  activeBlock(nowMs: number): Block | undefined {
    if (this.#block === undefined) {
      const row = maybeOne<BlockRow>(this.sql, "SELECT until_ms, reason, rule_name FROM subject_block WHERE id = 1");
      this.#block = row === undefined ? null : toBlock(row);
    }
    return this.#block !== null && this.#block.untilMs > nowMs ? this.#block : undefined;
  }

  /** Sets the block, replacing any the subject had. */
  saveBlock(block: Block): void {
    run(
      this.sql,
      "INSERT OR REPLACE INTO subject_block (id, until_ms, reason, rule_name) VALUES (1, ?, ?, ?)",
      block.untilMs,
      block.reason,
      block.rule ?? null,
    );
    this.#block = block;
  }

  clearBlock(): void {
    run(this.sql, "DELETE FROM subject_block");
    this.#block = null;
  }

  /** Deletes a block that has run out. */
  expireBlock(nowMs: number): void {
    run(this.sql, "DELETE FROM subject_block WHERE until_ms <= ?", nowMs);
    this.#block = undefined;
  }

  /** The rules that replace whatever a call names, if set. */
  override(): readonly Rule[] | undefined {
    if (this.#override === undefined) {
      const row = maybeOne<{ rules: string }>(this.sql, "SELECT rules FROM subject_override WHERE id = 1");
      this.#override = row === undefined ? null : (JSON.parse(row.rules) as Rule[]);
    }
    return this.#override ?? undefined;
  }

  setOverride(rules: readonly Rule[], setAtMs: number): void {
    run(this.sql, "INSERT OR REPLACE INTO subject_override (id, rules, set_at_ms) VALUES (1, ?, ?)", JSON.stringify(rules), setAtMs);
    this.#override = rules;
  }

  /** Whether there was an override to clear. */
  clearOverride(): boolean {
    const cleared = run(this.sql, "DELETE FROM subject_override") > 0;
    this.#override = null;
    return cleared;
  }
}

function toBlock(row: BlockRow): Block {
  const block: Block = { untilMs: row.until_ms, reason: row.reason };
  if (row.rule_name !== null) block.rule = row.rule_name;
  return block;
}
