import { formatIp, type ParsedIp, parseIp } from "./ip";

/** How client IPs are stored: as given, truncated to their network, or as a keyed hash. */
export type IpMode = "raw" | "truncate" | "hash";
export const IP_MODES: readonly IpMode[] = ["raw", "truncate", "hash"];
/** Shortest accepted hash key, so a guessable key cannot be configured by accident. */
export const MIN_HASH_KEY_LENGTH = 16;

/** Keeps the first `prefixBits` of an address and zeroes the rest. */
export function truncateIp(ip: ParsedIp, prefixBits: number): ParsedIp {
  const bytes = ip.bytes.slice();
  for (let bit = prefixBits; bit < bytes.length * 8; bit += 1) bytes[bit >> 3]! &= ~(0x80 >> (bit & 7));
  return { version: ip.version, bytes } as ParsedIp;
}

const keys = new Map<string, Promise<CryptoKey>>();

function hmacKey(secret: string): Promise<CryptoKey> {
  let key = keys.get(secret);
  if (key === undefined) {
    key = crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    keys.set(secret, key);
  }
  return key;
}

function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * The identifier a client is stored, sharded and counted under.
 * - `raw`: the canonical address (`2001:db8::1`, IPv4-mapped IPv6 as IPv4).
 * - `truncate`: the /24 (IPv4) or /48 (IPv6) network, e.g. `203.0.113.0/24`, `2001:db8:1::/48`.
 * - `hash`: `h:` + the first 96 bits of HMAC-SHA-256(key, canonical address), base64url. Without
 *   the key nobody can test a guessed address against it.
 * Returns `null` for a string that is not an IP address.
 */
export async function clientIdOf(ipText: string, mode: IpMode, hashKey?: string): Promise<string | null> {
  const ip = parseIp(ipText);
  if (ip === null) return null;
  switch (mode) {
    case "raw":
      return formatIp(ip);
    case "truncate":
      return ip.version === 4 ? `${formatIp(truncateIp(ip, 24))}/24` : `${formatIp(truncateIp(ip, 48))}/48`;
    case "hash": {
      if (hashKey === undefined || hashKey.length < MIN_HASH_KEY_LENGTH) {
        throw new Error(`PATH_IP_MODE "hash" needs the secret PATH_IP_HASH_KEY (at least ${MIN_HASH_KEY_LENGTH} characters)`);
      }
      const mac = await crypto.subtle.sign("HMAC", await hmacKey(hashKey), new TextEncoder().encode(formatIp(ip)));
      return `h:${base64url(new Uint8Array(mac).slice(0, 12))}`;
    }
  }
}
