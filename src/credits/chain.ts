import { sha256Hex } from "./sha256";

/** The `prevHash` of an account's first entry. */
export const GENESIS_HASH = "0".repeat(64);

/**
 * Each entry is stored as a canonical JSON `body` and `hash = SHA-256(prevHash "\n" body)`,
 * so changing, removing or reordering any stored entry breaks every hash after it.
 */
export function entryHash(prevHash: string, body: string): string {
  return sha256Hex(`${prevHash}\n${body}`);
}

export interface ChainRow {
  seq: number;
  body: string;
  prevHash: string;
  hash: string;
}

export interface ChainVerification {
  ok: boolean;
  /** Entries checked. */
  checked: number;
  /** The hash of the last entry checked (the account's head when `ok`). */
  headHash: string;
  /** The first entry that does not verify, and why. */
  brokenAtSeq?: number;
  reason?: string;
}

/**
 * Verifies a run of consecutive entries starting after `prevHash` (the genesis hash for the
 * first page). Verify a long chain in pages, passing each page's `headHash` on.
 */
export function verifyChain(rows: readonly ChainRow[], prevHash: string = GENESIS_HASH, firstSeq = 1): ChainVerification {
  let head = prevHash;
  let expectedSeq = firstSeq;
  for (const row of rows) {
    const broken = (reason: string): ChainVerification => ({
      ok: false,
      checked: row.seq - firstSeq,
      headHash: head,
      brokenAtSeq: row.seq,
      reason,
    });
    if (row.seq !== expectedSeq) return broken(`expected entry ${expectedSeq}, found ${row.seq}`);
    if (row.prevHash !== head) return broken("prevHash does not match the previous entry's hash");
    if (entryHash(head, row.body) !== row.hash) return broken("hash does not match the entry's contents");
    head = row.hash;
    expectedSeq += 1;
  }
  return { ok: true, checked: rows.length, headHash: head };
}
