import { toHex } from "./sha256";

/** Hex digits of an entry id that carry its `seq`: up to 16^10 − 1 (about 10^12) entries per account. */
const SEQ_DIGITS = 10;
const LARGEST_ENCODED_SEQ = 16 ** SEQ_DIGITS - 1;
const ENTRY_ID = /^e_([0-9a-f]{10})[0-9a-f]{10}$/;

/**
 * Selects the entries whose id does not carry their `seq` (ids made before migration 8, or
 * supplied by a caller): exactly the rows of the partial index `entries_by_legacy_id`. A query
 * must repeat it word for word for SQLite to use that index (migration 8 writes it out).
 */
export const LEGACY_ENTRY_ID = "substr(entry_id, 3, 10) <> printf('%010x', seq)";

/**
 * A new entry's id, in the public id format (`e_` and 20 hex digits): `seq` as 10 zero-padded
 * hex digits, then 40 random bits. `seq` makes it unique in its account and finds its row by
 * primary key, so the entry writes no index row; the random part keeps ids unguessable, and an
 * id from another account resolves here only if its 40 random bits match (a chance of 2^-40).
 * A `seq` too large for 10 digits gets a wholly random id, which the legacy index covers.
 */
export function newEntryId(seq: number): string {
  if (!Number.isSafeInteger(seq) || seq < 0 || seq > LARGEST_ENCODED_SEQ) return `e_${randomHex(10)}`;
  return `e_${seq.toString(16).padStart(SEQ_DIGITS, "0")}${randomHex(5)}`;
}

/** The `seq` an entry id would carry, or `undefined` when it is not shaped as an entry id. */
export function seqOfEntryId(entryId: string): number | undefined {
  const digits = ENTRY_ID.exec(entryId)?.[1];
  return digits === undefined ? undefined : Number.parseInt(digits, 16);
}

function randomHex(bytes: number): string {
  return toHex(crypto.getRandomValues(new Uint8Array(bytes)));
}
