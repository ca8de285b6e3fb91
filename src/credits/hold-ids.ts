import { toHex } from "./sha256";

/** Hex digits of a hold id that carry its expiry in ms since the epoch: enough until the year 2527. */
const EXPIRY_DIGITS = 11;
const LARGEST_ENCODED_EXPIRY = 16 ** EXPIRY_DIGITS - 1;

/**
 * Selects the holds whose id does not carry their expiry (ids made before migration 10): exactly
 * the rows the partial index `holds_open_legacy` may hold. A query must repeat it word for word
 * for SQLite to use that index (migration 10 writes it out).
 */
export const LEGACY_HOLD_ID = "substr(hold_id, 3, 11) <> printf('%011x', expires_at_ms)";

/**
 * A new hold's id, in the public id format (`h_` and 20 hex digits): its expiry as 11 zero-padded
 * hex digits, then 36 random bits. The `holds` table is clustered on the id, so its rows lie in order of expiry and
 * the holds due by a time are a range of ids: a hold writes no index row. The random part keeps
 * ids unguessable and unique among holds expiring in the same millisecond. An expiry that does
 * not fit gets a wholly random id, which the legacy index covers.
 */
export function newHoldId(expiresAtMs: number): string {
  if (!Number.isSafeInteger(expiresAtMs) || expiresAtMs < 0 || expiresAtMs > LARGEST_ENCODED_EXPIRY) {
    return `h_${randomHex(10)}`;
  }
  return `${holdIdFloor(expiresAtMs)}${randomHex(5).slice(1)}`;
}

/**
 * The least id a hold expiring at `ms` can have (no hold has it): the holds expiring in
 * `[a, b]` are the ids from `holdIdFloor(a)` up to, not including, `holdIdFloor(b + 1)`.
 */
export function holdIdFloor(ms: number): string {
  const clamped = Math.min(Math.max(Math.floor(ms), 0), LARGEST_ENCODED_EXPIRY);
  return `h_${clamped.toString(16).padStart(EXPIRY_DIGITS, "0")}`;
}

/** Above every hold id. */
export const HOLD_ID_CEILING = "h_~";

function randomHex(bytes: number): string {
  return toHex(crypto.getRandomValues(new Uint8Array(bytes)));
}
