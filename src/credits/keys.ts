import { crc32 } from "./crc32";
import { sha256Hex, toHex } from "./sha256";

/**
 * API key strings: `tg_<accountId>_<keyId>_<secret>_<checksum>`.
 *
 * The account id routes a key to its CreditLedgerDO without any lookup; the key id names
 * the stored row; the secret is 48 hex digits (192 random bits); the checksum is the CRC-32
 * of everything before it, as 8 hex digits, so a truncated or mistyped key is rejected
 * without touching any object. Only `hashSecret(secret)` is ever stored.
 */
export const KEY_PREFIX = "tg";
/** Account ids are embedded in keys, so they use a separator-free alphabet. */
export const ACCOUNT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/;
export const KEY_ID_PATTERN = /^k[0-9a-f]{16}$/;
const SECRET_PATTERN = /^[0-9a-f]{48}$/;
const CHECKSUM_PATTERN = /^[0-9a-f]{8}$/;
/** Longest well-formed key: prefix, 64-char account id, key id, secret, checksum, separators. */
export const MAX_KEY_LENGTH = 2 + 1 + 64 + 1 + 17 + 1 + 48 + 1 + 8;

export interface ParsedKey {
  accountId: string;
  keyId: string;
  secret: string;
}

/** A fresh key id from 8 random bytes. */
export function newKeyId(random: Uint8Array): string {
  if (random.length !== 8) throw new Error("a key id needs 8 random bytes");
  return `k${toHex(random)}`;
}

/** A fresh secret from 24 random bytes. */
export function newSecret(random: Uint8Array): string {
  if (random.length !== 24) throw new Error("a key secret needs 24 random bytes");
  return toHex(random);
}

export function formatKey(accountId: string, keyId: string, secret: string): string {
  const body = `${KEY_PREFIX}_${accountId}_${keyId}_${secret}`;
  return `${body}_${checksum(body)}`;
}

/** The parts of a well-formed key with a correct checksum, or `undefined`. Never throws. */
export function parseKey(key: unknown): ParsedKey | undefined {
  if (typeof key !== "string" || key.length > MAX_KEY_LENGTH) return undefined;
  const parts = key.split("_");
  if (parts.length !== 5) return undefined;
  const [prefix, accountId, keyId, secret, sum] = parts as [string, string, string, string, string];
  if (prefix !== KEY_PREFIX || !ACCOUNT_ID_PATTERN.test(accountId) || !KEY_ID_PATTERN.test(keyId)) return undefined;
  if (!SECRET_PATTERN.test(secret) || !CHECKSUM_PATTERN.test(sum)) return undefined;
  if (checksum(`${prefix}_${accountId}_${keyId}_${secret}`) !== sum) return undefined;
  return { accountId, keyId, secret };
}

/** What is stored instead of the secret. Domain-separated so the hash is useless elsewhere. */
export function hashSecret(secret: string): string {
  return sha256Hex(`tollgate-api-key:${secret}`);
}

function checksum(body: string): string {
  return crc32(body).toString(16).padStart(8, "0");
}

/**
 * Scopes are `resource.action`; a granted scope may be `*` (everything) or `resource.*`.
 * A required scope is always concrete.
 */
export const SCOPE_PATTERN = /^(\*|[a-z][a-z0-9_-]{0,31}\.(\*|[a-z][a-z0-9_-]{0,31}))$/;
export const REQUIRED_SCOPE_PATTERN = /^[a-z][a-z0-9_-]{0,31}\.[a-z][a-z0-9_-]{0,31}$/;

export function scopeAllows(granted: readonly string[], required: string): boolean {
  const [resource] = required.split(".");
  return granted.some((scope) => scope === "*" || scope === required || scope === `${resource}.*`);
}
